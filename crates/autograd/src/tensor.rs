//! The tensor handle: storage, shape, gradient and the link to the tape.
//!
//! A [`Tensor`] is a reference-counted handle, so cloning it never copies data. Data is
//! f32, row-major and always contiguous. A tensor is either a *leaf* (made by a
//! constructor; it may require grad, and then `backward` accumulates into its `grad`)
//! or the output of a recorded op (it carries the id of its node on the tape).

use std::cell::{Cell, Ref, RefCell, RefMut};
use std::fmt;
use std::mem::ManuallyDrop;
use std::rc::Rc;

use rand::Rng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::error::{or_panic, Result, TensorError};
use crate::pool;
use crate::shape::{checked_numel, numel, try_numel, Shape};
use crate::tape::{self, NodeId};

/// A parameter's data and gradient, borrowed together (see [`Tensor::data_and_grad_mut`]).
pub type DataAndGrad<'a> = (RefMut<'a, [f32]>, RefMut<'a, [f32]>);

/// An n-dimensional f32 tensor; a cheap-to-clone handle to shared storage.
#[derive(Clone)]
pub struct Tensor(pub(crate) ManuallyDrop<Rc<Inner>>);

pub(crate) struct Inner {
    pub(crate) data: RefCell<Vec<f32>>,
    pub(crate) shape: Shape,
    /// Set when an op producing this tensor was recorded on the tape.
    pub(crate) node: Cell<Option<NodeId>>,
    /// Only meaningful on leaves: whether `backward` accumulates into `grad`.
    pub(crate) requires_grad: Cell<bool>,
    pub(crate) grad: RefCell<Option<Vec<f32>>>,
    /// False while the header waits among the spare ones (counted out of `LIVE`).
    live: Cell<bool>,
}

thread_local! {
    static LIVE: Cell<usize> = const { Cell::new(0) };
    /// Headers of dropped tensors, kept for the next tensors made on this thread: every
    /// op's output needs one, and reusing them is what lets a steady-state training step
    /// run without a heap allocation.
    static SPARE_HEADERS: RefCell<Vec<Rc<Inner>>> = const { RefCell::new(Vec::new()) };
}

/// Most dropped headers kept per thread (a few dozen bytes each).
const MAX_SPARE_HEADERS: usize = 1024;

impl Drop for Tensor {
    /// The last handle to a tensor hands its storage to the pool and keeps its header
    /// for reuse by the next tensor made on this thread instead of freeing it.
    fn drop(&mut self) {
        // SAFETY: `self.0` is not touched again: this is the handle's drop.
        let mut header = unsafe { ManuallyDrop::take(&mut self.0) };
        if Rc::get_mut(&mut header).is_none() {
            return; // Other handles remain: only the count goes down.
        }
        // If the header is not kept (no room, thread teardown), it drops as before.
        let _ = SPARE_HEADERS.try_with(move |spare| {
            let Ok(mut spare) = spare.try_borrow_mut() else {
                return;
            };
            let Some(inner) = Rc::get_mut(&mut header) else {
                return;
            };
            if spare.len() >= MAX_SPARE_HEADERS {
                return;
            }
            pool::give(std::mem::take(inner.data.get_mut()));
            if let Some(g) = inner.grad.get_mut().take() {
                pool::give(g);
            }
            inner.node.set(None);
            inner.requires_grad.set(false);
            inner.live.set(false);
            let _ = LIVE.try_with(|n| n.set(n.get() - 1));
            spare.push(header);
        });
    }
}

/// Number of tensors alive on this thread (a diagnostic for memory tests).
pub fn live_tensors() -> usize {
    LIVE.with(|n| n.get())
}

impl Tensor {
    /// Wraps a buffer whose length the caller has already checked against `shape`.
    ///
    /// Every tensor is made here, so this is where the invariant that a tensor's shape
    /// is valid (its element count and strides cannot wrap, see [`crate::shape`]) is
    /// enforced. Shapes from outside are checked with an `Err` before they get here;
    /// this assert (a few multiplications) stops any path that forgot, in every build.
    #[track_caller]
    pub(crate) fn from_parts(data: Vec<f32>, shape: Shape) -> Tensor {
        assert!(
            checked_numel(&shape) == Some(data.len()),
            "tensor of shape {shape:?} built from {} elements",
            data.len()
        );
        LIVE.with(|n| n.set(n.get() + 1));
        let spare = SPARE_HEADERS
            .try_with(|s| s.try_borrow_mut().ok()?.pop())
            .ok()
            .flatten();
        if let Some(mut header) = spare {
            if let Some(inner) = Rc::get_mut(&mut header) {
                // A spare header's storage and gradient went back to the pool and its
                // flags were reset when it was kept.
                *inner.data.get_mut() = data;
                inner.shape = shape;
                inner.live.set(true);
                return Tensor(ManuallyDrop::new(header));
            }
        }
        Tensor(ManuallyDrop::new(Rc::new(Inner {
            data: RefCell::new(data),
            shape,
            node: Cell::new(None),
            requires_grad: Cell::new(false),
            grad: RefCell::new(None),
            live: Cell::new(true),
        })))
    }

