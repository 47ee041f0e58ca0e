//! Matrix products as differentiable ops: `matmul` (2-D, and batched over any number of
//! broadcast leading axes) and the fused `linear` (x·Wᵀ + b) that `nn::Linear` uses.
//!
//! Forward and backward products all go through [`gemm_into`] with strided views, so
//! the backward products (G·Bᵀ, Aᵀ·G) and `linear`'s Wᵀ never copy a transpose.

use crate::error::{or_panic, Result, TensorError};
use crate::ops::gemm::{gemm_bias_into, gemm_into, MatRef};
use crate::parallel::{elementwise_piece, for_each_piece};
use crate::pool;
use crate::shape::{
    broadcast_shapes, broadcast_strides, for_each_offset2, numel, try_numel, Shape,
};
use crate::tape::{self, Grads, Op};
use crate::tensor::Tensor;

/// Operand sizes of a (batched) product `[..a, m, k] · [..b, k, n]`, and which matrix of
/// each operand every output matrix reads (the batch axes broadcast as in PyTorch).
#[derive(Clone)]
pub(crate) struct Dims {
    m: usize,
    k: usize,
    n: usize,
    /// Matrices in each operand.
    a_count: usize,
    b_count: usize,
    /// For output matrix `i`: the index of the `a` matrix and of the `b` matrix it uses.
    a_index: Vec<usize>,
    b_index: Vec<usize>,
}

impl Dims {
    fn batch(&self) -> usize {
        self.a_index.len()
    }

    /// Whether `b` is one matrix shared by every batch and `a`'s batches are all distinct:
    /// then the batches of `a` stack into one tall matrix and one GEMM does the work.
    fn stacks(&self) -> bool {
        self.b_count == 1 && self.a_count == self.batch()
    }
}

fn matmul_dims(a: &[usize], b: &[usize]) -> Result<(Dims, Shape)> {
    let mismatch = |detail| TensorError::ShapeMismatch {
        op: "matmul",
        lhs: a.to_vec(),
        rhs: b.to_vec(),
        detail,
    };
    if a.len() < 2 || b.len() < 2 {
        return Err(mismatch(
            "cannot multiply {} by {}: both operands need at least 2 axes",
        ));
    }
    let (ra, rb) = (a.len() - 2, b.len() - 2);
    let (m, k, k2, n) = (a[ra], a[ra + 1], b[rb], b[rb + 1]);
    if k != k2 {
        // The message older callers and tests match on: the inner sizes differ.
        return Err(mismatch("cannot multiply {} by {}"));
    }
    let batch_shape = broadcast_shapes(&a[..ra], &b[..rb])
        .ok_or_else(|| mismatch("cannot multiply {} by {}: the batch axes do not broadcast"))?;
    // Valid operands can still make an output that is not: [2^40, 0] · [0, 2^40].
    let mut out_shape = batch_shape.clone();
    out_shape.extend_from_slice(&[m, n]);
    try_numel("matmul", &out_shape)?;
    let batch = numel(&batch_shape);
    let mut a_index = Vec::with_capacity(batch);
    let mut b_index = Vec::with_capacity(batch);
    if batch_shape.is_empty() {
        a_index.push(0);
        b_index.push(0);
    } else {
        let sa = broadcast_strides(&a[..ra], &batch_shape);
        let sb = broadcast_strides(&b[..rb], &batch_shape);
        for_each_offset2(&batch_shape, &sa, &sb, |i, j| {
            a_index.push(i);
            b_index.push(j);
        });
    }
    let dims = Dims {
        m,
        k,
        n,
        a_count: numel(&a[..ra]),
        b_count: numel(&b[..rb]),
        a_index,
        b_index,
    };
    let mut shape = batch_shape;
    shape.extend_from_slice(&[m, n]);
    Ok((dims, shape))
}

/// The forward product, one GEMM per output matrix (one GEMM in all when `b` is shared).
fn matmul_forward(d: &Dims, a: &[f32], b: &[f32]) -> Vec<f32> {
    let (m, k, n) = (d.m, d.k, d.n);
    let mut out = pool::for_overwrite(d.batch() * m * n);
    if d.stacks() {
        // A shared right operand: stack the batches of `a` into one tall matrix.
        gemm_into(
            d.batch() * m,
            n,
            k,
            MatRef::rows(a, k),
            MatRef::rows(b, n),
            &mut out,
            false,
        );
        return out;
    }
    if m * n == 0 {
        return out;
    }
    for (i, dst) in out.chunks_exact_mut(m * n).enumerate() {
        let (ia, ib) = (d.a_index[i], d.b_index[i]);
        let a_i = &a[ia * m * k..(ia + 1) * m * k];
        let b_i = &b[ib * k * n..(ib + 1) * k * n];
        gemm_into(
            m,
            n,
            k,
            MatRef::rows(a_i, k),
            MatRef::rows(b_i, n),
            dst,
            false,
        );
    }
    out
}

