//! The tape: a per-thread arena of recorded ops, and the reverse walk over it.
//!
//! Recording is a push of an [`Op`] (plain data: the op kind, handles to its inputs and
//! whatever it saved) onto a `Vec`; a node's id is its index. Because ops are pushed in
//! the order they run, the tape is already topologically sorted, and `backward` is one
//! reverse loop with one `match` over op families. Each family's backward rule lives in
//! the same file as its forward (`ops/*.rs`). After `backward` the whole record is
//! released (its saved buffers go back to the pool) and the generation counter moves
//! on, so a stale output can be told apart from a live one.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;

use smallvec::SmallVec;

use crate::anomaly::{is_anomaly_enabled, non_finite};
use crate::cpu::with_avx2_fma;
use crate::error::{Result, TensorError};
use crate::ops::{
    attention, attention_packed, batchnorm, binary, conv, custom, layer_norm, layout, linalg, loss,
    mask, movement, pooling, reduce, unary,
};
use crate::parallel::for_each_piece;
use crate::pool;
use crate::shape::Shape;
use crate::tensor::Tensor;

/// Where a recorded op's output lives on the tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NodeId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

/// A recorded op: what backward needs, nothing more.
pub(crate) enum Op {
    Unary(unary::UnaryRecord),
    Binary(binary::BinaryRecord),
    Linalg(linalg::LinalgRecord),
    Reduce(reduce::ReduceRecord),
    Movement(movement::MovementRecord),
    Custom(custom::CustomRecord),
    Layout(layout::LayoutRecord),
    Mask(mask::MaskRecord),
    Attention(attention::AttentionRecord),
    QkvAttention(attention_packed::QkvAttentionRecord),
    Conv(conv::ConvRecord),
    Pool(pooling::PoolRecord),
    BatchNorm(batchnorm::BatchNormRecord),
    LayerNorm(layer_norm::LayerNormRecord),
    Loss(loss::LossRecord),
}

impl Op {
    /// The op's name, for anomaly reports.
    fn name(&self) -> String {
        match self {
            Op::Unary(r) => r.name(),
            Op::Binary(r) => r.name(),
            Op::Linalg(r) => r.name(),
            Op::Reduce(r) => r.name(),
            Op::Movement(r) => r.name(),
            Op::Custom(r) => r.name(),
            Op::Loss(r) => r.name(),
            // Families without per-op names yet report the family.
            Op::Layout(_) => "layout op (permute, narrow, stack, ...)".into(),
            Op::Mask(_) => "mask op (masked_fill, where, tril, triu)".into(),
            Op::Attention(_) => "scaled_dot_product_attention".into(),
            Op::QkvAttention(_) => "qkv_attention".into(),
            Op::Conv(_) => "convolution".into(),
            Op::Pool(_) => "pooling".into(),
            Op::BatchNorm(_) => "batch_norm".into(),
            Op::LayerNorm(_) => "layer_norm".into(),
        }
    }
}

struct Tape {
    nodes: Vec<Op>,
    generation: u32,
    /// Recent generations ended by [`clear_tape`] rather than by a backward, so that a
    /// backward through one of them says what released it.
    cleared: VecDeque<u32>,
    /// In anomaly mode: the first recorded op of this generation whose output is not
    /// finite, as the message backward will fail with.
    anomaly: Option<String>,
}

/// How many cleared generations are remembered for the error message.
const CLEARED_MEMORY: usize = 64;

thread_local! {
    static TAPE: RefCell<Tape> = const {
        RefCell::new(Tape {
            nodes: Vec::new(),
            generation: 0,
            cleared: VecDeque::new(),
            anomaly: None,
        })
    };
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
    /// The gradient slots of the last backward, kept (empty) for the next one.
    static SPARE_SLOTS: Cell<Vec<Option<Vec<f32>>>> = const { Cell::new(Vec::new()) };
}

/// Whether ops record themselves right now (false inside [`no_grad`]).
pub fn is_grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Number of ops recorded and not yet released on this thread (a diagnostic).
pub fn tape_len() -> usize {
    TAPE.with(|t| t.borrow().nodes.len())
}

