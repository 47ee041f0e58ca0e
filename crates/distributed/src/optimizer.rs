//! The data-parallel optimizer: any optimizer, whose `step` first averages the gradients
//! over all ranks (Horovod's `DistributedOptimizer`; PyTorch's DDP does the same work in
//! backward hooks).

use std::rc::Rc;
use std::time::{Duration, Instant};

use tapegrad_autograd::{no_grad, Tensor};
use tapegrad_optim::{OptimError, Optimizer, OptimizerState};

use crate::bucket::{flatten_grads, unflatten_grads, BucketPlan, DEFAULT_BUCKET_ELEMENTS};
use crate::comm::Communicator;

/// How gradients are combined over ranks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// Each rank's gradient (of its mean loss over its local batch) is summed over ranks
    /// by a bucketed all-reduce and divided by the number of ranks: with equal local
    /// batches, the gradient of the mean loss over the global batch. Every rank gets the
    /// same bits, but the bits depend on the number of ranks (the sums are grouped
    /// differently), so N-rank and one-process runs agree to rounding, not to the bit.
    Average,
    /// The global batch is cut into `virtual_shards` micro-batches whose gradients are
    /// computed separately, gathered on every rank and summed in one fixed order: the
    /// result is bit-identical for every number of ranks that divides `virtual_shards`
    /// (1, 2, 3, 4, 6 and 12 for 12 shards), one process included. It costs
    /// `virtual_shards` backward passes of smaller batches and an all-gather of that
    /// many gradient copies; see [`DistributedOptimizer::accumulate_micro_batch`].
    Ordered {
        /// The number of micro-batches per global batch; a multiple of the rank count.
        virtual_shards: usize,
    },
}

/// Wraps an optimizer so that [`Optimizer::step`] averages gradients over the ranks of
/// `comm` before updating. Everything else (learning rate, state for checkpoints)
/// delegates to the wrapped optimizer, whose state stays identical on every rank.
///
/// ```
/// use tapegrad_autograd::Tensor;
/// use tapegrad_distributed::{DistributedOptimizer, SingleProcess};
/// use tapegrad_optim::{Optimizer, Sgd, SgdConfig};
///
/// let w = Tensor::from_vec(vec![1.0, -2.0], &[2]).unwrap().with_requires_grad(true);
/// let sgd = Sgd::new(vec![w.clone()], SgdConfig { lr: 0.1, ..Default::default() }).unwrap();
/// let mut opt = DistributedOptimizer::new(Box::new(sgd), SingleProcess);
/// opt.zero_grad();
/// (&w * &w).sum().backward();
/// opt.step();
/// assert_eq!(w.to_vec(), vec![0.8, -1.6]);
/// ```
pub struct DistributedOptimizer<O: Optimizer + ?Sized = dyn Optimizer> {
    inner: Box<O>,
    comm: Rc<dyn Communicator>,
    mode: Reduction,
    plan: BucketPlan,
    send: Vec<f32>,
    recv: Vec<f32>,
    /// Ordered mode: the micro-batch gradients stashed so far, each `slot_len` long.
    slots: Vec<f32>,
    stashed: usize,
    synchronized: bool,
    comm_time: Duration,
}

impl<O: Optimizer + ?Sized> DistributedOptimizer<O> {
    /// Averages over `comm` in buckets of PyTorch's default 25 MiB.
    pub fn new(inner: Box<O>, comm: impl Communicator + 'static) -> Self {
        Self::with_bucket_elements(inner, comm, DEFAULT_BUCKET_ELEMENTS)
    }

    /// Averages over `comm` in buckets of at most `cap` f32 elements.
    pub fn with_bucket_elements(
        inner: Box<O>,
        comm: impl Communicator + 'static,
        cap: usize,
    ) -> Self {
        let plan = BucketPlan::for_params(inner.params(), cap.max(1));
        let n = plan.max_len() + inner.params().len();
        DistributedOptimizer {
            inner,
            comm: Rc::new(comm),
            mode: Reduction::Average,
            plan,
            send: vec![0.0; n],
            recv: vec![0.0; n],
            slots: Vec::new(),
            stashed: 0,
            synchronized: false,
            comm_time: Duration::ZERO,
        }
    }

