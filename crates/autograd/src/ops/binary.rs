//! Elementwise ops of two tensors with NumPy/PyTorch broadcasting: add, sub, mul, div.
//!
//! The forward kernel has fast paths that touch no shape arithmetic per element (same
//! shape, split across threads when large; a one-element operand; an operand repeated
//! along leading axes such as a bias row) and a general walk row by row in which each row
//! is a slice loop (`[N, C]` with `[N, 1]` is a row times one value). Backward computes
//! each input's gradient at the broadcast shape and sums it back down to the input's own
//! shape, row by row too.

use crate::cpu::with_avx2_fma;
use crate::error::{or_panic, Result, TensorError};
use crate::parallel::for_each_piece;
use crate::pool;
use crate::shape::{
    broadcast_shapes, broadcast_strides, contiguous_strides, for_each_row2, numel, try_numel, Shape,
};

/// Elements per piece when a same-shape op is split across threads.
const PIECE: usize = 1 << 14;
use crate::tape::{self, GradTarget, Grads, Op};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug)]
pub(crate) enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

impl BinaryOp {
    fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }
}

/// `f(a, b)` over the broadcast of two row-major operands, into a pooled buffer.
pub(crate) fn zip_broadcast(
    a: &[f32],
    a_shape: &[usize],
    b: &[f32],
    b_shape: &[usize],
    out_shape: &[usize],
    f: impl Fn(f32, f32) -> f32 + Sync + Send,
) -> Vec<f32> {
    let n = numel(out_shape);
    if a.len() == n && b.len() == n {
        // Same shape: the common case (residual adds, gradients), split across threads
        // for large inputs; each element alone, so the pieces change nothing.
        let mut out = pool::for_overwrite(n);
        for_each_piece(&mut out, PIECE, n, |i, o| {
            let at = i * PIECE;
            let (a, b) = (&a[at..][..o.len()], &b[at..][..o.len()]);
            with_avx2_fma(|| {
                for ((o, &x), &y) in o.iter_mut().zip(a).zip(b) {
                    *o = f(x, y);
                }
            })
        });
        return out;
    }
    let mut out = pool::take(n);
    if n == 0 {
        return out;
    }
    if b.len() == 1 && a.len() == n {
        let y = b[0];
        out.extend(a.iter().map(|&x| f(x, y)));
    } else if a.len() == 1 && b.len() == n {
        let x = a[0];
        out.extend(b.iter().map(|&y| f(x, y)));
    } else if a.len() == n && is_trailing(b_shape, out_shape) {
        for row in a.chunks_exact(b.len()) {
            out.extend(row.iter().zip(b).map(|(&x, &y)| f(x, y)));
        }
    } else if b.len() == n && is_trailing(a_shape, out_shape) {
        for row in b.chunks_exact(a.len()) {
            out.extend(a.iter().zip(row).map(|(&x, &y)| f(x, y)));
        }
    } else {
        // Row by row: a row of each operand is contiguous (inner stride 1) or one value
        // repeated (stride 0), e.g. [N, C] with [N, 1], so each row is a slice loop.
        let sa = broadcast_strides(a_shape, out_shape);
        let sb = broadcast_strides(b_shape, out_shape);
        let inner = out_shape.last().copied().unwrap_or(1);
        let (ia, ib) = (
            sa.last().copied().unwrap_or(0),
            sb.last().copied().unwrap_or(0),
        );
        for_each_row2(out_shape, &sa, &sb, |i, j| match (ia, ib) {
            (1, 1) => out.extend(
                a[i..i + inner]
                    .iter()
                    .zip(&b[j..j + inner])
                    .map(|(&x, &y)| f(x, y)),
            ),
            (1, 0) => {
                let y = b[j];
                out.extend(a[i..i + inner].iter().map(|&x| f(x, y)));
            }
            (0, 1) => {
                let x = a[i];
                out.extend(b[j..j + inner].iter().map(|&y| f(x, y)));
            }
            _ => out.extend((0..inner).map(|k| f(a[i + k * ia], b[j + k * ib]))),
        });
    }
    out
}

