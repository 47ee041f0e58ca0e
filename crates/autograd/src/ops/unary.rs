//! Elementwise ops of one tensor: math, activations and tensor-scalar arithmetic.
//!
//! Each op is a variant of [`UnaryOp`] with two arms side by side: its value `f(x)` in
//! [`UnaryOp::forward`] and its derivative `f'(x)` (given x and y = f(x)) in
//! [`UnaryOp::derivative`]. A new activation is a variant, two arms and a method.
//! Derivatives at kinks follow PyTorch: relu'(0) = 0, |x|'(0) = 0, clamp passes the
//! gradient where min ≤ x ≤ max.

use crate::cpu::with_avx2_fma;
use crate::error::or_panic;
use crate::ops::vecmath;
use crate::parallel::{for_each_piece, for_each_piece2};
use crate::pool;
use crate::tape::{self, GradTarget, Grads, Op};
use crate::tensor::Tensor;

/// Which formula `gelu` uses, like PyTorch's `approximate` argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GeluApprox {
    /// The exact form x·Φ(x), with Φ from `erf` (PyTorch's `approximate='none'`).
    None,
    /// The tanh approximation (PyTorch's `approximate='tanh'`).
    Tanh,
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum UnaryOp {
    Neg,
    Exp,
    Log,
    Sqrt,
    Abs,
    Relu,
    Sigmoid,
    Tanh,
    LeakyRelu(f32),
    Gelu(GeluApprox),
    Silu,
    /// alpha
    Elu(f32),
    /// beta, threshold
    Softplus(f32, f32),
    Clamp(f32, f32),
    Pow(f32),
    AddScalar(f32),
    MulScalar(f32),
    DivScalar(f32),
    /// s − x
    RSubScalar(f32),
    /// s / x
    RDivScalar(f32),
}

/// √(2/π), the tanh-GELU's inner scale.
const GELU_BETA: f32 = 0.797_884_6;
const GELU_KAPPA: f32 = 0.044_715;

/// xᵖ with PyTorch's special cases (it computes x², x³, √x, 1/√x, 1/x and 1/x² by
/// multiplication and roots, not `pow`), which are also many times faster than `powf`.
fn pow(x: f32, p: f32) -> f32 {
    match p {
        1.0 => x,
        2.0 => x * x,
        3.0 => x * x * x,
        0.5 => x.sqrt(),
        -0.5 => 1.0 / x.sqrt(),
        -1.0 => 1.0 / x,
        -2.0 => 1.0 / (x * x),
        _ => x.powf(p),
    }
}

/// Elements per piece when an elementwise op is split across threads.
const PIECE: usize = 1 << 14;

/// `f(x)` for every element, split across threads for large inputs (each element is
/// computed alone, so where the pieces fall changes nothing), with AVX2 + FMA code
/// where the CPU has it (bit-identical: see `cpu`).
fn map(x: &[f32], f: impl Fn(f32) -> f32 + Sync + Send) -> Vec<f32> {
    let mut out = pool::for_overwrite(x.len());
    for_each_piece(&mut out, PIECE, x.len(), |i, o| {
        let src = &x[i * PIECE..][..o.len()];
        with_avx2_fma(|| {
            for (o, &v) in o.iter_mut().zip(src) {
                *o = f(v);
            }
        })
    });
    out
}

/// g · f'(x, y) for every element, split as [`map`].
fn chain(g: &[f32], x: &[f32], y: &[f32], df: impl Fn(f32, f32) -> f32 + Sync + Send) -> Vec<f32> {
    let mut out = pool::for_overwrite(g.len());
    for_each_piece(&mut out, PIECE, g.len(), |i, o| {
        let at = i * PIECE;
        let (g, x, y) = (
            &g[at..][..o.len()],
            &x[at..][..o.len()],
            &y[at..][..o.len()],
        );
        with_avx2_fma(|| {
            for (((o, &g), &x), &y) in o.iter_mut().zip(g).zip(x).zip(y) {
                *o = g * df(x, y);
            }
        })
    });
    out
}

/// The exact GELU (vectorised in `vecmath`), split as [`map`].
fn gelu_exact(x: &[f32]) -> Vec<f32> {
    let mut out = pool::for_overwrite(x.len());
    for_each_piece(&mut out, PIECE, x.len(), |i, o| {
        vecmath::gelu_forward(&x[i * PIECE..][..o.len()], o)
    });
    out
}

/// The exact GELU and its derivative gelu'(x) (saved for the backward), split as [`map`].
fn gelu_exact_and_derivative(x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let mut out = pool::for_overwrite(x.len());
    let mut d = pool::for_overwrite(x.len());
    for_each_piece2((&mut out, PIECE), (&mut d, PIECE), x.len(), |i, o, d| {
        vecmath::gelu_forward_and_derivative(&x[i * PIECE..][..o.len()], o, d)
    });
    (out, d)
}

