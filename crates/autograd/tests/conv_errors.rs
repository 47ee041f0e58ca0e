//! Bad arguments to the convolution, pooling and batch-norm ops are errors that name
//! the op and the shapes, never a panic or a wrong answer.

use tapegrad_autograd::{
    Conv2dOptions as C, ConvTranspose2dOptions as T, Pool2dOptions as P, Tensor,
};

fn message<T: std::fmt::Debug>(r: tapegrad_autograd::Result<T>) -> String {
    r.expect_err("should fail").to_string()
}

#[test]
fn conv2d_rejects_bad_input_with_the_shapes() {
    let x = Tensor::zeros(&[2, 3, 8, 8]);
    let w = Tensor::zeros(&[4, 3, 3, 3]);
    let m = message(x.try_conv2d(&Tensor::zeros(&[4, 2, 3, 3]), None, C::new()));
    assert!(
        m.starts_with("conv2d:") && m.contains("[2, 3, 8, 8]") && m.contains("[4, 2, 3, 3]"),
        "{m}"
    );
    let m = message(x.try_conv2d(&Tensor::zeros(&[4, 3, 9, 9]), None, C::new()));
    assert!(
        m.contains("larger than the padded input") && m.contains("[4, 3, 9, 9]"),
        "{m}"
    );
    assert!(x
        .try_conv2d(&Tensor::zeros(&[4, 3, 9, 9]), None, C::new().padding(1))
        .is_ok());
    let m = message(x.try_conv2d(&w, None, C::new().stride(0)));
    assert!(m.contains("stride") && m.contains("positive"), "{m}");
    let m = message(x.try_conv2d(&Tensor::zeros(&[4, 1, 3, 3]), None, C::new().groups(2)));
    assert!(m.contains("groups 2") && m.contains("3 channels"), "{m}");
    let m = message(Tensor::zeros(&[3, 8, 8]).try_conv2d(&w, None, C::new()));
    assert!(m.contains("4-D input") && m.contains("[3, 8, 8]"), "{m}");
    let m = message(x.try_conv2d(&w, Some(&Tensor::zeros(&[3])), C::new()));
    assert!(m.contains("bias") && m.contains("[4]"), "{m}");
    let m = message(x.try_conv2d(&w, None, C::new().same().stride(2)));
    assert!(m.contains("same") && m.contains("stride 1"), "{m}");
}

#[test]
fn conv1d_and_transpose_reject_bad_input() {
    let m = message(Tensor::zeros(&[2, 3, 8, 8]).try_conv1d(
        &Tensor::zeros(&[4, 3, 3]),
        None,
        C::new(),
    ));
    assert!(m.starts_with("conv1d:") && m.contains("3-D input"), "{m}");
    let m =
        message(Tensor::zeros(&[2, 2, 8]).try_conv1d(&Tensor::zeros(&[4, 3, 3]), None, C::new()));
    assert!(m.starts_with("conv1d:") && m.contains("[2, 2, 8]"), "{m}");
    let x = Tensor::zeros(&[1, 3, 4, 4]);
    let m = message(x.try_conv_transpose2d(&Tensor::zeros(&[2, 2, 3, 3]), None, T::new()));
    assert!(
        m.starts_with("conv_transpose2d:") && m.contains("[1, 3, 4, 4]"),
        "{m}"
    );
    let m = message(x.try_conv_transpose2d(
        &Tensor::zeros(&[3, 2, 3, 3]),
        None,
        T::new().output_padding(1),
    ));
    assert!(m.contains("output padding"), "{m}");
}

#[test]
fn pooling_and_batch_norm_reject_bad_input() {
    let x = Tensor::zeros(&[1, 2, 4, 4]);
    let m = message(x.try_max_pool2d(P::new(5)));
    assert!(
        m.starts_with("max_pool2d:") && m.contains("[1, 2, 4, 4]"),
        "{m}"
    );
    let m = message(x.try_avg_pool2d(P::new(2).stride(0)));
    assert!(
        m.starts_with("avg_pool2d:") && m.contains("positive"),
        "{m}"
    );
    let m = message(x.try_max_pool2d(P::new(2).padding(2)));
    assert!(m.contains("half the kernel"), "{m}");
    let m = message(Tensor::zeros(&[4, 4]).try_max_pool2d(P::new(2)));
    assert!(m.contains("[4, 4]"), "{m}");
    let m = message(x.try_flatten(2, 1));
    assert!(m.starts_with("flatten:"), "{m}");
    let m = message(x.try_batch_norm(None, None, Some(&Tensor::ones(&[3])), None, true, 0.1, 1e-5));
    assert!(
        m.starts_with("batch_norm:") && m.contains("[3]") && m.contains("[1, 2, 4, 4]"),
        "{m}"
    );
    let m = message(Tensor::zeros(&[1, 2]).try_batch_norm(None, None, None, None, true, 0.1, 1e-5));
    assert!(m.contains("more than 1 value per channel"), "{m}");
}
