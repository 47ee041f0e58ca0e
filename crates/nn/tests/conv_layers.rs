//! The convolution, pooling and batch-norm layers: PyTorch's names, shapes and default
//! initialisation, BatchNorm's running statistics in train and eval mode, and errors
//! that name the layer and the shapes.

use tapegrad_autograd::rand::{rngs::StdRng, SeedableRng};
use tapegrad_nn::{
    prefixed_buffers, AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, Conv1d, Conv2d,
    Conv2dOptions, ConvTranspose2d, Flatten, MaxPool2d, Module, Relu, Sequential, Tensor,
};

fn names(v: Vec<(String, Tensor)>) -> Vec<String> {
    v.into_iter().map(|(n, _)| n).collect()
}

#[test]
fn conv_layers_have_pytorch_shapes_names_and_init_bounds() {
    let mut rng = StdRng::seed_from_u64(0);
    let options = Conv2dOptions::new().padding(1).groups(2);
    let conv = Conv2d::with_options_and_rng(4, 6, [3, 3], options, true, &mut rng).unwrap();
    assert_eq!(conv.weight.shape(), &[6, 2, 3, 3]);
    // Kaiming-uniform with a = √5 over fan_in = in/groups·kh·kw is U(±1/√fan_in).
    let bound = 1.0 / (18f32).sqrt();
    let w = conv.weight.to_vec();
    assert!(w.iter().all(|v| v.abs() <= bound));
    assert!(
        w.iter().any(|v| v.abs() > 0.8 * bound),
        "spread over the whole range"
    );
    assert!(conv
        .bias
        .as_ref()
        .unwrap()
        .to_vec()
        .iter()
        .all(|v| v.abs() <= bound));
    assert_eq!(names(conv.named_parameters()), ["weight", "bias"]);
    assert_eq!(
        conv.forward(&Tensor::zeros(&[2, 4, 5, 5])).shape(),
        &[2, 6, 5, 5]
    );

    let c1 = Conv1d::new_with_rng(3, 5, 3, &mut rng).unwrap();
    assert_eq!(c1.weight.shape(), &[5, 3, 3]);
    assert_eq!(c1.forward(&Tensor::zeros(&[2, 3, 7])).shape(), &[2, 5, 5]);
    let t = ConvTranspose2d::new_with_rng(3, 4, 2, &mut rng).unwrap();
    assert_eq!(t.weight.shape(), &[3, 4, 2, 2]);
    assert!(t
        .weight
        .to_vec()
        .iter()
        .all(|v| v.abs() <= 1.0 / 4f32.sqrt() * 1.0001));
    assert_eq!(
        t.forward(&Tensor::zeros(&[1, 3, 3, 3])).shape(),
        &[1, 4, 4, 4]
    );
}

#[test]
fn pooling_layers_and_flatten() {
    let x = Tensor::arange(0.0, 32.0, 1.0)
        .unwrap()
        .reshape(&[1, 2, 4, 4]);
    let y = MaxPool2d::new(2).forward(&x);
    assert_eq!(y.to_vec(), [5.0, 7.0, 13.0, 15.0, 21.0, 23.0, 29.0, 31.0]);
    let y = AvgPool2d::new(2).forward(&x);
    assert_eq!(&y.to_vec()[..2], [2.5, 4.5]);
    let y = AdaptiveAvgPool2d::new([1, 1]).forward(&x);
    assert_eq!(y.to_vec(), [7.5, 23.5]);
    assert_eq!(Flatten::new().forward(&x).shape(), &[1, 32]);
}

