//! Issue 12: shape arithmetic never wraps and allocation failures are errors. Each
//! shape here wraps to a small element count with a plain product, which once let a
//! tensor claim far more elements than its buffer holds.

use tapegrad_autograd::shape::{checked_numel, MAX_ELEMENTS};
use tapegrad_autograd::{custom_op, Tensor, TensorError};

const K: usize = (1 << 62) + 1;

fn too_large(r: Result<Tensor, TensorError>, op: &str) -> String {
    match r {
        Err(e @ TensorError::ShapeTooLarge { .. }) => {
            let msg = e.to_string();
            assert!(msg.starts_with(&format!("{op}: shape [")), "{msg}");
            msg
        }
        other => panic!("{op}: expected ShapeTooLarge, got {other:?}"),
    }
}

#[test]
fn the_issue_repro_is_an_error_not_a_segfault() {
    // 100 · K wraps to 100 and K · 200 to 200: both once loaded, and the product crashed.
    let msg = too_large(Tensor::from_vec(vec![1.0; 100], &[100, K]), "from_vec");
    assert!(msg.contains(&format!("[100, {K}]")), "{msg}");
    too_large(Tensor::from_vec(vec![1.0; 200], &[K, 200]), "from_vec");
    too_large(Tensor::from_slice(&[1.0; 200], &[K, 200]), "from_slice");
}

#[test]
fn constructors_refuse_shapes_that_wrap() {
    let wraps_to_zero = [1usize << 32, 1 << 32, 2];
    too_large(Tensor::try_zeros(&wraps_to_zero), "zeros");
    too_large(Tensor::try_ones(&wraps_to_zero), "ones");
    too_large(Tensor::try_full(&wraps_to_zero, 3.0), "full");
    let mut rng = <tapegrad_autograd::rand::rngs::StdRng as tapegrad_autograd::rand::SeedableRng>::seed_from_u64(0);
    too_large(
        Tensor::uniform(&wraps_to_zero, 0.0, 1.0, &mut rng),
        "uniform",
    );
    too_large(Tensor::normal(&wraps_to_zero, 0.0, 1.0, &mut rng), "normal");
    // Empty, but its outer stride would wrap.
    too_large(Tensor::try_zeros(&[0, 1 << 40, 1 << 40]), "zeros");
    too_large(
        custom_op("my_op", &[], vec![], &[0, 1 << 40, 1 << 40], |_| vec![]),
        "my_op",
    );
    // The panicking form names the shape rather than wrapping.
    let panic = std::panic::catch_unwind(|| Tensor::zeros(&wraps_to_zero)).unwrap_err();
    let msg = panic.downcast_ref::<String>().unwrap();
    assert!(
        msg.contains("zeros: shape [4294967296, 4294967296, 2] is too large"),
        "{msg}"
    );
}

#[test]
fn arange_refuses_a_count_that_cannot_be_a_tensor() {
    assert!(matches!(
        Tensor::arange(0.0, 1e30, 1e-10),
        Err(TensorError::ShapeTooLarge { op: "arange", .. })
    ));
}

#[test]
fn reshape_refuses_a_shape_that_wraps_to_the_same_count() {
    // 3 · 6148914691236517206 wraps to 2: once Ok, and a following `.t()` panicked.
    let x = Tensor::from_vec(vec![1.0, 2.0], &[2]).unwrap();
    too_large(x.try_reshape(&[3, 6148914691236517206]), "reshape");
    too_large(
        x.try_broadcast_to(&[3, 6148914691236517206]),
        "broadcast_to",
    );
    assert_eq!(x.try_reshape(&[1, 2]).unwrap().shape(), &[1, 2]);
}

#[test]
fn ops_refuse_outputs_that_wrap_from_valid_inputs() {
    // Each input is valid; the output [2^32, 2^32] is not (2^64 elements).
    let col = Tensor::zeros(&[0, 1]).reshape(&[1, 0]);
    let wide = Tensor::try_zeros(&[1 << 40, 0]).unwrap();
    let tall = Tensor::try_zeros(&[0, 1 << 40]).unwrap();
    too_large(wide.try_matmul(&tall), "matmul");
    too_large(wide.try_linear(&wide, None), "linear");
    let a = Tensor::try_zeros(&[1 << 32, 1, 0]).unwrap();
    let b = Tensor::try_zeros(&[1, 1 << 32, 0]).unwrap();
    too_large(a.try_add(&b), "add");
    // index_select: many indices into an empty tensor's long axis.
    let e = Tensor::try_zeros(&[4, 0, 1 << 40]).unwrap();
    let many = vec![0usize; 1 << 22];
    too_large(e.try_index_select(0, &many), "index_select");
    // concat: extents whose sum overflows.
    let huge = Tensor::try_zeros(&[0, MAX_ELEMENTS]).unwrap();
    let err = Tensor::try_concat(&[&huge, &huge], 1).unwrap_err();
    assert!(
        matches!(err, TensorError::ShapeTooLarge { op: "concat", .. }),
        "{err}"
    );
    assert_eq!(col.numel(), 0);
}

/// Whether the kernel may promise memory it does not have (`vm.overcommit_memory = 1`):
/// then a 4 TiB allocation succeeds and only touching it fails, so sizes below the
/// address space cannot be tested for refusal.
fn always_overcommits() -> bool {
    std::fs::read_to_string("/proc/sys/vm/overcommit_memory").is_ok_and(|m| m.trim() == "1")
}

#[test]
fn a_shape_too_large_for_memory_is_an_error_naming_the_size() {
    // 2^60 elements (4 EiB): a valid shape, beyond any address space.
    assert!(matches!(
        Tensor::try_zeros(&[1 << 30, 1 << 30]),
        Err(TensorError::OutOfMemory {
            op: "zeros",
            elements: 1152921504606846976
        })
    ));
    // usize::MAX elements: once "capacity overflow"; now the shape itself is refused.
    too_large(Tensor::try_full(&[usize::MAX], 1.0), "full");
    if always_overcommits() {
        return;
    }
    // The issue's sizes: 4 TiB, which the kernel's overcommit heuristic refuses.
    match Tensor::try_zeros(&[1 << 40]) {
        Err(
            e @ TensorError::OutOfMemory {
                op: "zeros",
                elements,
            },
        ) => {
            assert_eq!(elements, 1 << 40);
            assert!(e.to_string().contains("4398046511104 bytes"), "{e}");
        }
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    let mut rng = <tapegrad_autograd::rand::rngs::StdRng as tapegrad_autograd::rand::SeedableRng>::seed_from_u64(0);
    assert!(matches!(
        Tensor::uniform(&[1 << 20, 1 << 20], -1.0, 1.0, &mut rng),
        Err(TensorError::OutOfMemory { op: "uniform", .. })
    ));
    assert_eq!(checked_numel(&[1 << 40]), Some(1 << 40));
}
