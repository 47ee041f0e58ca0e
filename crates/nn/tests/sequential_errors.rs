//! An error inside `Sequential` names the layer (index and kind) and the caller's line,
//! not a line inside tapegrad.

use std::cell::RefCell;
use std::panic;

use tapegrad_autograd::rand::{rngs::StdRng, SeedableRng};
use tapegrad_autograd::{Tensor, TensorError};
use tapegrad_nn::{Linear, Module, Relu, Sequential};

fn net() -> Sequential {
    let mut rng = StdRng::seed_from_u64(0);
    Sequential::new()
        .add(Linear::new_with_rng(4, 10, &mut rng).unwrap())
        .add(Relu)
        .add(Linear::new_with_rng(8, 5, &mut rng).unwrap())
}

#[test]
fn try_forward_names_the_layer_and_the_callers_line() {
    let line = line!() + 1;
    let err = net().try_forward(&Tensor::zeros(&[3, 4])).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("Sequential[2] (Linear 8 → 5)"), "{text}");
    assert!(text.contains("linear"), "{text}");
    assert!(text.contains(&format!("{}:{line}:", file!())), "{text}");
    let TensorError::InModule { source, .. } = err else {
        panic!("expected InModule, got {err}")
    };
    assert!(matches!(
        *source,
        TensorError::ShapeMismatch { op: "linear", .. }
    ));
}

#[test]
fn nested_sequentials_join_the_positions() {
    let mut rng = StdRng::seed_from_u64(0);
    let outer = Sequential::new()
        .add(Linear::new_with_rng(4, 4, &mut rng).unwrap())
        .add(net());
    let text = outer
        .try_forward(&Tensor::zeros(&[3, 4]))
        .unwrap_err()
        .to_string();
    assert!(
        text.contains("Sequential[1] → Sequential[2] (Linear 8 → 5)"),
        "{text}"
    );
    assert!(text.contains(file!()), "{text}");
}

thread_local! {
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

#[test]
fn forward_panics_at_the_callers_line() {
    let net = net();
    let x = Tensor::zeros(&[3, 4]);
    let previous = panic::take_hook();
    panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()));
        PANIC_AT.with(|p| *p.borrow_mut() = at);
    }));
    let line = line!() + 1;
    let result = panic::catch_unwind(panic::AssertUnwindSafe(|| net.forward(&x)));
    panic::set_hook(previous);
    let message = result.unwrap_err();
    let message = message.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("Sequential[2] (Linear 8 → 5)"),
        "{message}"
    );
    let at = PANIC_AT.with(|p| p.borrow_mut().take()).unwrap();
    assert_eq!(at, format!("{}:{line}", file!()));
}

#[test]
fn layers_describe_themselves() {
    let mut rng = StdRng::seed_from_u64(0);
    let fc = Linear::with_bias_and_rng(3, 2, false, &mut rng).unwrap();
    assert_eq!(fc.to_string(), "Linear 3 → 2, no bias");
    assert_eq!(Relu.describe(), "ReLU");
    let table = net().to_string();
    assert!(table.starts_with("Sequential (3 layers)\n"), "{table}");
    // 4·10 + 10 and 8·5 + 5 parameters; the ReLU keeps the width 10.
    let relu_row = table.lines().find(|l| l.contains("ReLU")).unwrap();
    assert!(
        relu_row.split_whitespace().eq(["1", "ReLU", "10", "0"]),
        "{table}"
    );
    assert!(table.lines().last().unwrap().ends_with("95"), "{table}");
}