#[test]
fn batch_norm_tracks_running_statistics_and_uses_them_in_eval() {
    let mut bn = BatchNorm2d::new(2);
    assert_eq!(names(bn.named_parameters()), ["weight", "bias"]);
    assert_eq!(
        names(bn.named_buffers()),
        ["running_mean", "running_var", "num_batches_tracked"]
    );
    // Channel 0 holds 0..8, channel 1 holds 10 × that, over a batch of 2.
    let data: Vec<f32> = (0..2)
        .flat_map(|b| {
            (0..2).flat_map(move |c| {
                (0..4).map(move |i| (b * 4 + i) as f32 * if c == 0 { 1.0 } else { 10.0 })
            })
        })
        .collect();
    let x = Tensor::from_vec(data, &[2, 2, 2, 2]).unwrap();
    let y = bn.forward(&x);
    // Batch statistics: mean 3.5 (35), biased variance 5.25 (525), unbiased 6 (600).
    let y0 = y.to_vec()[0];
    assert!(
        (y0 - (0.0 - 3.5) / (5.25f32 + 1e-5).sqrt()).abs() < 1e-5,
        "{y0}"
    );
    let rm = bn.running_mean.as_ref().unwrap().to_vec();
    let rv = bn.running_var.as_ref().unwrap().to_vec();
    assert!(
        (rm[0] - 0.35).abs() < 1e-6 && (rm[1] - 3.5).abs() < 1e-5,
        "{rm:?}"
    );
    assert!(
        (rv[0] - (0.9 + 0.6)).abs() < 1e-5 && (rv[1] - (0.9 + 60.0)).abs() < 1e-3,
        "{rv:?}"
    );
    assert_eq!(bn.num_batches_tracked.as_ref().unwrap().item(), 1.0);

    bn.eval();
    let y = bn.forward(&x);
    let want = (0.0 - 0.35) / (1.5f32 + 1e-5).sqrt();
    assert!((y.to_vec()[0] - want).abs() < 1e-5);
    assert_eq!(
        bn.num_batches_tracked.as_ref().unwrap().item(),
        1.0,
        "eval does not count"
    );
    assert_eq!(
        bn.running_mean.as_ref().unwrap().to_vec(),
        rm,
        "eval does not update"
    );
}

#[test]
fn batch_norm_without_momentum_keeps_a_cumulative_average() {
    let bn = BatchNorm1d::with_options(1, 1e-5, None, false, true);
    for (i, m) in [1.0f32, 2.0, 6.0].into_iter().enumerate() {
        let x = Tensor::from_vec(vec![m - 1.0, m + 1.0], &[2, 1]).unwrap();
        bn.forward(&x);
        assert_eq!(
            bn.num_batches_tracked.as_ref().unwrap().item(),
            (i + 1) as f32
        );
    }
    assert_eq!(bn.running_mean.as_ref().unwrap().to_vec(), [3.0]);
    assert!((bn.running_var.as_ref().unwrap().to_vec()[0] - 2.0).abs() < 1e-6);
}

#[test]
fn containers_prefix_buffers_and_pass_train_eval_down() {
    let mut net = Sequential::new()
        .add(BatchNorm1d::new(3))
        .add(Relu)
        .add(BatchNorm1d::new(3));
    assert_eq!(
        names(net.named_buffers()),
        [
            "0.running_mean",
            "0.running_var",
            "0.num_batches_tracked",
            "2.running_mean",
            "2.running_var",
            "2.num_batches_tracked"
        ]
    );
    net.eval();
    let x = Tensor::ones(&[1, 3]);
    // A batch of one is fine in eval mode (it would be an error in training mode).
    assert_eq!(net.forward(&x).shape(), &[1, 3]);
    let bn = BatchNorm2d::new(2);
    assert_eq!(prefixed_buffers(&[("bn1", &bn)])[0].0, "bn1.running_mean");
}

#[test]
fn layers_reject_bad_input_naming_the_layer_and_shapes() {
    let mut rng = StdRng::seed_from_u64(0);
    let conv = Conv2d::new_with_rng(3, 4, 3, &mut rng).unwrap();
    let m = conv
        .try_forward(&Tensor::zeros(&[1, 2, 8, 8]))
        .unwrap_err()
        .to_string();
    assert!(
        m.starts_with("Conv2d:") && m.contains("[1, 2, 8, 8]") && m.contains("[4, 3, 3, 3]"),
        "{m}"
    );
    let m = conv
        .try_forward(&Tensor::zeros(&[3, 8, 8]))
        .unwrap_err()
        .to_string();
    assert!(
        m.starts_with("Conv2d:") && m.contains("4-D") && m.contains("[3, 8, 8]"),
        "{m}"
    );
    let m = conv
        .try_forward(&Tensor::zeros(&[1, 3, 2, 2]))
        .unwrap_err()
        .to_string();
    assert!(m.contains("larger than the padded input"), "{m}");
    let m =
        Conv2d::with_options_and_rng(3, 4, [3, 3], Conv2dOptions::new().groups(2), true, &mut rng)
            .err()
            .unwrap()
            .to_string();
    assert!(m.starts_with("Conv2d:") && m.contains("groups 2"), "{m}");
    let m = BatchNorm2d::new(3)
        .try_forward(&Tensor::zeros(&[2, 4, 2, 2]))
        .unwrap_err()
        .to_string();
    assert!(
        m.starts_with("BatchNorm2d:") && m.contains("[2, 4, 2, 2]"),
        "{m}"
    );
}
