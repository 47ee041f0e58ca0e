//! What `#[derive(Module)]` calls for each field of a model struct: a layer, a
//! `Tensor` parameter, an `Option` of either or a `Vec` of either (PyTorch's
//! `ModuleList`/`ParameterList`, named `field.0`, `field.1`, ...). The derive emits one
//! call per field and per method; the field's type picks the behaviour here, so the
//! derive never inspects types.

use tapegrad_autograd::Tensor;

use crate::Module;

/// A struct field that holds parameters or sub-modules. Implemented for every
/// [`Module`], for [`Tensor`] (a parameter), and for `Option` and `Vec` of those.
pub trait ModuleField {
    /// Appends the field's parameters, their names prefixed with `name.`.
    fn field_parameters(&self, name: &str, out: &mut Vec<(String, Tensor)>);

    /// Appends the field's buffers (BatchNorm's running statistics), prefixed the same way.
    fn field_buffers(&self, name: &str, out: &mut Vec<(String, Tensor)>);

    /// Passes train/eval mode down.
    fn field_set_training(&mut self, training: bool);

    /// Appends the field's sub-modules under their names.
    fn field_children<'a>(&'a self, name: &str, out: &mut Vec<(String, &'a dyn Module)>);
}

impl<M: Module> ModuleField for M {
    fn field_parameters(&self, name: &str, out: &mut Vec<(String, Tensor)>) {
        out.extend(
            self.named_parameters()
                .into_iter()
                .map(|(n, p)| (format!("{name}.{n}"), p)),
        );
    }

    fn field_buffers(&self, name: &str, out: &mut Vec<(String, Tensor)>) {
        out.extend(
            self.named_buffers()
                .into_iter()
                .map(|(n, b)| (format!("{name}.{n}"), b)),
        );
    }

    fn field_set_training(&mut self, training: bool) {
        self.set_training(training);
    }

    fn field_children<'a>(&'a self, name: &str, out: &mut Vec<(String, &'a dyn Module)>) {
        out.push((name.to_string(), self));
    }
}

/// A tensor field is a parameter under the field's name (PyTorch's `nn.Parameter`).
impl ModuleField for Tensor {
    fn field_parameters(&self, name: &str, out: &mut Vec<(String, Tensor)>) {
        out.push((name.to_string(), self.clone()));
    }

    fn field_buffers(&self, _name: &str, _out: &mut Vec<(String, Tensor)>) {}

    fn field_set_training(&mut self, _training: bool) {}

    fn field_children<'a>(&'a self, _name: &str, _out: &mut Vec<(String, &'a dyn Module)>) {}
}

/// An optional layer or parameter: present or absent, under the field's own name.
impl<F: ModuleField> ModuleField for Option<F> {
    fn field_parameters(&self, name: &str, out: &mut Vec<(String, Tensor)>) {
        if let Some(f) = self {
            f.field_parameters(name, out);
        }
    }

    fn field_buffers(&self, name: &str, out: &mut Vec<(String, Tensor)>) {
        if let Some(f) = self {
            f.field_buffers(name, out);
        }
    }

    fn field_set_training(&mut self, training: bool) {
        if let Some(f) = self {
            f.field_set_training(training);
        }
    }

    fn field_children<'a>(&'a self, name: &str, out: &mut Vec<(String, &'a dyn Module)>) {
        if let Some(f) = self {
            f.field_children(name, out);
        }
    }
}

/// A list of layers or parameters, numbered as PyTorch's `ModuleList`: `field.0`, `field.1`.
impl<F: ModuleField> ModuleField for Vec<F> {
    fn field_parameters(&self, name: &str, out: &mut Vec<(String, Tensor)>) {
        for (i, f) in self.iter().enumerate() {
            f.field_parameters(&format!("{name}.{i}"), out);
        }
    }

    fn field_buffers(&self, name: &str, out: &mut Vec<(String, Tensor)>) {
        for (i, f) in self.iter().enumerate() {
            f.field_buffers(&format!("{name}.{i}"), out);
        }
    }

    fn field_set_training(&mut self, training: bool) {
        for f in self {
            f.field_set_training(training);
        }
    }

    fn field_children<'a>(&'a self, name: &str, out: &mut Vec<(String, &'a dyn Module)>) {
        for (i, f) in self.iter().enumerate() {
            f.field_children(&format!("{name}.{i}"), out);
        }
    }
}

/// A boxed module (e.g. `Vec<Box<dyn Module>>`) is a module.
impl<M: Module + ?Sized> Module for Box<M> {
    #[track_caller]
    fn forward(&self, input: &Tensor) -> Tensor {
        (**self).forward(input)
    }

    #[track_caller]
    fn try_forward(&self, input: &Tensor) -> tapegrad_autograd::Result<Tensor> {
        (**self).try_forward(input)
    }

    fn named_parameters(&self) -> Vec<(String, Tensor)> {
        (**self).named_parameters()
    }

    fn named_buffers(&self) -> Vec<(String, Tensor)> {
        (**self).named_buffers()
    }

    fn set_training(&mut self, training: bool) {
        (**self).set_training(training);
    }

    fn describe(&self) -> String {
        (**self).describe()
    }

    fn children(&self) -> Vec<(String, &dyn Module)> {
        (**self).children()
    }

    fn output_width(&self, input_width: Option<usize>) -> Option<usize> {
        (**self).output_width(input_width)
    }
}
