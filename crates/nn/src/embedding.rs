//! `Embedding`: a lookup table of `num_embeddings` rows of width `dim`, initialised
//! N(0, 1) as in PyTorch. The gradient flows into the rows that were looked up.

use rand::Rng;
use tapegrad_autograd::{or_panic, with_default_rng, Result, Tensor, TensorError};

use crate::Module;

/// A table of learnable vectors, indexed by integer ids.
pub struct Embedding {
    /// `[num_embeddings, dim]`.
    pub weight: Tensor,
}

impl Embedding {
    /// A table with rows drawn from N(0, 1) by the default generator (see `manual_seed`).
    pub fn new(num_embeddings: usize, dim: usize) -> Result<Embedding> {
        with_default_rng(|rng| Embedding::new_with_rng(num_embeddings, dim, rng))
    }

    /// A table with rows drawn from N(0, 1) by the caller's generator.
    pub fn new_with_rng(
        num_embeddings: usize,
        dim: usize,
        rng: &mut impl Rng,
    ) -> Result<Embedding> {
        let weight =
            Tensor::normal(&[num_embeddings, dim], 0.0, 1.0, rng)?.with_requires_grad(true);
        Ok(Embedding { weight })
    }

    /// The rows for `ids`, shape `[ids.len(), dim]`; an id past the table is an error.
    pub fn lookup(&self, ids: &[usize]) -> Result<Tensor> {
        self.weight.try_index_select(0, ids)
    }

    /// Looks up ids stored as whole numbers in a tensor of any shape; the output has
    /// that shape plus a trailing `dim` axis.
    pub fn try_forward(&self, ids: &Tensor) -> Result<Tensor> {
        let ids_vec: Vec<usize> = ids
            .data()
            .iter()
            .map(|&v| {
                if v >= 0.0 && v.fract() == 0.0 {
                    Ok(v as usize)
                } else {
                    Err(TensorError::InvalidArgument {
                        op: "Embedding",
                        reason: format!("ids must be non-negative whole numbers, got {v}"),
                    })
                }
            })
            .collect::<Result<_>>()?;
        let rows = self.lookup(&ids_vec)?;
        let mut shape = ids.shape().to_vec();
        shape.push(self.weight.shape()[1]);
        rows.try_reshape(&shape)
    }
}

impl Module for Embedding {
    #[track_caller]
    fn forward(&self, ids: &Tensor) -> Tensor {
        or_panic(self.try_forward(ids))
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        vec![("weight".to_string(), self.weight.clone())]
    }
}