/// `g[i] *= d[i]`, in place: the chain rule with a saved derivative, split as [`map`].
fn scale_by(g: &mut [f32], d: &[f32]) {
    let n = g.len();
    for_each_piece(g, PIECE, n, |i, part| {
        let src = &d[i * PIECE..][..part.len()];
        with_avx2_fma(|| {
            for (g, &d) in part.iter_mut().zip(src) {
                *g *= d;
            }
        })
    });
}

impl UnaryOp {
    fn forward(self, x: &[f32]) -> Vec<f32> {
        match self {
            UnaryOp::Neg => map(x, |v| -v),
            UnaryOp::Exp => map(x, f32::exp),
            UnaryOp::Log => map(x, f32::ln),
            UnaryOp::Sqrt => map(x, f32::sqrt),
            UnaryOp::Abs => map(x, f32::abs),
            UnaryOp::Relu => map(x, |v| if v > 0.0 { v } else { 0.0 }),
            UnaryOp::Sigmoid => map(x, |v| 1.0 / (1.0 + (-v).exp())),
            UnaryOp::Tanh => map(x, f32::tanh),
            UnaryOp::LeakyRelu(slope) => map(x, |v| if v > 0.0 { v } else { v * slope }),
            UnaryOp::Gelu(GeluApprox::None) => gelu_exact(x),
            UnaryOp::Gelu(GeluApprox::Tanh) => map(x, |v| {
                0.5 * v * (1.0 + (GELU_BETA * (v + GELU_KAPPA * v * v * v)).tanh())
            }),
            UnaryOp::Silu => map(x, |v| v / (1.0 + (-v).exp())),
            UnaryOp::Elu(alpha) => map(x, |v| if v > 0.0 { v } else { alpha * v.exp_m1() }),
            UnaryOp::Softplus(beta, threshold) => map(x, |v| {
                if v * beta > threshold {
                    v
                } else {
                    (v * beta).exp().ln_1p() / beta
                }
            }),
            UnaryOp::Clamp(lo, hi) => map(x, |v| v.max(lo).min(hi)),
            UnaryOp::Pow(p) => map(x, |v| pow(v, p)),
            UnaryOp::AddScalar(s) => map(x, |v| v + s),
            UnaryOp::MulScalar(s) => map(x, |v| v * s),
            UnaryOp::DivScalar(s) => map(x, |v| v / s),
            UnaryOp::RSubScalar(s) => map(x, |v| s - v),
            UnaryOp::RDivScalar(s) => map(x, |v| s / v),
        }
    }

    /// Which of x and y [`UnaryOp::derivative`] reads, so a record keeps only that one
    /// (as PyTorch's autograd saves a ReLU's result and not its input).
    fn reads(self) -> Reads {
        match self {
            UnaryOp::Exp | UnaryOp::Sqrt | UnaryOp::Relu | UnaryOp::Sigmoid | UnaryOp::Tanh => {
                Reads::Output
            }
            UnaryOp::Neg
            | UnaryOp::AddScalar(_)
            | UnaryOp::MulScalar(_)
            | UnaryOp::DivScalar(_)
            | UnaryOp::RSubScalar(_) => Reads::Neither,
            UnaryOp::Log
            | UnaryOp::Abs
            | UnaryOp::LeakyRelu(_)
            | UnaryOp::Gelu(_)
            | UnaryOp::Silu
            | UnaryOp::Elu(_)
            | UnaryOp::Softplus(..)
            | UnaryOp::Clamp(..)
            | UnaryOp::Pow(_)
            | UnaryOp::RDivScalar(_) => Reads::Input,
        }
    }