/// Whether `small` equals the trailing axes of `big` (ignoring leading 1s of `small`),
/// so `big` is `small` repeated over its leading axes.
fn is_trailing(small: &[usize], big: &[usize]) -> bool {
    let small = match small.iter().position(|&d| d != 1) {
        Some(p) => &small[p..],
        None => &[],
    };
    !small.is_empty() && big.ends_with(small)
}

/// Sums a gradient of shape `from` down to the shape `to` it was broadcast from.
pub(crate) fn sum_to_shape(g: Vec<f32>, from: &[usize], to: &[usize]) -> Vec<f32> {
    if numel(from) == numel(to) {
        return g;
    }
    let mut out = pool::zeros(numel(to));
    if is_trailing(to, from) || to.iter().all(|&d| d == 1) {
        let width = out.len();
        for row in g.chunks_exact(width) {
            for (o, &v) in out.iter_mut().zip(row) {
                *o += v;
            }
        }
    } else {
        // Row by row, in the same order as element by element: a row either adds into a
        // row of `out` (inner stride 1) or sums into one element (stride 0).
        let own = contiguous_strides(from);
        let st = broadcast_strides(to, from);
        let inner = from.last().copied().unwrap_or(1);
        let it = st.last().copied().unwrap_or(0);
        for_each_row2(from, &own, &st, |i, j| {
            let row = &g[i..i + inner];
            if it == 0 {
                let mut acc = out[j];
                for &v in row {
                    acc += v;
                }
                out[j] = acc;
            } else {
                for (o, &v) in out[j..j + inner].iter_mut().zip(row) {
                    *o += v;
                }
            }
        });
    }
    pool::give(g);
    out
}

/// What a binary op saves: where each input's gradient goes, and for mul and div, whose
/// backward reads them, the inputs themselves. A sum keeps no operand data: its inputs'
/// buffers (a residual branch's output) go back to the pool when the program drops them.
pub(crate) struct BinaryRecord {
    op: BinaryOp,
    lhs: GradTarget,
    rhs: GradTarget,
    /// `(lhs, rhs)` for mul and div; `None` for add and sub.
    operands: Option<(Tensor, Tensor)>,
    out_shape: Shape,
}

impl BinaryRecord {
    /// Takes the output gradient `g` by value: for add and sub it becomes an input's
    /// gradient as it is, instead of being copied (the residual stream's adds).
    pub(crate) fn backward(&self, g: Vec<f32>, grads: &mut Grads) {
        let (a, b) = (&self.lhs, &self.rhs);
        let (sa, sb, so) = (a.shape(), b.shape(), &self.out_shape[..]);
        let (want_a, want_b) = (a.requires_grad(), b.requires_grad());
        let operand = |i: usize| {
            let (x, y) = self
                .operands
                .as_ref()
                .expect("mul and div keep their operands");
            if i == 0 {
                x.data()
            } else {
                y.data()
            }
        };
        // For b, computed first so that g itself can go to a afterwards.
        let gb = if want_b {
            match self.op {
                BinaryOp::Add if want_a => Some(pool::copy_of(&g)),
                BinaryOp::Add => None, // g itself, below
                BinaryOp::Sub => {
                    let mut neg = pool::take(g.len());
                    neg.extend(g.iter().map(|&v| -v));
                    Some(neg)
                }
                BinaryOp::Mul => Some(zip_broadcast(&g, so, &operand(0), sa, so, |g, x| g * x)),
                BinaryOp::Div => {
                    // d(x/y)/dy = −x / y², as PyTorch computes it: −g · (x / y) / y.
                    let (x, y) = (operand(0), operand(1));
                    let q = zip_broadcast(&x, sa, &y, sb, so, |x, y| x / y);
                    let gq = zip_broadcast(&g, so, &q, so, so, |g, q| -g * q);
                    pool::give(q);
                    let out = zip_broadcast(&gq, so, &y, sb, so, |t, y| t / y);
                    pool::give(gq);
                    Some(out)
                }
            }
        } else {
            None
        };
        let mut g = Some(g);
        if want_a {
            let full = match self.op {
                BinaryOp::Add | BinaryOp::Sub => g.take().expect("not yet handed on"),
                BinaryOp::Mul => zip_broadcast(
                    g.as_deref().expect("kept"),
                    so,
                    &operand(1),
                    sb,
                    so,
                    |g, y| g * y,
                ),
                BinaryOp::Div => zip_broadcast(
                    g.as_deref().expect("kept"),
                    so,
                    &operand(1),
                    sb,
                    so,
                    |g, y| g / y,
                ),
            };
            grads.add_to(a, sum_to_shape(full, so, sa));
        }
        if want_b {
            let full = match gb {
                Some(gb) => gb,
                None => g.take().expect("add hands g to b when a does not want it"),
            };
            grads.add_to(b, sum_to_shape(full, so, sb));
        }
        if let Some(g) = g {
            pool::give(g);
        }
    }
}

