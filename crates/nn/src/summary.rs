//! A model summary, as `print(model)` and torchinfo show it: each layer with its kind,
//! output width and parameter count, and the total.

use std::fmt;

use crate::Module;

/// A printable summary of a module (see [`summary`]).
pub struct Summary<'a> {
    model: &'a dyn Module,
    input_width: Option<usize>,
}

/// A summary of `model` whose `Display` is a table: one row per layer (a module without
/// children) under its state-dict name, its kind and sizes, the width of its output's
/// last axis where known, its parameter count; then the total.
///
/// ```
/// use tapegrad_nn::{summary, Linear, Relu, Sequential};
///
/// let net = Sequential::new()
///     .add(Linear::new(10, 5)?)
///     .add(Relu)
///     .add(Linear::new(5, 1)?);
/// let table = summary(&net).to_string();
/// assert!(table.contains("Linear 10 → 5"));
/// assert!(table.lines().last().unwrap().ends_with("61"));
/// # Ok::<(), tapegrad_autograd::TensorError>(())
/// ```
pub fn summary(model: &dyn Module) -> Summary<'_> {
    Summary {
        model,
        input_width: None,
    }
}

impl Summary<'_> {
    /// Starts the width column from a known input width (otherwise layers that keep
    /// their input's width show `-` until the first layer that sets one).
    pub fn with_input_width(mut self, width: usize) -> Self {
        self.input_width = Some(width);
        self
    }
}

struct Row {
    name: String,
    kind: String,
    width: Option<usize>,
    params: usize,
}

/// Appends the rows of `module`'s layers (depth first, in declaration order) and
/// returns the output width after them.
fn collect(
    prefix: &str,
    module: &dyn Module,
    width: Option<usize>,
    rows: &mut Vec<Row>,
) -> Option<usize> {
    let children = module.children();
    if children.is_empty() {
        let width = module.output_width(width);
        rows.push(Row {
            name: prefix.to_string(),
            kind: module.describe(),
            width,
            params: module.num_parameters(),
        });
        return width;
    }
    let in_children: usize = children.iter().map(|(_, c)| c.num_parameters()).sum();
    let own = module.num_parameters().saturating_sub(in_children);
    if own > 0 {
        // A container that also holds parameters of its own (a raw `Tensor` field).
        rows.push(Row {
            name: if prefix.is_empty() {
                "(own)".into()
            } else {
                prefix.to_string()
            },
            kind: format!("{} (own parameters)", module.describe()),
            width: None,
            params: own,
        });
    }
    children.iter().fold(width, |w, (name, child)| {
        let path = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        collect(&path, *child, w, rows)
    })
}

impl fmt::Display for Summary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rows = Vec::new();
        collect("", self.model, self.input_width, &mut rows);
        let header = Row {
            name: "layer".into(),
            kind: "kind".into(),
            width: None,
            params: 0,
        };
        let chars = |s: &str| s.chars().count();
        let name_w = rows
            .iter()
            .chain([&header])
            .map(|r| chars(&r.name))
            .max()
            .unwrap_or(0);
        let kind_w = rows
            .iter()
            .chain([&header])
            .map(|r| chars(&r.kind))
            .max()
            .unwrap_or(0);
        let total = self.model.num_parameters();
        let params_w = total.to_string().len().max("params".len());
        writeln!(f, "{}", self.model.describe())?;
        writeln!(
            f,
            "  {:<name_w$}  {:<kind_w$}  {:>6}  {:>params_w$}",
            "layer", "kind", "output", "params"
        )?;
        for r in &rows {
            let width = r.width.map_or("-".to_string(), |w| w.to_string());
            writeln!(
                f,
                "  {:<name_w$}  {:<kind_w$}  {:>6}  {:>params_w$}",
                r.name, r.kind, width, r.params
            )?;
        }
        write!(
            f,
            "  {:<name_w$}  {:<kind_w$}  {:>6}  {:>params_w$}",
            "total", "", "", total
        )
    }
}