    /// Switches to [`Reduction::Ordered`] with `virtual_shards` micro-batches per global
    /// batch. Fails unless the number of ranks divides it.
    pub fn ordered(mut self, virtual_shards: usize) -> Result<Self, OptimError> {
        let size = self.comm.size();
        if virtual_shards == 0 || virtual_shards % size != 0 {
            return Err(OptimError::InvalidHyperParameter(format!(
                "ordered reduction needs a number of virtual shards that is a positive \
                 multiple of the {size} ranks, got {virtual_shards}"
            )));
        }
        self.mode = Reduction::Ordered { virtual_shards };
        Ok(self)
    }

    /// The reduction in use.
    pub fn reduction(&self) -> Reduction {
        self.mode
    }

    /// The wrapped optimizer.
    pub fn inner(&self) -> &O {
        &self.inner
    }

    /// The wrapped optimizer, mutably.
    pub fn inner_mut(&mut self) -> &mut O {
        &mut self.inner
    }

    /// The communicator.
    pub fn comm(&self) -> &dyn Communicator {
        &*self.comm
    }

    /// The bucket layout used by [`Reduction::Average`].
    pub fn plan(&self) -> &BucketPlan {
        &self.plan
    }

    /// Time spent in collectives (and copying to and from them) since construction.
    pub fn comm_time(&self) -> Duration {
        self.comm_time
    }

    /// In [`Reduction::Ordered`] mode, how many micro-batches each rank computes per step.
    pub fn micro_batches_per_rank(&self) -> usize {
        match self.mode {
            Reduction::Average => 1,
            Reduction::Ordered { virtual_shards } => virtual_shards / self.comm.size(),
        }
    }

    /// Ordered mode: keeps the gradients of the micro-batch just back-propagated and
    /// clears them for the next. Call it after each local micro-batch's `backward` (the
    /// last one may be left to [`Optimizer::step`]); micro-batch `m` of rank `r` is
    /// virtual shard `m·N + r` (see [`micro_batch_rows`]).
    pub fn accumulate_micro_batch(&mut self) {
        let k = self.micro_batches_per_rank();
        assert!(
            self.stashed < k,
            "DistributedOptimizer: {} micro-batches accumulated, but each rank computes {k} per step",
            self.stashed + 1
        );
        let slot_len = self.slot_len();
        if self.slots.len() != k * slot_len {
            self.slots = vec![0.0; k * slot_len];
        }
        let start = self.stashed * slot_len;
        let params = self.inner.params();
        let (values, flags) =
            self.slots[start..start + slot_len].split_at_mut(slot_len - params.len());
        let mut offset = 0;
        for (p, flag) in params.iter().zip(flags) {
            let n = p.numel();
            match p.grad_ref() {
                Some(g) => {
                    values[offset..offset + n].copy_from_slice(&g);
                    *flag = 1.0;
                }
                None => {
                    values[offset..offset + n].fill(0.0);
                    *flag = 0.0;
                }
            }
            offset += n;
        }
        self.stashed += 1;
        self.inner.zero_grad();
    }

    /// Averages the gradients over all ranks now, so that they can be inspected or
    /// clipped before [`Optimizer::step`], which then does not average them again
    /// (Horovod's `synchronize`).
    pub fn synchronize(&mut self) {
        let start = Instant::now();
        no_grad(|| match self.mode {
            Reduction::Average => self.average(),
            Reduction::Ordered { virtual_shards } => self.ordered_sum(virtual_shards),
        });
        self.comm_time += start.elapsed();
        self.synchronized = true;
    }

    fn slot_len(&self) -> usize {
        let params = self.inner.params();
        params.iter().map(Tensor::numel).sum::<usize>() + params.len()
    }

    /// Bucketed all-reduce. Whether each parameter has a gradient rides along in the
    /// first bucket (one flag per parameter), so that a parameter no rank used keeps
    /// `None` (and the wrapped optimizer skips it, as it would in one process), while
    /// one used on some ranks only is averaged with zeros from the others.
    fn average(&mut self) {
        let params = self.inner.params();
        let size = self.comm.size() as f32;
        let mut counts = vec![0.0f32; params.len()];
        for (b, bucket) in self.plan.buckets.iter().enumerate() {
            let present = flatten_grads(params, bucket, &mut self.send[..bucket.len]);
            let mut len = bucket.len;
            if b == 0 {
                let flags = &mut self.send[len..len + params.len()];
                flags.fill(0.0);
                for (&i, &p) in bucket.params.iter().zip(&present) {
                    flags[i] = f32::from(u8::from(p));
                }
                for bucket in &self.plan.buckets[1..] {
                    for &i in &bucket.params {
                        flags[i] = f32::from(u8::from(params[i].grad_ref().is_some()));
                    }
                }
                len += params.len();
            }
            self.comm
                .all_reduce_sum(&self.send[..len], &mut self.recv[..len]);
            if b == 0 {
                counts.copy_from_slice(&self.recv[bucket.len..len]);
            }
            unflatten_grads(params, bucket, &self.recv[..bucket.len], size, |i| {
                counts[i] == 0.0
            });
        }
    }