impl BinaryRecord {
    /// The op's name for anomaly reports.
    pub(crate) fn name(&self) -> String {
        self.op.name().into()
    }
}

impl Tensor {
    fn binary(&self, rhs: &Tensor, op: BinaryOp) -> Result<Tensor> {
        let out_shape = broadcast_shapes(self.shape(), rhs.shape()).ok_or_else(|| {
            TensorError::ShapeMismatch {
                op: op.name(),
                lhs: self.shape().to_vec(),
                rhs: rhs.shape().to_vec(),
                detail: "cannot broadcast {} with {}",
            }
        })?;
        // Two valid operands can broadcast to a shape that is not ([2^32, 1] with [1, 2^32]).
        try_numel(op.name(), &out_shape)?;
        let data = {
            let (a, b) = (self.data(), rhs.data());
            match op {
                BinaryOp::Add => {
                    zip_broadcast(&a, self.shape(), &b, rhs.shape(), &out_shape, |x, y| x + y)
                }
                BinaryOp::Sub => {
                    zip_broadcast(&a, self.shape(), &b, rhs.shape(), &out_shape, |x, y| x - y)
                }
                BinaryOp::Mul => {
                    zip_broadcast(&a, self.shape(), &b, rhs.shape(), &out_shape, |x, y| x * y)
                }
                BinaryOp::Div => {
                    zip_broadcast(&a, self.shape(), &b, rhs.shape(), &out_shape, |x, y| x / y)
                }
            }
        };
        let out = Tensor::from_parts(data, out_shape.clone());
        Ok(tape::record(out, &[self, rhs], || {
            Op::Binary(BinaryRecord {
                op,
                lhs: GradTarget::of(self),
                rhs: GradTarget::of(rhs),
                operands: match op {
                    BinaryOp::Add | BinaryOp::Sub => None,
                    BinaryOp::Mul | BinaryOp::Div => Some((self.clone(), rhs.clone())),
                },
                out_shape,
            })
        }))
    }

    /// Elementwise sum with broadcasting, or an error naming both shapes.
    pub fn try_add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Add)
    }
    /// Elementwise difference with broadcasting, or an error naming both shapes.
    pub fn try_sub(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Sub)
    }
    /// Elementwise product with broadcasting, or an error naming both shapes.
    pub fn try_mul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Mul)
    }
    /// Elementwise quotient with broadcasting, or an error naming both shapes.
    pub fn try_div(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(rhs, BinaryOp::Div)
    }
    /// Elementwise sum with broadcasting; panics on incompatible shapes.
    #[track_caller]
    pub fn add(&self, rhs: &Tensor) -> Tensor {
        or_panic(self.try_add(rhs))
    }
    /// Elementwise difference with broadcasting; panics on incompatible shapes.
    #[track_caller]
    pub fn sub(&self, rhs: &Tensor) -> Tensor {
        or_panic(self.try_sub(rhs))
    }
    /// Elementwise product with broadcasting; panics on incompatible shapes.
    #[track_caller]
    pub fn mul(&self, rhs: &Tensor) -> Tensor {
        or_panic(self.try_mul(rhs))
    }
    /// Elementwise quotient with broadcasting; panics on incompatible shapes.
    #[track_caller]
    pub fn div(&self, rhs: &Tensor) -> Tensor {
        or_panic(self.try_div(rhs))
    }
}
