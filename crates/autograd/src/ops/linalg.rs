//! Matrix products as differentiable ops: `matmul` (2-D, and batched over any number of
//! broadcast leading axes) and the fused `linear` (x·Wᵀ + b) that `nn::Linear` uses.
//!
//! Forward and backward products all go through [`gemm_into`] with strided views, so
//! the backward products (G·Bᵀ, Aᵀ·G) and `linear`'s Wᵀ never copy a transpose.

use crate::error::{or_panic, Result, TensorError};
use crate::ops::gemm::{gemm_bias_into, gemm_into, gemm_summing_a_rows, MatRef};
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
                let bias = bias.as_ref().filter(|b| grads.wants(b));
                // The bias gradient (G's column sums), if the product below makes it.
                let mut db = None;
                if grads.wants(weight) {
                    // dW = Gᵀ · X
                    let mut dw = pool::for_overwrite(weight.numel());
                    let x = input.data();
                    let (gt, x) = (MatRef::transposed(g, outf), MatRef::rows(&x, inf));
                    if bias.is_some() {
                        // Gᵀ's row sums as G is packed, where the product can: the same
                        // bits as `column_sums`, without its pass over G.
                        let mut sums = pool::for_overwrite(outf);
                        if gemm_summing_a_rows((outf, inf, rows), gt, x, &mut dw, &mut sums) {
                            db = Some(sums);
                        } else {
                            pool::give(sums);
                        }
                    } else {
                        gemm_into(outf, inf, rows, gt, x, &mut dw, false);
                    }
                    grads.add(weight, dw);
                }
                if let Some(bias) = bias {
                    grads.add(bias, db.unwrap_or_else(|| column_sums(g, outf)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::gemm::set_num_threads;

    /// Values of many magnitudes and both signs: another summation order changes bits.
    fn rough(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let x = (i * 7 + seed * 13) as f32;
                x.sin() * (1.0 + ((i * 5 + seed) % 11) as f32 * 37.3)
            })
            .collect()
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// `linear`'s bias gradient, summed while dW's product packs G where it can, has
    /// the bits of `column_sums` on 1 and 2 threads: ragged shapes (rows no multiple of
    /// a block, widths no multiple of a panel), w3's (fused) and split-k ones (not).
    #[test]
    fn the_bias_gradient_keeps_the_bits_of_column_sums() {
        for (rows, inf, outf) in [
            (1037, 45, 131),
            (700, 131, 389),
            (97, 300, 7),
            (1024, 128, 384),
            (1024, 128, 67),
        ] {
            let g = rough(rows * outf, 1);
            let want = bits(&column_sums(&g, outf));
            // The values are rough enough that the order of the sums shows in the bits.
            let reversed: Vec<u32> = (0..outf)
                .map(|j| {
                    (0..rows)
                        .rev()
                        .map(|i| g[i * outf + j])
                        .sum::<f32>()
                        .to_bits()
                })
                .collect();
            assert_ne!(
                want, reversed,
                "{rows}x{outf}: the test would not see the order"
            );
            for threads in [1, 2] {
                set_num_threads(threads);
                let leaf = |data: Vec<f32>, shape: &[usize]| {
                    let t = Tensor::from_vec(data, shape).unwrap();
                    t.set_requires_grad(true).unwrap();
                    t
                };
                let x = leaf(rough(rows * inf, 2), &[rows, inf]);
                let w = leaf(rough(outf * inf, 3), &[outf, inf]);
                let b = leaf(rough(outf, 4), &[outf]);
                let y = x.linear(&w, Some(&b));
                y.backward_with(&Tensor::from_vec(g.clone(), &[rows, outf]).unwrap())
                    .unwrap();
                let got = bits(&b.grad().unwrap().data());
                assert!(got == want, "{rows}x{inf}x{outf} threads {threads}");
                // The product itself, where it sums (the blocked AVX2 or scalar GEMM).
                let (mut dw, mut sums) = (vec![0.0; outf * inf], vec![f32::NAN; outf]);
                let xs = x.data();
                let (gt, xs) = (MatRef::transposed(&g, outf), MatRef::rows(&xs, inf));
                if gemm_summing_a_rows((outf, inf, rows), gt, xs, &mut dw, &mut sums) {
                    assert!(bits(&sums) == want, "{rows}x{inf}x{outf} threads {threads}");
                }
            }
        }
    }
}
