//! Saved optimizer state and the bookkeeping all optimizers share: the grouped parameter
//! list, per-parameter step counts, and the export / validated import of named buffers.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use tapegrad_autograd::{no_grad, Tensor};

use crate::error::invalid;
use crate::group::{GroupConfig, ParamGroup};
use crate::{
    AdagradConfig, AdamConfig, AdamWConfig, GradientDescentConfig, OptimError, RMSpropConfig,
    SgdConfig,
};

/// One named per-parameter buffer: an entry per parameter, `None` until that parameter's
/// first update creates it (PyTorch's lazily created `state[p]`).
pub type Buffer = Vec<Option<Vec<f32>>>;

/// Everything needed to resume an optimizer: serialise it with serde (e.g. to JSON) next
/// to the model's weights and load it into a fresh optimizer over the same parameters.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct OptimizerState {
    /// The optimizer kind: "GradientDescent", "SGD", "Adam", "AdamW", "RMSprop" or "Adagrad".
    pub kind: String,
    /// The parameter groups in order: hyper-parameters (including the current learning
    /// rate) and how many parameters each holds. Parameters are numbered group by group.
    pub groups: Vec<GroupState>,
    /// Per parameter, the number of updates it has received (PyTorch's `state[p]["step"]`).
    pub steps: Vec<u64>,
    /// Per-parameter buffers by name (`momentum_buffer`, `exp_avg`, `exp_avg_sq`, ...).
    pub buffers: BTreeMap<String, Buffer>,
}

/// One parameter group in a saved [`OptimizerState`] (PyTorch's `param_groups[i]`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct GroupState {
    /// The group's hyper-parameters, including its current learning rate.
    pub config: OptimizerConfig,
    /// How many parameters the group holds.
    pub params: usize,
    /// The learning rate schedulers scale (PyTorch's `initial_lr`), once one has been built.
    pub initial_lr: Option<f64>,
}

/// The hyper-parameters of any optimizer, tagged with its kind.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum OptimizerConfig {
    /// [`crate::GradientDescent`]'s configuration.
    GradientDescent(GradientDescentConfig),
    /// [`crate::Sgd`]'s configuration.
    Sgd(SgdConfig),
    /// [`crate::Adam`]'s configuration.
    Adam(AdamConfig),
    /// [`crate::AdamW`]'s configuration.
    AdamW(AdamWConfig),
    /// [`crate::RMSprop`]'s configuration.
    RMSprop(RMSpropConfig),
    /// [`crate::Adagrad`]'s configuration.
    Adagrad(AdagradConfig),
}

impl OptimizerConfig {
    /// The kind name of the optimizer this configures, as in [`OptimizerState::kind`].
    pub fn kind(&self) -> &'static str {
        match self {
            OptimizerConfig::GradientDescent(_) => crate::gd::KIND,
            OptimizerConfig::Sgd(_) => crate::sgd::KIND,
            OptimizerConfig::Adam(_) => crate::adam::ADAM,
            OptimizerConfig::AdamW(_) => crate::adamw::KIND,
            OptimizerConfig::RMSprop(_) => crate::rmsprop::KIND,
            OptimizerConfig::Adagrad(_) => crate::adagrad::KIND,
        }
    }
}

/// A per-parameter buffer an optimizer kind may keep.
pub(crate) struct BufferSpec<C> {
    pub(crate) name: &'static str,
    /// Whether a group with this config creates the buffer at its parameters' first step.
    pub(crate) used: fn(&C) -> bool,
    /// Whether a parameter that has stepped may lack an entry: true for buffers the
    /// update creates whenever they are missing (so a group may switch them on mid-run,
    /// e.g. a one-cycle schedule giving SGD a momentum).
    pub(crate) lazy: bool,
}

