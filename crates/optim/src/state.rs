//! Saved optimizer state and the bookkeeping all optimizers share: the parameter list,
//! per-parameter step counts, and the export / validated import of named buffers.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tapegrad_autograd::{no_grad, Tensor};

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
    /// The hyper-parameters, including the current learning rate.
    pub config: OptimizerConfig,
    /// Per parameter, the number of updates it has received (PyTorch's `state[p]["step"]`).
    pub steps: Vec<u64>,
    /// Per-parameter buffers by name (`momentum_buffer`, `exp_avg`, `exp_avg_sq`, ...).
    pub buffers: BTreeMap<String, Buffer>,
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

/// The error for a state whose configuration is for another optimizer kind.
pub(crate) fn kind_mismatch(expected: &str, state: &OptimizerState) -> OptimError {
    OptimError::KindMismatch {
        expected: expected.to_string(),
        found: state.config.kind().to_string(),
    }
}

/// The parameters an optimizer updates, with how many updates each has had.
pub(crate) struct Params {
    pub(crate) tensors: Vec<Tensor>,
    pub(crate) steps: Vec<u64>,
}

impl Params {
    /// Takes the parameter handles; an empty list is an error, as in PyTorch.
    pub(crate) fn new(tensors: Vec<Tensor>) -> Result<Params, OptimError> {
        if tensors.is_empty() {
            return Err(OptimError::EmptyParameters);
        }
        let steps = vec![0; tensors.len()];
        Ok(Params { tensors, steps })
    }

    /// A buffer with no entry created yet, one slot per parameter.
    pub(crate) fn empty_buffer(&self) -> Buffer {
        vec![None; self.tensors.len()]
    }

    /// Counts a step for every parameter that has a gradient and calls
    /// `update(index, step, data, grad)` on it; parameters without a gradient are
    /// skipped and keep their state, as in PyTorch. Recording is off throughout.
    pub(crate) fn update(&mut self, mut update: impl FnMut(usize, u64, &mut [f32], &[f32])) {
        no_grad(|| {
            // The update rules are written with `mul_add`; see `with_fma` for why.
            crate::kernels::with_fma(|| {
                for (i, p) in self.tensors.iter().enumerate() {
                    if let Some((mut data, grad)) = p.data_and_grad_mut() {
                        self.steps[i] += 1;
                        update(i, self.steps[i], &mut data, &grad);
                    }
                }
            })
        });
    }

    /// Packs the step counts and the named buffers into a saved state.
    pub(crate) fn export(
        &self,
        kind: &str,
        config: OptimizerConfig,
        buffers: &[(&str, &Buffer)],
    ) -> OptimizerState {
        OptimizerState {
            kind: kind.to_string(),
            config,
            steps: self.steps.clone(),
            buffers: buffers
                .iter()
                .map(|(name, buffer)| (name.to_string(), (*buffer).clone()))
                .collect(),
        }
    }

    /// Checks that `state` fits these parameters: same kind, same number of parameters,
    /// exactly the buffers in `names`, each present exactly for the parameters that have
    /// taken a step and as long as its parameter. Then adopts its step counts.
    pub(crate) fn load(
        &mut self,
        kind: &str,
        state: &OptimizerState,
        names: &[&str],
    ) -> Result<(), OptimError> {
        if state.kind != kind || state.config.kind() != kind {
            return Err(kind_mismatch(kind, state));
        }
        let count = self.tensors.len();
        if state.steps.len() != count {
            return Err(OptimError::ParamCountMismatch {
                expected: count,
                found: state.steps.len(),
            });
        }
        if let Some(extra) = state.buffers.keys().find(|k| !names.contains(&k.as_str())) {
            return Err(buffer_error(
                extra,
                "not used by this optimizer's configuration",
            ));
        }
        for name in names {
            let buffer = state
                .buffers
                .get(*name)
                .ok_or_else(|| buffer_error(name, "missing"))?;
            self.check_buffer(name, buffer, &state.steps)?;
        }
        self.steps.clone_from(&state.steps);
        Ok(())
    }

    /// A copy of the named buffer of a state already checked by [`Params::load`]; a
    /// buffer the state's configuration does not use comes back empty.
    pub(crate) fn take(&self, state: &OptimizerState, name: &str) -> Buffer {
        match state.buffers.get(name) {
            Some(buffer) => buffer.clone(),
            None => self.empty_buffer(),
        }
    }

    fn check_buffer(&self, name: &str, buffer: &Buffer, steps: &[u64]) -> Result<(), OptimError> {
        if buffer.len() != self.tensors.len() {
            let reason = format!(
                "has {} entries for {} parameters",
                buffer.len(),
                self.tensors.len()
            );
            return Err(buffer_error(name, &reason));
        }
        for (i, ((entry, p), &step)) in buffer.iter().zip(&self.tensors).zip(steps).enumerate() {
            match entry {
                Some(values) if values.len() != p.numel() => {
                    return Err(OptimError::BufferLength {
                        buffer: name.to_string(),
                        param: i,
                        expected: p.numel(),
                        found: values.len(),
                    })
                }
                // Buffers are created by a parameter's first step and only then.
                Some(_) if step == 0 => {
                    let reason = format!("parameter {i} has taken no step but has an entry");
                    return Err(buffer_error(name, &reason));
                }
                None if step > 0 => {
                    let reason = format!("parameter {i} has taken {step} steps but no entry");
                    return Err(buffer_error(name, &reason));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

fn buffer_error(buffer: &str, reason: &str) -> OptimError {
    OptimError::BufferSet {
        buffer: buffer.to_string(),
        reason: reason.to_string(),
    }
}