/// Releases everything recorded on this thread without running backward, e.g. after
/// an evaluation pass that forgot [`no_grad`]. Outputs recorded so far become stale.
pub fn clear_tape() {
    let nodes = TAPE.with(|t| {
        let mut tape = t.borrow_mut();
        let ended = tape.generation;
        if tape.cleared.len() == CLEARED_MEMORY {
            tape.cleared.pop_front();
        }
        tape.cleared.push_back(ended);
        tape.anomaly = None;
        tape.generation = ended.wrapping_add(1);
        std::mem::take(&mut tape.nodes)
    });
    drop(nodes);
}

/// Restores the previous grad mode when dropped; made by [`no_grad_guard`].
pub struct NoGradGuard {
    previous: bool,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Stops recording until the guard is dropped (PyTorch's `with torch.no_grad():`).
#[must_use = "recording resumes as soon as the guard is dropped"]
pub fn no_grad_guard() -> NoGradGuard {
    NoGradGuard {
        previous: GRAD_ENABLED.with(|g| g.replace(false)),
    }
}

/// Runs `f` with recording off: for evaluation and for optimizer updates.
pub fn no_grad<T>(f: impl FnOnce() -> T) -> T {
    let _guard = no_grad_guard();
    f()
}

/// Whether an op with these inputs must be recorded.
pub(crate) fn should_record(inputs: &[&Tensor]) -> bool {
    is_grad_enabled() && inputs.iter().any(|t| t.requires_grad())
}

/// The inputs that are present among an op's optional ones (a bias, say), listed
/// inline: up to four need no heap allocation, so recording stays allocation-free.
pub(crate) fn present<const N: usize>(inputs: [Option<&Tensor>; N]) -> SmallVec<[&Tensor; 4]> {
    inputs.into_iter().flatten().collect()
}

/// Records `op` as the producer of `out` when any input requires grad; returns `out`.
/// `make_op` runs only when recording, so saving inputs costs nothing in `no_grad`.
pub(crate) fn record(out: Tensor, inputs: &[&Tensor], make_op: impl FnOnce() -> Op) -> Tensor {
    if should_record(inputs) {
        TAPE.with(|t| {
            let mut tape = t.borrow_mut();
            let id = NodeId {
                index: tape.nodes.len() as u32,
                generation: tape.generation,
            };
            let op = make_op();
            if tape.anomaly.is_none() && is_anomaly_enabled() {
                if let Some(kind) = non_finite(&out.data()) {
                    tape.anomaly = Some(format!(
                        "the output of `{}` (op {} of the tape, shape {:?}) holds {kind}",
                        op.name(),
                        id.index,
                        out.shape()
                    ));
                }
            }
            tape.nodes.push(op);
            out.0.node.set(Some(id));
        });
    }
    out
}

/// Where a record sends an input's gradient, for an input whose data its backward does
/// not read: an add's operands, a GELU's input once its derivative is saved, a ReLU's
/// input (its derivative reads the output), a reshape's, a sum's, a pooling's, a loss's.
///
/// A non-leaf is kept as its node id and shape only, not as the tensor: holding the
/// tensor would hold its buffer until the whole record is released, and in a network
/// those buffers (a feed-forward layer's pre-activation, a residual branch's output)
/// would raise the step's peak memory for nothing. PyTorch's autograd likewise saves
/// only what each backward formula reads. A leaf keeps the tensor, whose `.grad`
/// receives the gradient.
pub(crate) enum GradTarget {
    /// A tensor made by a recorded op: its gradient goes to that op's slot.
    Node { id: NodeId, shape: Shape },
    /// A leaf or a constant.
    Tensor(Tensor),
}

impl GradTarget {
    /// The target for `t`.
    pub(crate) fn of(t: &Tensor) -> GradTarget {
        match t.0.node.get() {
            Some(id) => GradTarget::Node {
                id,
                shape: t.0.shape.clone(),
            },
            None => GradTarget::Tensor(t.clone()),
        }
    }

    /// The input's shape.
    pub(crate) fn shape(&self) -> &[usize] {
        match self {
            GradTarget::Node { shape, .. } => shape,
            GradTarget::Tensor(t) => t.shape(),
        }
    }

    /// The input's element count.
    pub(crate) fn numel(&self) -> usize {
        self.shape().iter().product()
    }

    /// Whether the input wants a gradient (a non-leaf always does).
    pub(crate) fn requires_grad(&self) -> bool {
        match self {
            GradTarget::Node { .. } => true,
            GradTarget::Tensor(t) => t.requires_grad(),
        }
    }
}

/// Gradients flowing backward, one slot per node of the walked record.
pub(crate) struct Grads {
    slots: Vec<Option<Vec<f32>>>,
    generation: u32,
    stale: bool,
    /// Anomaly mode: check each gradient as it arrives.
    check: bool,
    /// The first gradient that was not finite: the input's shape and the kind of value.
    anomaly: Option<(Vec<usize>, &'static str)>,
}

impl Grads {
    /// Whether a gradient for `t` is wanted: skip computing it for constants.
    pub(crate) fn wants(&self, t: &Tensor) -> bool {
        t.requires_grad()
    }

    /// Adds a gradient (same length as `t`) into `t`'s slot, or into its `.grad` when
    /// `t` is a leaf that requires grad; a constant's gradient is recycled.
    pub(crate) fn add(&mut self, t: &Tensor, g: Vec<f32>) {
        self.add_at(t.0.node.get(), t.shape(), Some(t), g);
    }

    /// [`Grads::add`] for an input kept as a [`GradTarget`].
    pub(crate) fn add_to(&mut self, target: &GradTarget, g: Vec<f32>) {
        match target {
            GradTarget::Node { id, shape } => self.add_at(Some(*id), shape, None, g),
            GradTarget::Tensor(t) => self.add(t, g),
        }
    }

    /// The one body of both: a node's slot, else the leaf's `.grad`, else the pool.
    fn add_at(
        &mut self,
        node: Option<NodeId>,
        shape: &[usize],
        leaf: Option<&Tensor>,
        g: Vec<f32>,
    ) {
        debug_assert_eq!(g.len(), shape.iter().product::<usize>());
        if self.check && self.anomaly.is_none() {
            if let Some(kind) = non_finite(&g) {
                self.anomaly = Some((shape.to_vec(), kind));
            }
        }
        match (node, leaf) {
            (Some(id), _) if id.generation == self.generation => {
                let slot = &mut self.slots[id.index as usize];
                match slot {
                    None => *slot = Some(g),
                    Some(acc) => {
                        add_into(acc, &g);
                        pool::give(g);
                    }
                }
            }
            (Some(_), _) => {
                self.stale = true;
                pool::give(g);
            }
            (None, Some(t)) if t.0.requires_grad.get() => t.accumulate_grad(g),
            (None, _) => pool::give(g),
        }
    }
}

/// Elements per piece when a gradient sum is split across threads.
const ADD_PIECE: usize = 1 << 14;

/// `acc[i] += g[i]`: a gradient arriving at a tensor that already has one (a residual
/// stream's, say). Vectorised with AVX2 where the CPU has it and split across threads
/// for large gradients; each element is one addition, so neither changes a bit.
pub(crate) fn add_into(acc: &mut [f32], g: &[f32]) {
    let n = acc.len().min(g.len());
    for_each_piece(&mut acc[..n], ADD_PIECE, n, |i, part| {
        let src = &g[i * ADD_PIECE..][..part.len()];
        with_avx2_fma(|| {
            for (a, &b) in part.iter_mut().zip(src) {
                *a += b;
            }
        })
    });
}

/// Reverse mode from `root`, seeded with `seed` (same length as `root`).
pub(crate) fn backward(root: &Tensor, seed: Vec<f32>) -> Result<()> {
    let id = match root.0.node.get() {
        None if root.0.requires_grad.get() => {
            root.accumulate_grad(seed);
            return Ok(());
        }
        None => {
            return Err(TensorError::Backward(
                "the tensor does not require grad and has no recorded history \
                 (was it computed inside no_grad, or from inputs that do not require grad?)"
                    .into(),
            ))
        }
        Some(id) => id,
    };
    let (nodes, generation, forward_anomaly) = TAPE.with(|t| {
        let mut tape = t.borrow_mut();
        let generation = tape.generation;
        if id.generation != generation || id.index as usize >= tape.nodes.len() {
            return Err(TensorError::Backward(
                if tape.cleared.contains(&id.generation) {
                    "the graph's record was released by clear_tape() before this backward; \
                 run the forward pass again"
                        .into()
                } else {
                    "trying to backward through the graph a second time: its record was released \
                 by an earlier backward; run the forward pass again"
                        .into()
                },
            ));
        }
        tape.generation = generation.wrapping_add(1);
        let anomaly = tape.anomaly.take();
        Ok((std::mem::take(&mut tape.nodes), generation, anomaly))
    })?;
    let mut nodes = nodes;

    let check = is_anomaly_enabled();
    let last = id.index as usize;
    // The slot list of the previous backward, so a steady-state step allocates none.
    let mut slots = SPARE_SLOTS.with(Cell::take);
    slots.resize_with(last + 1, || None);
    let mut grads = Grads {
        slots,
        generation,
        stale: false,
        check,
        anomaly: None,
    };
    let mut anomaly = match forward_anomaly {
        Some(found) if check => Some(found),
        _ => None,
    };
    if check && anomaly.is_none() {
        if let Some(kind) = non_finite(&seed) {
            anomaly = Some(format!(
                "the output gradient given to backward holds {kind}"
            ));
        }
    }
    grads.slots[last] = Some(seed);
    if anomaly.is_none() {
        // Backward rules may call tensor ops; they must not record.
        let _guard = no_grad_guard();
        // Ops recorded after the root take no part; their saved buffers go back first.
        nodes.truncate(last + 1);
        // Each record is dropped as soon as its backward has run, as PyTorch frees a
        // node's saved tensors: its buffers go back to the pool while the walk goes on,
        // so the gradients made next reuse memory that is still in cache.
        while let Some(op) = nodes.pop() {
            let index = nodes.len();
            let Some(mut g) = grads.slots[index].take() else {
                continue;
            };
            match &op {
                // These take g itself (left empty here): an add hands it on without a
                // copy, a unary op with a saved derivative scales it in place.
                Op::Unary(r) => r.backward(std::mem::take(&mut g), &mut grads),
                Op::Binary(r) => r.backward(std::mem::take(&mut g), &mut grads),
                Op::Linalg(r) => r.backward(&g, &mut grads),
                Op::Reduce(r) => r.backward(&g, &mut grads),
                Op::Movement(r) => r.backward(&g, &mut grads),
                Op::Custom(r) => r.backward(&g, &mut grads),
                Op::Layout(r) => r.backward(&g, &mut grads),
                Op::Mask(r) => r.backward(&g, &mut grads),
                Op::Attention(r) => r.backward(&g, &mut grads),
                Op::QkvAttention(r) => r.backward(&g, &mut grads),
                Op::Conv(r) => r.backward(&g, &mut grads),
                Op::Pool(r) => r.backward(&g, &mut grads),
                Op::BatchNorm(r) => r.backward(&g, &mut grads),
                Op::LayerNorm(r) => r.backward(&g, &mut grads),
                Op::Loss(r) => r.backward(&g, &mut grads),
            }
            pool::give(g);
            if let Some((shape, kind)) = grads.anomaly.take() {
                // Stop at the first bad gradient, as PyTorch's anomaly mode raises there.
                anomaly = Some(format!(
                    "the backward of `{}` (op {index} of the tape) computed a gradient \
                     holding {kind} for its input of shape {shape:?}",
                    op.name()
                ));
                break;
            }
        }
    }
    let stale = grads.stale;
    let mut slots = grads.slots;
    // Gradients left over (a stop at an anomaly) go back to the pool.
    slots.drain(..).flatten().for_each(pool::give);
    SPARE_SLOTS.with(|s| s.set(slots));
    // Dropping the record hands its saved buffers back to the pool; the empty arena
    // goes back to the tape so its capacity is reused by the next step.
    nodes.clear();
    TAPE.with(|t| {
        let mut tape = t.borrow_mut();
        if tape.nodes.is_empty() {
            tape.nodes = nodes;
        }
    });
    if let Some(found) = anomaly {
        return Err(TensorError::Backward(format!("anomaly detected: {found}")));
    }
    if stale {
        return Err(TensorError::Backward(
            "part of the graph runs through a tensor whose record was released by an earlier \
             backward or by clear_tape(); gradients that reached it were dropped"
                .into(),
        ));
    }
    Ok(())
}
