//! `Sequential`: layers applied in order, with parameters named by position
//! (`0.weight`, `2.bias`), as `torch.nn.Sequential`.

use std::fmt;
use std::panic::Location;

use tapegrad_autograd::{or_panic, Result, Tensor, TensorError};

use crate::Module;

/// A chain of modules.
#[derive(Default)]
pub struct Sequential {
    layers: Vec<Box<dyn Module>>,
}

impl Sequential {
    /// An empty chain (the identity).
    pub fn new() -> Sequential {
        Sequential::default()
    }

    /// Appends a layer, builder style: `Sequential::new().add(l1).add(Relu).add(l2)`.
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Module + 'static) -> Sequential {
        self.layers.push(Box::new(layer));
        self
    }

    /// Appends a layer in place.
    pub fn push(&mut self, layer: impl Module + 'static) {
        self.layers.push(Box::new(layer));
    }

    /// Number of layers.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// Whether the chain has no layers.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

/// Wraps a layer's error with the layer's position and kind and the caller's line; an
/// error from a nested container keeps the outer line and joins the two positions.
fn in_layer(
    index: usize,
    layer: &dyn Module,
    location: &'static Location<'static>,
    e: TensorError,
) -> TensorError {
    match e {
        TensorError::InModule { module, source, .. } => TensorError::InModule {
            module: format!("Sequential[{index}] → {module}"),
            location,
            source,
        },
        other => TensorError::InModule {
            module: format!("Sequential[{index}] ({})", layer.describe()),
            location,
            source: Box::new(other),
        },
    }
}

impl Module for Sequential {
    #[track_caller]
    fn forward(&self, input: &Tensor) -> Tensor {
        or_panic(self.try_forward(input))
    }

    #[track_caller]
    fn try_forward(&self, input: &Tensor) -> Result<Tensor> {
        let location = Location::caller();
        let mut x = input.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer
                .try_forward(&x)
                .map_err(|e| in_layer(i, layer.as_ref(), location, e))?;
        }
        Ok(x)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, layer)| {
                layer
                    .named_parameters()
                    .into_iter()
                    .map(move |(name, p)| (format!("{i}.{name}"), p))
            })
            .collect()
    }

    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(i, layer)| {
                layer
                    .named_buffers()
                    .into_iter()
                    .map(move |(name, b)| (format!("{i}.{name}"), b))
            })
            .collect()
    }

    fn set_training(&mut self, training: bool) {
        for layer in &mut self.layers {
            layer.set_training(training);
        }
    }

    fn describe(&self) -> String {
        format!("Sequential ({} layers)", self.layers.len())
    }

    fn children(&self) -> Vec<(String, &dyn Module)> {
        self.layers
            .iter()
            .enumerate()
            .map(|(i, layer)| (i.to_string(), layer.as_ref()))
            .collect()
    }
}

/// The model summary: each layer, its output width and parameter count, and the total.
impl fmt::Display for Sequential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        crate::summary(self).fmt(f)
    }
}