    /// A tensor of `shape` holding `data` in row-major order.
    ///
    /// Fails when `data.len()` is not the product of `shape`, or when the product
    /// overflows (see [`crate::shape::checked_numel`]).
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        let expected = try_numel("from_vec", shape)?;
        if data.len() != expected {
            return Err(TensorError::LengthMismatch {
                op: "from_vec",
                expected,
                got: data.len(),
            });
        }
        Ok(Tensor::from_parts(data, Shape::from_slice(shape)))
    }

    /// A tensor of `shape` copied from a slice; fails as [`Tensor::from_vec`] does, or
    /// when the copy cannot be allocated.
    pub fn from_slice(data: &[f32], shape: &[usize]) -> Result<Tensor> {
        let expected = try_numel("from_slice", shape)?;
        if data.len() != expected {
            return Err(TensorError::LengthMismatch {
                op: "from_slice",
                expected,
                got: data.len(),
            });
        }
        let mut copy = pool::try_take("from_slice", data.len())?;
        copy.extend_from_slice(data);
        Ok(Tensor::from_parts(copy, Shape::from_slice(shape)))
    }

    /// `shape` filled with `value`, or an error naming `op` and the shape when it is too
    /// large or its buffer cannot be allocated.
    fn try_filled(op: &'static str, shape: &[usize], value: f32) -> Result<Tensor> {
        let n = try_numel(op, shape)?;
        let mut data = pool::try_take(op, n)?;
        data.resize(n, value);
        Ok(Tensor::from_parts(data, Shape::from_slice(shape)))
    }

    /// A tensor of `shape` with every element `value`, or an error when the shape's
    /// element count overflows or the memory cannot be had.
    pub fn try_full(shape: &[usize], value: f32) -> Result<Tensor> {
        Tensor::try_filled("full", shape, value)
    }

    /// A tensor of `shape` with every element `value`. Panics with a message naming the
    /// shape where [`Tensor::try_full`] fails.
    #[track_caller]
    pub fn full(shape: &[usize], value: f32) -> Tensor {
        or_panic(Tensor::try_full(shape, value))
    }

    /// A tensor of zeros, or an error as [`Tensor::try_full`].
    pub fn try_zeros(shape: &[usize]) -> Result<Tensor> {
        Tensor::try_filled("zeros", shape, 0.0)
    }

    /// A tensor of zeros. Panics where [`Tensor::try_zeros`] fails.
    #[track_caller]
    pub fn zeros(shape: &[usize]) -> Tensor {
        or_panic(Tensor::try_zeros(shape))
    }

    /// A tensor of ones, or an error as [`Tensor::try_full`].
    pub fn try_ones(shape: &[usize]) -> Result<Tensor> {
        Tensor::try_filled("ones", shape, 1.0)
    }

    /// A tensor of ones. Panics where [`Tensor::try_ones`] fails.
    #[track_caller]
    pub fn ones(shape: &[usize]) -> Tensor {
        or_panic(Tensor::try_ones(shape))
    }

    /// A zero-dimensional tensor holding one value.
    pub fn scalar(value: f32) -> Tensor {
        Tensor::full(&[], value)
    }

    /// The values `start, start + step, ...` below `end` (above it for a negative step),
    /// like `torch.arange`. Fails for a zero or non-finite step.
    pub fn arange(start: f32, end: f32, step: f32) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
            return Err(TensorError::InvalidArgument {
                op: "arange",
                reason: format!(
                    "needs finite bounds and a non-zero step, got {start}..{end} step {step}"
                ),
            });
        }
        // `as` saturates, and an over-long count is refused by `try_numel`.
        let count = ((end - start) / step).ceil().max(0.0) as usize;
        try_numel("arange", &[count])?;
        let mut data = pool::try_take("arange", count)?;
        data.extend((0..count).map(|i| start + i as f32 * step));
        Ok(Tensor::from_parts(data, Shape::from_slice(&[count])))
    }

    /// Samples from U(low, high) drawn from the caller's seeded generator. Fails on a bad
    /// range, a shape whose element count overflows, or memory that cannot be had.
    pub fn uniform(shape: &[usize], low: f32, high: f32, rng: &mut impl Rng) -> Result<Tensor> {
        let dist = Uniform::new(low, high).map_err(|e| TensorError::InvalidArgument {
            op: "uniform",
            reason: format!("bad range {low}..{high}: {e}"),
        })?;
        let n = try_numel("uniform", shape)?;
        let mut data = pool::try_take("uniform", n)?;
        data.extend((0..n).map(|_| dist.sample(rng)));
        Ok(Tensor::from_parts(data, Shape::from_slice(shape)))
    }

    /// Samples from N(mean, std²) drawn from the caller's seeded generator. Fails as
    /// [`Tensor::uniform`] does.
    pub fn normal(shape: &[usize], mean: f32, std: f32, rng: &mut impl Rng) -> Result<Tensor> {
        if !(std >= 0.0 && std.is_finite() && mean.is_finite()) {
            return Err(TensorError::InvalidArgument {
                op: "normal",
                reason: format!(
                    "needs a finite mean and a finite std >= 0, got mean {mean} std {std}"
                ),
            });
        }
        let dist = Normal::new(mean, std).map_err(|e| TensorError::InvalidArgument {
            op: "normal",
            reason: format!("bad std {std}: {e}"),
        })?;
        let n = try_numel("normal", shape)?;
        let mut data = pool::try_take("normal", n)?;
        data.extend((0..n).map(|_| dist.sample(rng)));
        Ok(Tensor::from_parts(data, Shape::from_slice(shape)))
    }

    /// The extents, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    /// Number of axes.
    pub fn rank(&self) -> usize {
        self.0.shape.len()
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.0.shape)
    }

    /// The elements in row-major order, copied out.
    pub fn to_vec(&self) -> Vec<f32> {
        self.0.data.borrow().clone()
    }

    /// Borrows the elements in row-major order.
    pub fn data(&self) -> Ref<'_, [f32]> {
        Ref::map(self.0.data.borrow(), |v| v.as_slice())
    }

    /// Mutably borrows the elements, for in-place updates such as an optimizer step.
    ///
    /// Nothing records this on the tape: use it inside [`crate::no_grad`] on leaves,
    /// after `backward`, as optimizers do.
    pub fn data_mut(&self) -> RefMut<'_, [f32]> {
        RefMut::map(self.0.data.borrow_mut(), |v| v.as_mut_slice())
    }

    /// The value of a one-element tensor. Panics otherwise; see [`Tensor::try_item`].
    #[track_caller]
    pub fn item(&self) -> f32 {
        or_panic(self.try_item())
    }

    /// The value of a one-element tensor, or an error naming its shape.
    pub fn try_item(&self) -> Result<f32> {
        if self.numel() != 1 {
            return Err(TensorError::InvalidArgument {
                op: "item",
                reason: format!("needs a one-element tensor, got shape {:?}", self.shape()),
            });
        }
        Ok(self.0.data.borrow()[0])
    }

    /// Whether gradients flow to this tensor: a leaf that requires grad, or the output
    /// of a recorded op.
    pub fn requires_grad(&self) -> bool {
        self.0.requires_grad.get() || self.0.node.get().is_some()
    }

    /// Whether this tensor was made by a constructor rather than a recorded op.
    pub fn is_leaf(&self) -> bool {
        self.0.node.get().is_none()
    }

    /// Makes `backward` accumulate into this leaf's gradient (or stops it).
    ///
    /// Fails on a non-leaf, like PyTorch: its gradient requirement follows its inputs.
    pub fn set_requires_grad(&self, requires_grad: bool) -> Result<()> {
        if !self.is_leaf() {
            return Err(TensorError::InvalidArgument {
                op: "set_requires_grad",
                reason: "only leaf tensors can change requires_grad; use detach() first".into(),
            });
        }
        self.0.requires_grad.set(requires_grad);
        Ok(())
    }

    /// Builder form of [`Tensor::set_requires_grad`] for a fresh leaf.
    #[track_caller]
    pub fn with_requires_grad(self, requires_grad: bool) -> Tensor {
        or_panic(self.set_requires_grad(requires_grad));
        self
    }

    /// The accumulated gradient of a leaf, copied out; `None` before any backward or
    /// after [`Tensor::zero_grad`].
    pub fn grad(&self) -> Option<Tensor> {
        let grad = self.0.grad.borrow();
        grad.as_ref()
            .map(|g| Tensor::from_parts(pool::copy_of(g), self.0.shape.clone()))
    }

    /// Borrows the accumulated gradient without copying it.
    pub fn grad_ref(&self) -> Option<Ref<'_, [f32]>> {
        Ref::filter_map(self.0.grad.borrow(), |g| g.as_deref()).ok()
    }

    /// Mutably borrows the accumulated gradient (gradient clipping scales it in place).
    pub fn grad_mut(&self) -> Option<RefMut<'_, [f32]>> {
        RefMut::filter_map(self.0.grad.borrow_mut(), |g| g.as_deref_mut()).ok()
    }

    /// Mutably borrows the data and the gradient together, for an optimizer step;
    /// `None` when there is no gradient yet.
    pub fn data_and_grad_mut(&self) -> Option<DataAndGrad<'_>> {
        let grad = self.grad_mut()?;
        Some((self.data_mut(), grad))
    }

    /// Replaces the gradient (`None` clears it); the length must match.
    pub fn set_grad(&self, grad: Option<&Tensor>) -> Result<()> {
        let new = match grad {
            None => None,
            Some(g) if g.shape() == self.shape() => Some(pool::copy_of(&g.data())),
            Some(g) => {
                return Err(TensorError::ShapeMismatch {
                    op: "set_grad",
                    lhs: self.shape().to_vec(),
                    rhs: g.shape().to_vec(),
                    detail: "tensor {} cannot take a gradient of shape {}",
                })
            }
        };
        if let Some(old) = std::mem::replace(&mut *self.0.grad.borrow_mut(), new) {
            pool::give(old);
        }
        Ok(())
    }

    /// Clears the accumulated gradient (PyTorch's `zero_grad(set_to_none=True)`).
    pub fn zero_grad(&self) {
        if let Some(old) = self.0.grad.borrow_mut().take() {
            pool::give(old);
        }
    }

    /// Adds `g` into the leaf's gradient, taking the buffer when there is none yet.
    pub(crate) fn accumulate_grad(&self, g: Vec<f32>) {
        let mut slot = self.0.grad.borrow_mut();
        match slot.as_mut() {
            None => *slot = Some(g),
            Some(acc) => {
                crate::tape::add_into(acc, &g);
                pool::give(g);
            }
        }
    }

    /// A new leaf with the same values and no link to the tape.
    pub fn detach(&self) -> Tensor {
        Tensor::from_parts(pool::copy_of(&self.data()), self.0.shape.clone())
    }

    /// Whether `self` and `other` are handles to the same storage.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Rc::ptr_eq(&self.0, &other.0)
    }

    /// Runs reverse mode from this one-element tensor: see [`Tensor::try_backward`].
    #[track_caller]
    pub fn backward(&self) {
        or_panic(self.try_backward())
    }

    /// Walks the tape in reverse from this one-element tensor and accumulates the
    /// gradient of every leaf that requires grad. The record is released afterwards;
    /// a second call without a new forward pass is an error, as in PyTorch.
    pub fn try_backward(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(TensorError::Backward(format!(
                "grad can be implicitly created only for one-element outputs, got shape {:?}; \
                 use backward_with(grad)",
                self.shape()
            )));
        }
        tape::backward(self, pool::copy_of(&[1.0]))
    }

    /// Reverse mode from any tensor, seeded with the output gradient `grad`.
    pub fn backward_with(&self, grad: &Tensor) -> Result<()> {
        if grad.shape() != self.shape() {
            return Err(TensorError::ShapeMismatch {
                op: "backward_with",
                lhs: self.shape().to_vec(),
                rhs: grad.shape().to_vec(),
                detail: "output {} cannot take an output gradient of shape {}",
            });
        }
        tape::backward(self, pool::copy_of(&grad.data()))
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let data = self.0.data.borrow();
        write!(f, "Tensor(shape={:?}, data=", self.shape())?;
        if data.len() <= 16 {
            write!(f, "{:?}", &data[..])?;
        } else {
            write!(f, "{:?} ... ({} elements)", &data[..8], data.len())?;
        }
        if self.requires_grad() {
            write!(f, ", requires_grad")?;
        }
        write!(f, ")")
    }
}