/// Rows of `linear`'s input viewed as a matrix: the product of all but the last axis
/// (counted from the shape, so a zero-width input still has its rows).
fn leading_rows(shape: &[usize]) -> usize {
    shape[..shape.len() - 1].iter().product()
}

/// What a product saves: its inputs (their values are the other side's gradient).
pub(crate) enum LinalgRecord {
    MatMul {
        lhs: Tensor,
        rhs: Tensor,
        dims: Dims,
    },
    Linear {
        input: Tensor,
        weight: Tensor,
        bias: Option<Tensor>,
    },
}

/// The sum of the rows of `g` (rows of `width`): `linear`'s bias gradient. Each
/// column is summed by one thread from row 0 down, as the serial loop does, so the
/// split (by columns, one run per thread) changes no bit.
fn column_sums(g: &[f32], width: usize) -> Vec<f32> {
    let mut sums = pool::for_overwrite(width);
    if width == 0 {
        return sums;
    }
    let piece = elementwise_piece(width, 16);
    for_each_piece(&mut sums, piece, g.len(), |i, part| {
        let c0 = i * piece;
        let len = part.len();
        part.fill(0.0);
        for row in g.chunks_exact(width) {
            for (d, &v) in part.iter_mut().zip(&row[c0..c0 + len]) {
                *d += v;
            }
        }
    });
    sums
}

impl LinalgRecord {
    pub(crate) fn backward(&self, g: &[f32], grads: &mut Grads) {
        match self {
            LinalgRecord::MatMul { lhs, rhs, dims } => {
                let (m, k, n) = (dims.m, dims.k, dims.n);
                let batch = dims.batch();
                if grads.wants(lhs) {
                    // dA = G · Bᵀ, summed over the batches that shared an `a` matrix.
                    let b = rhs.data();
                    let mut da = pool::zeros(lhs.numel());
                    for i in 0..batch {
                        let (ia, ib) = (dims.a_index[i], dims.b_index[i]);
                        let g_i = &g[i * m * n..(i + 1) * m * n];
                        let b_i = &b[ib * k * n..(ib + 1) * k * n];
                        let dst = &mut da[ia * m * k..(ia + 1) * m * k];
                        gemm_into(
                            m,
                            k,
                            n,
                            MatRef::rows(g_i, n),
                            MatRef::transposed(b_i, n),
                            dst,
                            true,
                        );
                    }
                    grads.add(lhs, da);
                }
                if grads.wants(rhs) {
                    // dB = Aᵀ · G, summed over the batches that shared a `b` matrix.
                    let a = lhs.data();
                    let mut db = pool::zeros(rhs.numel());
                    if dims.stacks() {
                        // One GEMM over the stacked batches: (B·m × k)ᵀ · (B·m × n).
                        gemm_into(
                            k,
                            n,
                            batch * m,
                            MatRef::transposed(&a, k),
                            MatRef::rows(g, n),
                            &mut db,
                            false,
                        );
                    } else {
                        for i in 0..batch {
                            let (ia, ib) = (dims.a_index[i], dims.b_index[i]);
                            let g_i = &g[i * m * n..(i + 1) * m * n];
                            let a_i = &a[ia * m * k..(ia + 1) * m * k];
                            let dst = &mut db[ib * k * n..(ib + 1) * k * n];
                            gemm_into(
                                k,
                                n,
                                m,
                                MatRef::transposed(a_i, k),
                                MatRef::rows(g_i, n),
                                dst,
                                true,
                            );
                        }
                    }
                    grads.add(rhs, db);
                }
            }
            LinalgRecord::Linear {
                input,
                weight,
                bias,
            } => {
                let (outf, inf) = (weight.shape()[0], weight.shape()[1]);
                let rows = leading_rows(input.shape());
                if grads.wants(input) {
                    // dX = G · W
                    let mut dx = pool::for_overwrite(input.numel());
                    let w = weight.data();
                    gemm_into(
                        rows,
                        inf,
                        outf,
                        MatRef::rows(g, outf),
                        MatRef::rows(&w, inf),
                        &mut dx,
                        false,
                    );
                    grads.add(input, dx);
                }
                if grads.wants(weight) {
                    // dW = Gᵀ · X
                    let mut dw = pool::for_overwrite(weight.numel());
                    let x = input.data();
                    gemm_into(
                        outf,
                        inf,
                        rows,
                        MatRef::transposed(g, outf),
                        MatRef::rows(&x, inf),
                        &mut dw,
                        false,
                    );
                    grads.add(weight, dw);
                }
                if let Some(bias) = bias.as_ref().filter(|b| grads.wants(b)) {
                    grads.add(bias, column_sums(g, outf));
                }
            }
        }
    }
}