/// The error for a state whose configuration is for another optimizer kind.
pub(crate) fn kind_mismatch(expected: &str, found: &str) -> OptimError {
    OptimError::KindMismatch {
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

/// The parameters an optimizer updates, in groups, with how many updates each has had.
pub(crate) struct Params<C> {
    /// All parameters, group after group.
    pub(crate) tensors: Vec<Tensor>,
    pub(crate) steps: Vec<u64>,
    /// Per group, its parameters' positions in `tensors`.
    ranges: Vec<Range<usize>>,
    /// Per group, its hyper-parameters.
    pub(crate) configs: Vec<C>,
    /// Per group, PyTorch's `initial_lr` (set by the first scheduler built on it).
    initial_lrs: Vec<Option<f64>>,
}

impl<C: GroupConfig> Params<C> {
    /// Takes the groups; no parameter at all, a bad hyper-parameter or a parameter given
    /// twice is an error.
    pub(crate) fn new(groups: Vec<ParamGroup<C>>) -> Result<Params<C>, OptimError> {
        let count = groups.len();
        let mut tensors = Vec::new();
        let mut ranges = Vec::with_capacity(count);
        let mut configs = Vec::with_capacity(count);
        for (g, group) in groups.into_iter().enumerate() {
            validate_group(&group.config, g, count)?;
            let start = tensors.len();
            tensors.extend(group.params);
            ranges.push(start..tensors.len());
            configs.push(group.config);
        }
        if tensors.is_empty() {
            return Err(OptimError::EmptyParameters);
        }
        let params = Params {
            steps: vec![0; tensors.len()],
            tensors,
            initial_lrs: vec![None; count],
            ranges,
            configs,
        };
        params.check_unique()?;
        Ok(params)
    }

    /// Fails on the first tensor handle given twice.
    fn check_unique(&self) -> Result<(), OptimError> {
        for (i, t) in self.tensors.iter().enumerate() {
            if let Some(j) = self.tensors[..i].iter().position(|u| u.same_storage(t)) {
                return Err(OptimError::DuplicateParameter {
                    first: self.locate(j),
                    second: self.locate(i),
                    shape: t.shape().to_vec(),
                });
            }
        }
        Ok(())
    }

    /// The group of parameter `i` and its position in that group.
    fn locate(&self, i: usize) -> (usize, usize) {
        let g = self
            .ranges
            .iter()
            .position(|r| r.contains(&i))
            .expect("every parameter is in a group");
        (g, i - self.ranges[g].start)
    }

    /// A buffer with no entry created yet, one slot per parameter.
    pub(crate) fn empty_buffer(&self) -> Buffer {
        vec![None; self.tensors.len()]
    }

    pub(crate) fn num_groups(&self) -> usize {
        self.ranges.len()
    }

    #[track_caller]
    fn check_group(&self, group: usize) {
        assert!(
            group < self.ranges.len(),
            "parameter group {group} does not exist: the optimizer has {}",
            self.ranges.len()
        );
    }

    #[track_caller]
    pub(crate) fn group_params(&self, group: usize) -> &[Tensor] {
        self.check_group(group);
        &self.tensors[self.ranges[group].clone()]
    }

    #[track_caller]
    pub(crate) fn group_lr(&self, group: usize) -> f64 {
        self.check_group(group);
        self.configs[group].lr()
    }

    #[track_caller]
    pub(crate) fn set_group_lr(&mut self, group: usize, lr: f64) {
        crate::error::or_panic_nonfinite_lr(lr);
        self.check_group(group);
        self.configs[group].set_lr(lr);
    }

    #[track_caller]
    pub(crate) fn group_initial_lr(&self, group: usize) -> Option<f64> {
        self.check_group(group);
        self.initial_lrs[group]
    }

    #[track_caller]
    pub(crate) fn set_group_initial_lr(&mut self, group: usize, lr: f64) {
        self.check_group(group);
        self.initial_lrs[group] = Some(lr);
    }

    #[track_caller]
    pub(crate) fn group_momentum(&self, group: usize) -> Option<f64> {
        self.check_group(group);
        self.configs[group].momentum()
    }

    /// Sets a group's momentum (β₁ for Adam-style optimizers) if the kind has one and the
    /// new configuration passes the constructor's checks; otherwise changes nothing.
    #[track_caller]
    pub(crate) fn set_group_momentum(
        &mut self,
        group: usize,
        momentum: f64,
    ) -> Result<(), OptimError> {
        self.check_group(group);
        let mut config = self.configs[group];
        if config.momentum().is_none() {
            return Err(invalid(format!("{} has no momentum to set", C::KIND)));
        }
        config.set_momentum(momentum);
        // Check the new momentum with the rest of the config, but not the lr, which
        // schedulers set unchecked and may take anywhere (a linear one-cycle ends below 0).
        let mut check = config;
        check.set_lr(0.0);
        validate_group(&check, group, self.ranges.len())?;
        self.configs[group] = config;
        Ok(())
    }

    /// Counts a step for every parameter that has a gradient and calls
    /// `update(index, group_config, step, data, grad)` on it; parameters without a
    /// gradient are skipped and keep their state, as in PyTorch. Recording is off
    /// throughout.
    pub(crate) fn update(&mut self, mut update: impl FnMut(usize, &C, u64, &mut [f32], &[f32])) {
        no_grad(|| {
            // The update rules are written with `mul_add`; see `with_fma` for why.
            crate::kernels::with_fma(|| {
                for (g, range) in self.ranges.iter().enumerate() {
                    let config = &self.configs[g];
                    for i in range.clone() {
                        if let Some((mut data, grad)) = self.tensors[i].data_and_grad_mut() {
                            self.steps[i] += 1;
                            update(i, config, self.steps[i], &mut data, &grad);
                        }
                    }
                }
            })
        });
    }

    /// Packs the groups, the step counts and the buffers into a saved state. `buffers`
    /// pairs with `specs`; a buffer is saved when a group uses it or it has an entry.
    pub(crate) fn export(&self, specs: &[BufferSpec<C>], buffers: &[&Buffer]) -> OptimizerState {
        let groups = self
            .ranges
            .iter()
            .zip(&self.configs)
            .zip(&self.initial_lrs)
            .map(|((range, config), &initial_lr)| GroupState {
                config: config.wrap(),
                params: range.len(),
                initial_lr,
            })
            .collect();
        let buffers = specs
            .iter()
            .zip(buffers)
            .filter(|(spec, buffer)| {
                self.configs.iter().any(spec.used) || buffer.iter().any(Option::is_some)
            })
            .map(|(spec, buffer)| (spec.name.to_string(), (*buffer).clone()))
            .collect();
        OptimizerState {
            kind: C::KIND.to_string(),
            groups,
            steps: self.steps.clone(),
            buffers,
        }
    }

    /// Checks that `state` fits these parameters (same kind, same groups of the same
    /// sizes, valid hyper-parameters, buffers of this kind that fit the parameters and
    /// their step counts), then adopts its groups and step counts. Changes nothing when
    /// it fails.
    pub(crate) fn load(
        &mut self,
        state: &OptimizerState,
        specs: &[BufferSpec<C>],
    ) -> Result<(), OptimError> {
        if state.kind != C::KIND {
            return Err(kind_mismatch(C::KIND, &state.kind));
        }
        let mut configs = Vec::with_capacity(state.groups.len());
        for group in &state.groups {
            configs.push(
                C::unwrap(&group.config)
                    .ok_or_else(|| kind_mismatch(C::KIND, group.config.kind()))?,
            );
        }
        let count = self.tensors.len();
        if state.steps.len() != count {
            return Err(OptimError::ParamCountMismatch {
                expected: count,
                found: state.steps.len(),
            });
        }
        if state.groups.len() != self.ranges.len() {
            return Err(OptimError::GroupCountMismatch {
                expected: self.ranges.len(),
                found: state.groups.len(),
            });
        }
        for (g, (range, group)) in self.ranges.iter().zip(&state.groups).enumerate() {
            if group.params != range.len() {
                return Err(OptimError::GroupSizeMismatch {
                    group: g,
                    expected: range.len(),
                    found: group.params,
                });
            }
            validate_group(&configs[g], g, self.ranges.len())?;
        }
        if let Some(extra) = state
            .buffers
            .keys()
            .find(|k| !specs.iter().any(|s| s.name == k.as_str()))
        {
            return Err(buffer_error(extra, "not kept by this kind of optimizer"));
        }
        for spec in specs {
            self.check_buffer(spec, state.buffers.get(spec.name), &state.steps, &configs)?;
        }
        self.steps.clone_from(&state.steps);
        self.configs = configs;
        self.initial_lrs = state.groups.iter().map(|g| g.initial_lr).collect();
        Ok(())
    }

    /// A copy of the named buffer of a state already checked by [`Params::load`]; a
    /// buffer the state does not hold comes back empty.
    pub(crate) fn take(&self, state: &OptimizerState, name: &str) -> Buffer {
        match state.buffers.get(name) {
            Some(buffer) => buffer.clone(),
            None => self.empty_buffer(),
        }
    }

    fn check_buffer(
        &self,
        spec: &BufferSpec<C>,
        buffer: Option<&Buffer>,
        steps: &[u64],
        configs: &[C],
    ) -> Result<(), OptimError> {
        let name = spec.name;
        if let Some(buffer) = buffer {
            if buffer.len() != self.tensors.len() {
                let reason = format!(
                    "has {} entries for {} parameters",
                    buffer.len(),
                    self.tensors.len()
                );
                return Err(buffer_error(name, &reason));
            }
        }
        for (g, range) in self.ranges.iter().enumerate() {
            let required = (spec.used)(&configs[g]) && !spec.lazy;
            for i in range.clone() {
                let entry = buffer.and_then(|b| b[i].as_ref());
                match (entry, steps[i]) {
                    (Some(values), _) if values.len() != self.tensors[i].numel() => {
                        return Err(OptimError::BufferLength {
                            buffer: name.to_string(),
                            param: i,
                            expected: self.tensors[i].numel(),
                            found: values.len(),
                        })
                    }
                    // Buffers are created by a parameter's first step and only then.
                    (Some(_), 0) => {
                        let reason = format!("parameter {i} has taken no step but has an entry");
                        return Err(buffer_error(name, &reason));
                    }
                    (None, step) if step > 0 && required => {
                        let reason = if buffer.is_some() {
                            format!("parameter {i} has taken {step} steps but no entry")
                        } else {
                            format!("missing, and parameter {i} has taken {step} steps")
                        };
                        return Err(buffer_error(name, &reason));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// A group's hyper-parameter check; with several groups the message names the group.
fn validate_group<C: GroupConfig>(
    config: &C,
    group: usize,
    groups: usize,
) -> Result<(), OptimError> {
    config.validate().map_err(|e| match e {
        OptimError::InvalidHyperParameter(msg) if groups > 1 => {
            invalid(format!("{msg} (parameter group {group})"))
        }
        other => other,
    })
}

fn buffer_error(buffer: &str, reason: &str) -> OptimError {
    OptimError::BufferSet {
        buffer: buffer.to_string(),
        reason: reason.to_string(),
    }
}
