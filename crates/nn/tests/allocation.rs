//! Issue 12: a layer too large for memory is an `Err` naming the size, not an abort.

use tapegrad_autograd::TensorError;
use tapegrad_nn::{init, Embedding, Linear};

#[test]
fn a_layer_too_large_for_memory_is_an_error() {
    // 2^60 weights (4 EiB): beyond any address space.
    assert!(matches!(
        Linear::new(1 << 30, 1 << 30),
        Err(TensorError::OutOfMemory { .. })
    ));
    assert!(matches!(
        Embedding::new(1 << 30, 1 << 30),
        Err(TensorError::OutOfMemory { .. })
    ));
    // A shape whose product wraps is refused before any allocation is tried.
    let mut rng = <tapegrad_autograd::rand::rngs::StdRng as tapegrad_autograd::rand::SeedableRng>::seed_from_u64(0);
    assert!(matches!(
        init::kaiming_uniform(&[1 << 32, 1 << 32, 2], 5f32.sqrt(), &mut rng),
        Err(TensorError::ShapeTooLarge { op: "init", .. })
    ));
    assert!(Linear::new(3, 2).is_ok());
    // With `vm.overcommit_memory = 1` a 4 TiB allocation succeeds and touching it kills
    // the process: the sizes are refused only under the default heuristic.
    if std::fs::read_to_string("/proc/sys/vm/overcommit_memory").is_ok_and(|m| m.trim() == "1") {
        return;
    }
    // The layer: 2^40 weights, 4 TiB.
    match Linear::new(1 << 20, 1 << 20) {
        Err(e @ TensorError::OutOfMemory { elements, .. }) => {
            assert_eq!(elements, 1 << 40);
            assert!(e.to_string().contains("4398046511104 bytes"), "{e}");
        }
        Err(e) => panic!("expected OutOfMemory, got {e}"),
        Ok(_) => panic!("a 4 TiB layer was allocated"),
    }
}