    /// All-gathers every rank's micro-batch gradients and sums them in virtual-shard
    /// order `0, 1, ..., V−1`, the same sequence of additions on any number of ranks.
    fn ordered_sum(&mut self, virtual_shards: usize) {
        let k = self.micro_batches_per_rank();
        if self.stashed < k {
            self.accumulate_micro_batch();
        }
        assert_eq!(
            self.stashed, k,
            "DistributedOptimizer: ordered reduction needs {k} micro-batches per rank per step, got {}",
            self.stashed
        );
        let slot_len = self.slot_len();
        let size = self.comm.size();
        let mut gathered = vec![0.0f32; virtual_shards * slot_len];
        self.comm.all_gather(&self.slots, &mut gathered);
        let mut sum = vec![0.0f32; slot_len];
        for v in 0..virtual_shards {
            // Virtual shard v = m·N + r is rank r's micro-batch m.
            let (r, m) = (v % size, v / size);
            let slot = &gathered[(r * k + m) * slot_len..][..slot_len];
            for (s, &x) in sum.iter_mut().zip(slot) {
                *s += x;
            }
        }
        let params = self.inner.params();
        let (values, counts) = sum.split_at(slot_len - params.len());
        let divisor = virtual_shards as f32;
        let mut offset = 0;
        for (p, &count) in params.iter().zip(counts) {
            let n = p.numel();
            if count > 0.0 {
                let averaged: Vec<f32> = values[offset..offset + n]
                    .iter()
                    .map(|&v| v / divisor)
                    .collect();
                let grad = Tensor::from_vec(averaged, p.shape()).expect("the parameter's shape");
                p.set_grad(Some(&grad)).expect("the parameter's shape");
            } else {
                p.zero_grad();
            }
            offset += n;
        }
        self.stashed = 0;
    }
}

/// The rows of a local batch of `len` samples that form each of its `k` micro-batches
/// in [`Reduction::Ordered`] mode: micro-batch `m` takes rows `m, m + k, m + 2k, ...`.
/// With a [`tapegrad_data::DistributedSampler`] and local batches of `B / N`, that makes
/// virtual shard `v` the same samples in the same order on any number of ranks.
pub fn micro_batch_rows(len: usize, k: usize) -> Vec<Vec<usize>> {
    (0..k)
        .map(|m| (m..len).step_by(k.max(1)).collect())
        .collect()
}

impl<O: Optimizer + ?Sized> Optimizer for DistributedOptimizer<O> {
    fn kind(&self) -> &'static str {
        self.inner.kind()
    }

    fn params(&self) -> &[Tensor] {
        self.inner.params()
    }

    /// Clears the gradients, and in ordered mode any stashed micro-batches.
    fn zero_grad(&mut self) {
        self.stashed = 0;
        self.inner.zero_grad();
    }

    /// Averages the gradients over all ranks (unless [`DistributedOptimizer::synchronize`]
    /// already did), then steps the wrapped optimizer. A collective: every rank must call it.
    fn step(&mut self) {
        if !self.synchronized {
            self.synchronize();
        }
        self.synchronized = false;
        self.inner.step();
    }

    fn num_groups(&self) -> usize {
        self.inner.num_groups()
    }

    fn group_params(&self, group: usize) -> &[Tensor] {
        self.inner.group_params(group)
    }

    fn group_lr(&self, group: usize) -> f64 {
        self.inner.group_lr(group)
    }

    fn set_group_lr(&mut self, group: usize, lr: f64) {
        self.inner.set_group_lr(group, lr);
    }

    fn group_initial_lr(&self, group: usize) -> Option<f64> {
        self.inner.group_initial_lr(group)
    }

    fn set_group_initial_lr(&mut self, group: usize, lr: f64) {
        self.inner.set_group_initial_lr(group, lr);
    }

    fn group_momentum(&self, group: usize) -> Option<f64> {
        self.inner.group_momentum(group)
    }

    fn set_group_momentum(&mut self, group: usize, momentum: f64) -> Result<(), OptimError> {
        self.inner.set_group_momentum(group, momentum)
    }

    fn state(&self) -> OptimizerState {
        self.inner.state()
    }

    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError> {
        self.inner.load_state(state)
    }
}
