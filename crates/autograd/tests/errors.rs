//! Bad input gives a typed error naming the op and the shapes, and the panicking forms
//! panic with the same message.

use tapegrad_autograd::{Tensor, TensorError};

fn t(shape: &[usize]) -> Tensor {
    Tensor::zeros(shape)
}

#[test]
fn matmul_names_both_shapes() {
    let err = t(&[3, 4]).try_matmul(&t(&[5, 2])).unwrap_err();
    assert_eq!(err.to_string(), "matmul: cannot multiply [3, 4] by [5, 2]");
    assert!(matches!(
        err,
        TensorError::ShapeMismatch { op: "matmul", .. }
    ));
    assert!(
        t(&[2, 3, 4]).try_matmul(&t(&[3, 4, 5])).is_err(),
        "batch 2 vs 3"
    );
    assert!(
        t(&[4]).try_matmul(&t(&[4, 2])).is_err(),
        "1-D operands are not matrices"
    );
}

#[test]
#[should_panic(expected = "matmul: cannot multiply [3, 4] by [5, 2]")]
fn the_panicking_form_carries_the_message() {
    let _ = t(&[3, 4]).matmul(&t(&[5, 2]));
}

#[test]
#[should_panic(expected = "add: cannot broadcast [3, 4] with [3]")]
fn operators_panic_with_the_shapes() {
    let _ = &t(&[3, 4]) + &t(&[3]);
}

#[test]
fn broadcasting_errors() {
    for (a, b) in [
        (&[3, 4][..], &[3][..]),
        (&[2, 3], &[3, 2]),
        (&[2, 3, 4], &[3, 3, 4]),
    ] {
        for r in [
            t(a).try_add(&t(b)),
            t(a).try_sub(&t(b)),
            t(a).try_mul(&t(b)),
            t(a).try_div(&t(b)),
        ] {
            let msg = r.unwrap_err().to_string();
            assert!(
                msg.contains(&format!("{a:?}")) && msg.contains(&format!("{b:?}")),
                "{msg}"
            );
        }
    }
    assert!(t(&[3, 2]).try_broadcast_to(&[3, 4]).is_err());
    assert!(t(&[2, 3]).try_broadcast_to(&[3]).is_err());
}

#[test]
fn constructors_check_lengths() {
    let err = Tensor::from_vec(vec![1.0; 5], &[2, 3]).unwrap_err();
    assert_eq!(
        err,
        TensorError::LengthMismatch {
            op: "from_vec",
            expected: 6,
            got: 5
        }
    );
    assert!(Tensor::from_slice(&[1.0], &[2]).is_err());
    assert!(Tensor::arange(0.0, 1.0, 0.0).is_err());
    assert!(Tensor::normal(&[2], 0.0, -1.0, &mut rand::rng()).is_err());
    assert!(Tensor::uniform(&[2], 1.0, 0.0, &mut rand::rng()).is_err());
    assert!(t(&[2, 2]).try_item().is_err());
}

#[test]
fn axis_and_index_errors() {
    let x = t(&[2, 3]);
    assert_eq!(
        x.try_sum_axis(2, false).unwrap_err(),
        TensorError::AxisOutOfRange {
            op: "sum_axis",
            axis: 2,
            rank: 2
        }
    );
    assert!(x.try_mean_axis(5, true).is_err());
    assert!(x.try_max_axis(2, true).is_err());
    assert!(x.try_softmax(2).is_err());
    assert!(x.try_log_softmax(3).is_err());
    assert!(x.try_transpose(0, 2).is_err());
    assert!(x.try_unsqueeze(3).is_err());
    assert!(x.try_squeeze(2).is_err());
    assert_eq!(
        x.try_index_select(0, &[0, 2]).unwrap_err(),
        TensorError::IndexOutOfRange {
            op: "index_select",
            index: 2,
            len: 2
        }
    );
    assert!(x.try_gather(1, &[0, 3], 1).is_err(), "index 3 of 3 classes");
    assert!(x.try_gather(1, &[0], 1).is_err(), "one index for two rows");
}

#[test]
fn shape_op_errors() {
    let err = t(&[2, 3]).try_reshape(&[4, 2]).unwrap_err().to_string();
    assert_eq!(
        err,
        "reshape: cannot reshape [2, 3] to [4, 2]: element counts differ"
    );
    assert!(Tensor::try_concat(&[], 0).is_err());
    let err = Tensor::try_concat(&[&t(&[2, 3]), &t(&[3, 3])], 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("[2, 3]") && err.contains("[3, 3]"), "{err}");
    assert!(t(&[2, 3]).try_linear(&t(&[4, 2]), None).is_err());
    assert!(t(&[2, 3]).try_linear(&t(&[4, 3]), Some(&t(&[3]))).is_err());
    assert!(t(&[2, 3]).try_linear(&t(&[3]), None).is_err());
}

#[test]
fn zero_width_products_are_well_defined() {
    // No input features: the output is the bias on every row, and gradients flow.
    let x = Tensor::zeros(&[3, 0]).with_requires_grad(true);
    let w = Tensor::zeros(&[2, 0]).with_requires_grad(true);
    let b = Tensor::from_slice(&[1.0, 2.0], &[2])
        .unwrap()
        .with_requires_grad(true);
    let y = x.linear(&w, Some(&b));
    assert_eq!(y.shape(), &[3, 2]);
    assert_eq!(y.to_vec(), [1.0, 2.0, 1.0, 2.0, 1.0, 2.0]);
    y.sum().backward();
    assert_eq!(b.grad().unwrap().to_vec(), [3.0, 3.0]);
    assert_eq!(t(&[2, 0]).matmul(&t(&[0, 3])).to_vec(), vec![0.0; 6]);
}

#[test]
fn set_grad_checks_the_shape() {
    let w = t(&[2]).with_requires_grad(true);
    assert!(w.set_grad(Some(&t(&[3]))).is_err());
    w.set_grad(Some(&Tensor::ones(&[2]))).unwrap();
    assert_eq!(w.grad().unwrap().to_vec(), vec![1.0, 1.0]);
}
