//! Matrix products as differentiable ops: `matmul` (2-D and batched 3-D with a broadcast
//! batch axis) and the fused `linear` (x·Wᵀ + b) that `nn::Linear` uses.
//!
//! Forward and backward products all go through [`gemm_into`] with strided views, so
//! the backward products (G·Bᵀ, Aᵀ·G) and `linear`'s Wᵀ never copy a transpose.

use crate::error::{or_panic, Result, TensorError};
use crate::ops::gemm::{gemm_into, MatRef};
use crate::pool;
use crate::shape::{try_numel, Shape};
use crate::tape::{self, Grads, Op};
use crate::tensor::Tensor;

/// Operand sizes of a (batched) product: `[ba, m, k] · [bb, k, n]`, `ba` or `bb` may be 1.
#[derive(Clone, Copy)]
pub(crate) struct Dims {
    ba: usize,
    bb: usize,
    m: usize,
    k: usize,
    n: usize,
}

impl Dims {
    fn batch(&self) -> usize {
        self.ba.max(self.bb)
    }
}

fn matmul_dims(a: &[usize], b: &[usize]) -> Result<(Dims, Shape)> {
    let mismatch = || TensorError::ShapeMismatch {
        op: "matmul",
        lhs: a.to_vec(),
        rhs: b.to_vec(),
        detail: "cannot multiply {} by {}",
    };
    let (ba, m, k) = match *a {
        [m, k] => (1, m, k),
        [ba, m, k] => (ba, m, k),
        _ => return Err(mismatch()),
    };
    let (bb, k2, n) = match *b {
        [k, n] => (1, k, n),
        [bb, k, n] => (bb, k, n),
        _ => return Err(mismatch()),
    };
    if k != k2 || (ba != bb && ba != 1 && bb != 1) {
        return Err(mismatch());
    }
    let dims = Dims { ba, bb, m, k, n };
    let shape = if a.len() == 2 && b.len() == 2 {
        Shape::from_slice(&[m, n])
    } else {
        Shape::from_slice(&[dims.batch(), m, n])
    };
    // Valid operands can still make an output that is not: [2^40, 0] · [0, 2^40].
    try_numel("matmul", &shape)?;
    Ok((dims, shape))
}

/// The forward product, one GEMM per batch (one GEMM in all when `b` is shared).
fn matmul_forward(d: Dims, a: &[f32], b: &[f32]) -> Vec<f32> {
    let Dims { m, k, n, .. } = d;
    let mut out = pool::for_overwrite(d.batch() * m * n);
    if d.bb == 1 {
        // A shared right operand: stack the batches of `a` into one tall matrix.
        gemm_into(
            d.ba * m,
            n,
            k,
            MatRef::rows(a, k),
            MatRef::rows(b, n),
            &mut out,
            false,
        );
        return out;
    }
    for (i, dst) in out.chunks_exact_mut(m * n).enumerate() {
        let a_i = if d.ba == 1 {
            a
        } else {
            &a[i * m * k..(i + 1) * m * k]
        };
        let b_i = &b[i * k * n..(i + 1) * k * n];
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

impl LinalgRecord {
    pub(crate) fn backward(&self, g: &[f32], grads: &mut Grads) {
        match self {
            LinalgRecord::MatMul { lhs, rhs, dims } => {
                let Dims { m, k, n, .. } = *dims;
                let batch = dims.batch();
                if grads.wants(lhs) {
                    // dA = G · Bᵀ, summed over the batch when `a` was broadcast.
                    let b = rhs.data();
                    let mut da = pool::zeros(lhs.numel());
                    for i in 0..batch {
                        let g_i = &g[i * m * n..(i + 1) * m * n];
                        let b_i = if dims.bb == 1 {
                            &b[..]
                        } else {
                            &b[i * k * n..(i + 1) * k * n]
                        };
                        let off = if dims.ba == 1 { 0 } else { i * m * k };
                        let dst = &mut da[off..off + m * k];
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
                    // dB = Aᵀ · G, summed over the batch when `b` was broadcast.
                    let a = lhs.data();
                    let mut db = pool::zeros(rhs.numel());
                    if dims.bb == 1 && dims.ba == batch {
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
                            let g_i = &g[i * m * n..(i + 1) * m * n];
                            let a_i = if dims.ba == 1 {
                                &a[..]
                            } else {
                                &a[i * m * k..(i + 1) * m * k]
                            };
                            let off = if dims.bb == 1 { 0 } else { i * k * n };
                            let dst = &mut db[off..off + k * n];
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
                    let mut db = pool::zeros(outf);
                    for row in g.chunks_exact(outf) {
                        for (d, &v) in db.iter_mut().zip(row) {
                            *d += v;
                        }
                    }
                    grads.add(bias, db);
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
    /// Matrix product of 2-D tensors, or batched over a leading axis of 3-D tensors (a
    /// batch of 1, or a 2-D operand, is broadcast across the other's batch).
    pub fn try_matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        let (dims, shape) = matmul_dims(self.shape(), rhs.shape())?;
        let data = matmul_forward(dims, &self.data(), &rhs.data());
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
        let mut out = pool::take(rows * outf);
        match bias {
            Some(b) => {
                let b = b.data();
                for _ in 0..rows {
                    out.extend_from_slice(&b);
                }
            }
            None => out.resize(rows * outf, 0.0),
        }
        gemm_into(
            rows,
            outf,
            inf,
            MatRef::rows(&self.data(), inf),
            MatRef::transposed(&weight.data(), inf),
            &mut out,
            bias.is_some(),
        );
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
