//! Parameter groups: [`ParamGroup`], what the shared bookkeeping needs of each
//! optimizer's config struct, and the group accessors every optimizer implements alike.

use tapegrad_autograd::Tensor;

use crate::{OptimError, OptimizerConfig};

/// A parameter group: some parameters and the hyper-parameters they are updated with
/// (PyTorch's `{"params": [...], "lr": ..., "weight_decay": ...}` dict).
///
/// `C` is the optimizer's config struct. PyTorch's "defaults plus per-group overrides"
/// is Rust's struct update syntax:
///
/// ```
/// use tapegrad_autograd::Tensor;
/// use tapegrad_optim::{AdamW, AdamWConfig, Optimizer, ParamGroup};
///
/// let w = Tensor::zeros(&[4, 3]).with_requires_grad(true);
/// let b = Tensor::zeros(&[4]).with_requires_grad(true);
/// let base = AdamWConfig { lr: 3e-4, weight_decay: 0.1, ..Default::default() };
/// let opt = AdamW::with_groups(vec![
///     ParamGroup::new(vec![w], base),
///     ParamGroup::new(vec![b], AdamWConfig { weight_decay: 0.0, ..base }),
/// ])
/// .unwrap();
/// assert_eq!(opt.num_groups(), 2);
/// ```
#[derive(Clone, Debug)]
pub struct ParamGroup<C> {
    /// The group's parameters.
    pub params: Vec<Tensor>,
    /// The group's hyper-parameters.
    pub config: C,
}

impl<C> ParamGroup<C> {
    /// A group of `params` updated with `config`.
    pub fn new(params: Vec<Tensor>, config: C) -> ParamGroup<C> {
        ParamGroup { params, config }
    }
}

/// What the shared bookkeeping needs to know of an optimizer's config struct.
pub(crate) trait GroupConfig: Copy {
    /// The optimizer kind, as in [`crate::OptimizerState::kind`].
    const KIND: &'static str;
    fn lr(&self) -> f64;
    fn set_lr(&mut self, lr: f64);
    /// The momentum a one-cycle schedule cycles (SGD's and RMSprop's `momentum`, Adam's
    /// β₁), if this kind has one.
    fn momentum(&self) -> Option<f64> {
        None
    }
    /// Sets what [`GroupConfig::momentum`] reads; only called when that is `Some`.
    fn set_momentum(&mut self, _momentum: f64) {}
    /// The constructor's checks, with PyTorch's messages.
    fn validate(&self) -> Result<(), OptimError>;
    fn wrap(self) -> OptimizerConfig;
    fn unwrap(config: &OptimizerConfig) -> Option<Self>;
}

/// The [`crate::Optimizer`] methods every optimizer answers from its [`crate::state::Params`], given
/// the path of that field (`group_access!(params)`).
macro_rules! group_access {
    ($($field:ident).+) => {
        fn params(&self) -> &[Tensor] {
            &self.$($field).+.tensors
        }

        fn num_groups(&self) -> usize {
            self.$($field).+.num_groups()
        }

        fn group_params(&self, group: usize) -> &[Tensor] {
            self.$($field).+.group_params(group)
        }

        fn group_lr(&self, group: usize) -> f64 {
            self.$($field).+.group_lr(group)
        }

        fn set_group_lr(&mut self, group: usize, lr: f64) {
            self.$($field).+.set_group_lr(group, lr)
        }

        fn group_initial_lr(&self, group: usize) -> Option<f64> {
            self.$($field).+.group_initial_lr(group)
        }

        fn set_group_initial_lr(&mut self, group: usize, lr: f64) {
            self.$($field).+.set_group_initial_lr(group, lr)
        }

        fn group_momentum(&self, group: usize) -> Option<f64> {
            self.$($field).+.group_momentum(group)
        }

        fn set_group_momentum(&mut self, group: usize, momentum: f64) -> Result<(), OptimError> {
            self.$($field).+.set_group_momentum(group, momentum)
        }
    };
}
pub(crate) use group_access;