    /// The input gradient g · f'(x), given the input x and the output y (only the one
    /// [`UnaryOp::reads`] names is read; the other may be any slice of the same length).
    fn derivative(self, g: &[f32], x: &[f32], y: &[f32]) -> Vec<f32> {
        match self {
            UnaryOp::Neg => chain(g, x, y, |_, _| -1.0),
            UnaryOp::Exp => chain(g, x, y, |_, y| y),
            UnaryOp::Log => chain(g, x, y, |x, _| 1.0 / x),
            UnaryOp::Sqrt => chain(g, x, y, |_, y| 0.5 / y),
            UnaryOp::Abs => chain(g, x, y, |x, _| if x == 0.0 { 0.0 } else { x.signum() }),
            UnaryOp::Relu => chain(g, x, y, |_, y| if y > 0.0 { 1.0 } else { 0.0 }),
            UnaryOp::Sigmoid => chain(g, x, y, |_, y| y * (1.0 - y)),
            UnaryOp::Tanh => chain(g, x, y, |_, y| 1.0 - y * y),
            UnaryOp::LeakyRelu(slope) => chain(g, x, y, |x, _| if x > 0.0 { 1.0 } else { slope }),
            // Recorded exact GELUs save their derivative (see `Tensor::gelu_recorded`);
            // this arm serves a record made without one, which never happens today.
            UnaryOp::Gelu(GeluApprox::None) => {
                let (_, d) = gelu_exact_and_derivative(x);
                let mut out = pool::copy_of(g);
                scale_by(&mut out, &d);
                pool::give(d);
                out
            }
            UnaryOp::Gelu(GeluApprox::Tanh) => chain(g, x, y, |x, _| {
                let t = (GELU_BETA * (x + GELU_KAPPA * x * x * x)).tanh();
                0.5 * (1.0 + t)
                    + 0.5 * x * (1.0 - t * t) * GELU_BETA * (1.0 + 3.0 * GELU_KAPPA * x * x)
            }),
            UnaryOp::Silu => chain(g, x, y, |x, _| {
                let s = 1.0 / (1.0 + (-x).exp());
                s * (1.0 + x * (1.0 - s))
            }),
            // PyTorch's elu_backward from the input: α·eˣ below 0.
            UnaryOp::Elu(alpha) => {
                chain(g, x, y, |x, _| if x > 0.0 { 1.0 } else { alpha * x.exp() })
            }
            UnaryOp::Softplus(beta, threshold) => chain(g, x, y, |x, _| {
                if x * beta > threshold {
                    1.0
                } else {
                    let z = (x * beta).exp();
                    z / (z + 1.0)
                }
            }),
            UnaryOp::Clamp(lo, hi) => {
                chain(g, x, y, |x, _| if x >= lo && x <= hi { 1.0 } else { 0.0 })
            }
            UnaryOp::Pow(p) => chain(
                g,
                x,
                y,
                |x, _| if p == 0.0 { 0.0 } else { p * pow(x, p - 1.0) },
            ),
            UnaryOp::AddScalar(_) => chain(g, x, y, |_, _| 1.0),
            UnaryOp::MulScalar(s) => chain(g, x, y, |_, _| s),
            UnaryOp::DivScalar(s) => chain(g, x, y, |_, _| 1.0 / s),
            UnaryOp::RSubScalar(_) => chain(g, x, y, |_, _| -1.0),
            UnaryOp::RDivScalar(s) => chain(g, x, y, |x, _| -s / (x * x)),
        }
    }
}

/// Which of its input and output a unary op's derivative reads.
#[derive(Clone, Copy)]
enum Reads {
    Input,
    Output,
    Neither,
}

/// What a unary op saves: where its input's gradient goes, and what its backward reads.
pub(crate) struct UnaryRecord {
    op: UnaryOp,
    input: GradTarget,
    saved: UnarySaved,
}

/// What a unary op's backward reads. Nothing more is kept, so a buffer no backward
/// reads (a layer's pre-activation under a ReLU or a saved-derivative GELU) goes back to
/// the pool as soon as the forward has moved on.
enum UnarySaved {
    /// The one of x and y that the derivative reads (see [`UnaryOp::reads`]).
    Value(Tensor),
    /// Neither: the derivative is a constant.
    Nothing,
    /// f'(x), computed by the forward (the exact GELU's, from the same erf).
    Derivative(Tensor),
}

impl UnaryRecord {
    /// Takes the output gradient itself: with a saved derivative it becomes the input
    /// gradient in place (g · f'(x), the same product as `derivative` computes).
    pub(crate) fn backward(&self, mut g: Vec<f32>, grads: &mut Grads) {
        let dx = match &self.saved {
            UnarySaved::Derivative(d) => {
                scale_by(&mut g, &d.data());
                grads.add_to(&self.input, g);
                return;
            }
            // The kept value stands in for the one the derivative does not read.
            UnarySaved::Value(v) => {
                let v = v.data();
                self.op.derivative(&g, &v, &v)
            }
            UnarySaved::Nothing => self.op.derivative(&g, &g, &g),
        };
        pool::give(g);
        grads.add_to(&self.input, dx);
    }
}

impl UnaryRecord {
    /// The op's name for anomaly reports, e.g. `Relu` or `Pow(2.0)`.
    pub(crate) fn name(&self) -> String {
        format!("{:?}", self.op)
    }
}

impl Tensor {
    pub(crate) fn unary(&self, op: UnaryOp) -> Tensor {
        if matches!(op, UnaryOp::Gelu(GeluApprox::None)) && tape::should_record(&[self]) {
            return self.gelu_recorded();
        }
        let out = Tensor::from_parts(op.forward(&self.data()), self.0.shape.clone());
        tape::record(out.clone(), &[self], || {
            Op::Unary(UnaryRecord {
                op,
                input: GradTarget::of(self),
                saved: match op.reads() {
                    Reads::Input => UnarySaved::Value(self.clone()),
                    Reads::Output => UnarySaved::Value(out),
                    Reads::Neither => UnarySaved::Nothing,
                },
            })
        })
    }