impl LinalgRecord {
    /// The op's name for anomaly reports.
    pub(crate) fn name(&self) -> String {
        // Variants added later fall to the family's name.
        #[allow(unreachable_patterns)]
        match self {
            LinalgRecord::MatMul { .. } => "matmul".into(),
            LinalgRecord::Linear { .. } => "linear".into(),
            _ => "linalg op".into(),
        }
    }
}

impl Tensor {
    /// Matrix product over the last two axes, batched over any number of leading axes
    /// that broadcast as in PyTorch (`[B, H, T, D] · [B, H, D, T]`, `[B, T, E] · [E, F]`,
    /// `[1, H, T, D] · [B, 1, D, T]`). Both operands need at least 2 axes.
    pub fn try_matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        let (dims, shape) = matmul_dims(self.shape(), rhs.shape())?;
        let data = matmul_forward(&dims, &self.data(), &rhs.data());
        let out = Tensor::from_parts(data, shape);
        Ok(tape::record(out, &[self, rhs], || {
            Op::Linalg(LinalgRecord::MatMul {
                lhs: self.clone(),
                rhs: rhs.clone(),
                dims,
            })
        }))
    }

    /// Matrix product; panics with both shapes when they do not fit.
    #[track_caller]
    pub fn matmul(&self, rhs: &Tensor) -> Tensor {
        or_panic(self.try_matmul(rhs))
    }

    /// `x · Wᵀ + b` for `x` of shape `[..., in]`, `weight` `[out, in]`, `bias` `[out]`:
    /// PyTorch's `F.linear`, one GEMM with the bias folded in and Wᵀ read by strides.
    pub fn try_linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let bad = |detail| TensorError::ShapeMismatch {
            op: "linear",
            lhs: self.shape().to_vec(),
            rhs: weight.shape().to_vec(),
            detail,
        };
        let [outf, inf] = *weight.shape() else {
            return Err(bad(
                "input {} cannot take weight {}: weight must be [out, in]",
            ));
        };
        if self.rank() == 0 || self.shape()[self.rank() - 1] != inf {
            return Err(bad(
                "input {} does not fit weight {}: its last axis must equal in-features",
            ));
        }
        if let Some(b) = bias {
            if b.shape() != [outf] {
                return Err(TensorError::ShapeMismatch {
                    op: "linear",
                    lhs: weight.shape().to_vec(),
                    rhs: b.shape().to_vec(),
                    detail: "weight {} needs a bias of shape [out], got {}",
                });
            }
        }
        let mut shape = self.0.shape.clone();
        *shape.last_mut().expect("rank checked above") = outf;
        // [2^40, 0] inputs to a [2^40, 0] weight make an output that is too large.
        try_numel("linear", &shape)?;
        let rows = leading_rows(self.shape());
        // Every element is written by the product (the bias added as it stores).
        let mut out = pool::for_overwrite(rows * outf);
        let (x, w) = (self.data(), weight.data());
        let (x, wt) = (MatRef::rows(&x, inf), MatRef::transposed(&w, inf));
        match bias {
            Some(b) => gemm_bias_into((rows, outf, inf), x, wt, &b.data(), &mut out),
            None => gemm_into(rows, outf, inf, x, wt, &mut out, false),
        }
        let out = Tensor::from_parts(out, shape);
        let inputs: &[&Tensor] = match bias {
            Some(b) => &[self, weight, b],
            None => &[self, weight],
        };
        Ok(tape::record(out, inputs, || {
            Op::Linalg(LinalgRecord::Linear {
                input: self.clone(),
                weight: weight.clone(),
                bias: bias.cloned(),
            })
        }))
    }

    /// `x · Wᵀ + b`; panics with the shapes when they do not fit.
    #[track_caller]
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Tensor {
        or_panic(self.try_linear(weight, bias))
    }
}