    /// The exact GELU when it will be recorded: the forward's erf also gives gelu'(x),
    /// which the record keeps, so the backward does not evaluate erf a second time.
    fn gelu_recorded(&self) -> Tensor {
        let (y, d) = gelu_exact_and_derivative(&self.data());
        let out = Tensor::from_parts(y, self.0.shape.clone());
        let derivative = Tensor::from_parts(d, self.0.shape.clone());
        tape::record(out, &[self], || {
            Op::Unary(UnaryRecord {
                op: UnaryOp::Gelu(GeluApprox::None),
                input: GradTarget::of(self),
                saved: UnarySaved::Derivative(derivative),
            })
        })
    }

    /// −x.
    pub fn neg(&self) -> Tensor {
        self.unary(UnaryOp::Neg)
    }
    /// eˣ.
    pub fn exp(&self) -> Tensor {
        self.unary(UnaryOp::Exp)
    }
    /// Natural logarithm.
    pub fn log(&self) -> Tensor {
        self.unary(UnaryOp::Log)
    }
    /// Square root.
    pub fn sqrt(&self) -> Tensor {
        self.unary(UnaryOp::Sqrt)
    }
    /// |x|; the gradient at 0 is 0.
    pub fn abs(&self) -> Tensor {
        self.unary(UnaryOp::Abs)
    }
    /// xᵖ for a scalar exponent p.
    pub fn pow(&self, p: f32) -> Tensor {
        self.unary(UnaryOp::Pow(p))
    }
    /// max(x, 0); the gradient at 0 is 0.
    pub fn relu(&self) -> Tensor {
        self.unary(UnaryOp::Relu)
    }
    /// 1 / (1 + e⁻ˣ).
    pub fn sigmoid(&self) -> Tensor {
        self.unary(UnaryOp::Sigmoid)
    }
    /// Hyperbolic tangent.
    pub fn tanh(&self) -> Tensor {
        self.unary(UnaryOp::Tanh)
    }
    /// x for x > 0, `negative_slope`·x otherwise (PyTorch's default slope is 0.01).
    pub fn leaky_relu(&self, negative_slope: f32) -> Tensor {
        self.unary(UnaryOp::LeakyRelu(negative_slope))
    }
    /// Gaussian error linear unit, exact or tanh-approximated like PyTorch's two modes.
    pub fn gelu(&self, approximate: GeluApprox) -> Tensor {
        self.unary(UnaryOp::Gelu(approximate))
    }
    /// x · sigmoid(x) (SiLU, also called swish).
    pub fn silu(&self) -> Tensor {
        self.unary(UnaryOp::Silu)
    }
    /// x for x > 0, α·(eˣ − 1) otherwise (PyTorch's default α is 1).
    pub fn elu(&self, alpha: f32) -> Tensor {
        self.unary(UnaryOp::Elu(alpha))
    }
    /// log(1 + e^(βx)) / β, and x itself where βx > `threshold` (PyTorch's defaults:
    /// β = 1, threshold = 20), which keeps it exact where e^(βx) would overflow.
    pub fn softplus(&self, beta: f32, threshold: f32) -> Tensor {
        self.unary(UnaryOp::Softplus(beta, threshold))
    }
    /// Limits every element to `[min, max]`; pass `f32::NEG_INFINITY` / `f32::INFINITY`
    /// for a one-sided clamp. Panics when `min > max`.
    #[track_caller]
    pub fn clamp(&self, min: f32, max: f32) -> Tensor {
        if min > max {
            or_panic::<()>(Err(crate::TensorError::InvalidArgument {
                op: "clamp",
                reason: format!("min {min} is greater than max {max}"),
            }));
        }
        self.unary(UnaryOp::Clamp(min, max))
    }
    /// x + s.
    pub fn add_scalar(&self, s: f32) -> Tensor {
        self.unary(UnaryOp::AddScalar(s))
    }
    /// x − s.
    pub fn sub_scalar(&self, s: f32) -> Tensor {
        self.unary(UnaryOp::AddScalar(-s))
    }
    /// x · s.
    pub fn mul_scalar(&self, s: f32) -> Tensor {
        self.unary(UnaryOp::MulScalar(s))
    }
    /// x / s.
    pub fn div_scalar(&self, s: f32) -> Tensor {
        self.unary(UnaryOp::DivScalar(s))
    }
    /// s − x.
    pub fn rsub_scalar(&self, s: f32) -> Tensor {
        self.unary(UnaryOp::RSubScalar(s))
    }
    /// s / x.
    pub fn rdiv_scalar(&self, s: f32) -> Tensor {
        self.unary(UnaryOp::RDivScalar(s))
    }
}
