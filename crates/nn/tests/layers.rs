//! Layers: PyTorch names and shapes, default initialisation, forward values, gradients.

use rand::rngs::StdRng;
use rand::SeedableRng;
use tapegrad_autograd::{gradcheck, Tensor};
use tapegrad_nn::init::{fans, kaiming_normal, kaiming_uniform, xavier_normal, xavier_uniform};
use tapegrad_nn::{
    Dropout, Embedding, Gelu, Identity, LayerNorm, LeakyRelu, Linear, Module, Relu, Sequential,
    Sigmoid, Softmax, Tanh,
};

fn rng() -> StdRng {
    StdRng::seed_from_u64(7)
}

#[test]
fn linear_matches_x_wt_plus_b_and_pytorch_init_bounds() {
    let mut rng = rng();
    let layer = Linear::new_with_rng(10, 5, &mut rng).unwrap();
    assert_eq!(layer.weight.shape(), &[5, 10]);
    assert_eq!(layer.bias.as_ref().unwrap().shape(), &[5]);
    let bound = 1.0 / 10f32.sqrt();
    for p in layer.parameters() {
        assert!(p.requires_grad());
        assert!(p.data().iter().all(|v| v.abs() <= bound));
    }
    let x = Tensor::normal(&[3, 10], 0.0, 1.0, &mut rng).unwrap();
    let y = layer.forward(&x);
    let want = &x.matmul(&layer.weight.t()) + layer.bias.as_ref().unwrap();
    for (a, b) in y.to_vec().iter().zip(want.to_vec()) {
        assert!((a - b).abs() < 1e-5);
    }
    let no_bias = Linear::with_bias_and_rng(4, 2, false, &mut rng).unwrap();
    assert_eq!(no_bias.named_parameters().len(), 1);
}

#[test]
fn linear_init_is_uniform_over_the_whole_range() {
    let layer = Linear::new_with_rng(100, 400, &mut rng()).unwrap();
    let w = layer.weight.to_vec();
    let bound = 0.1;
    let mean = w.iter().sum::<f32>() / w.len() as f32;
    let var = w.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / w.len() as f32;
    // U(-b, b) has variance b²/3.
    assert!(mean.abs() < 0.005, "{mean}");
    assert!((var - bound * bound / 3.0).abs() < 2e-4, "{var}");
}

#[test]
fn sequential_names_parameters_by_position() {
    let mut rng = rng();
    let net = Sequential::new()
        .add(Linear::new_with_rng(4, 8, &mut rng).unwrap())
        .add(Relu)
        .add(Linear::new_with_rng(8, 2, &mut rng).unwrap());
    let names: Vec<String> = net.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
    assert_eq!(net.num_parameters(), 4 * 8 + 8 + 8 * 2 + 2);
    assert_eq!(net.forward(&Tensor::zeros(&[5, 4])).shape(), &[5, 2]);
}

#[test]
fn a_whole_model_passes_gradcheck() {
    let mut rng = rng();
    let net = Sequential::new()
        .add(Linear::new_with_rng(3, 4, &mut rng).unwrap())
        .add(Tanh)
        .add(LayerNorm::new(4))
        .add(Linear::new_with_rng(4, 2, &mut rng).unwrap());
    let x = Tensor::normal(&[5, 3], 0.0, 1.0, &mut rng).unwrap();
    let params = net.parameters();
    // gradcheck perturbs copies of the inputs; rebuild the forward from them.
    let report = gradcheck(
        |p| {
            let h = x.linear(&p[0], Some(&p[1])).tanh();
            let ln = LayerNorm::new(4);
            let h = &(&ln.forward(&h) * &p[4]) + &p[5];
            h.linear(&p[2], Some(&p[3])).pow(2.0).mean()
        },
        &[
            params[0].clone(),
            params[1].clone(),
            params[4].clone(),
            params[5].clone(),
            params[2].clone(),
            params[3].clone(),
        ],
    )
    .unwrap();
    assert!(report.passes(2e-2), "{report:?}");
    // And the module's own backward reaches every parameter.
    net.forward(&x).pow(2.0).mean().backward();
    assert!(net.parameters().iter().all(|p| p.grad().is_some()));
}

#[test]
fn activations_are_the_tensor_ops() {
    let x = Tensor::from_slice(&[-2.0, -0.5, 0.5, 2.0], &[2, 2]).unwrap();
    assert_eq!(Relu.forward(&x).to_vec(), x.relu().to_vec());
    assert_eq!(Sigmoid.forward(&x).to_vec(), x.sigmoid().to_vec());
    assert_eq!(Tanh.forward(&x).to_vec(), x.tanh().to_vec());
    assert_eq!(
        LeakyRelu::default().forward(&x).to_vec(),
        x.leaky_relu(0.01).to_vec()
    );
    assert_eq!(
        Gelu::default().forward(&x).to_vec(),
        x.gelu(tapegrad_nn::GeluApprox::None).to_vec()
    );
    assert_eq!(
        Softmax { axis: 1 }.forward(&x).to_vec(),
        x.softmax(1).to_vec()
    );
    assert_eq!(Identity.forward(&x).to_vec(), x.to_vec());
}

#[test]
fn dropout_drops_in_training_only_and_repeats_with_its_seed() {
    let x = Tensor::ones(&[10_000]);
    tapegrad_autograd::manual_seed(1);
    let mut d = Dropout::new(0.3).unwrap();
    let y = d.forward(&x).to_vec();
    let dropped = y.iter().filter(|&&v| v == 0.0).count() as f32 / y.len() as f32;
    assert!((dropped - 0.3).abs() < 0.02, "{dropped}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.7).abs() < 1e-6));
    tapegrad_autograd::manual_seed(1);
    let again = Dropout::new(0.3).unwrap().forward(&x).to_vec();
    assert_eq!(y, again);
    d.eval();
    assert_eq!(d.forward(&x).to_vec(), x.to_vec());
    assert!(Dropout::new(1.5).is_err());
    let mut net = Sequential::new().add(Dropout::new(0.5).unwrap());
    net.eval();
    assert_eq!(
        net.forward(&x).to_vec(),
        x.to_vec(),
        "eval reaches layers inside Sequential"
    );
}

#[test]
fn layer_norm_normalises_rows() {
    let x = Tensor::normal(&[4, 6], 3.0, 2.0, &mut rng()).unwrap();
    let y = LayerNorm::new(6).forward(&x).to_vec();
    for row in y.chunks(6) {
        let mean = row.iter().sum::<f32>() / 6.0;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 6.0;
        assert!(
            mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-3,
            "{mean} {var}"
        );
    }
    assert!(LayerNorm::new(5).try_forward(&x).is_err());
    assert_eq!(
        LayerNorm::with_options(6, 1e-5, false)
            .named_parameters()
            .len(),
        0
    );
}

#[test]
fn embedding_looks_up_rows_and_routes_gradients() {
    let emb = Embedding::new_with_rng(5, 3, &mut rng()).unwrap();
    let ids = Tensor::from_slice(&[4.0, 1.0, 4.0], &[3]).unwrap();
    let out = emb.forward(&ids);
    assert_eq!(out.shape(), &[3, 3]);
    assert_eq!(&out.to_vec()[..3], &emb.weight.to_vec()[12..15]);
    out.sum().backward();
    let g = emb.weight.grad().unwrap().to_vec();
    assert_eq!(&g[12..15], &[2.0, 2.0, 2.0], "row 4 used twice");
    assert_eq!(&g[0..3], &[0.0, 0.0, 0.0]);
    assert!(emb
        .try_forward(&Tensor::from_slice(&[5.0], &[1]).unwrap())
        .is_err());
    assert!(emb
        .try_forward(&Tensor::from_slice(&[1.5], &[1]).unwrap())
        .is_err());
}

#[test]
fn init_functions_follow_pytorch_formulas() {
    let mut rng = rng();
    assert_eq!(fans(&[8, 4, 3, 3]).unwrap(), (36, 72));
    assert!(fans(&[5]).is_err());
    let std_of = |t: &Tensor| {
        let v = t.to_vec();
        (v.iter().map(|x| x * x).sum::<f32>() / v.len() as f32).sqrt()
    };
    let shape = [200, 300];
    // Kaiming with a = 0 (ReLU gain √2): std √(2/300).
    let kn = kaiming_normal(&shape, 0.0, &mut rng).unwrap();
    assert!((std_of(&kn) - (2.0f32 / 300.0).sqrt()).abs() < 2e-3);
    let ku = kaiming_uniform(&shape, 0.0, &mut rng).unwrap();
    assert!(ku.data().iter().all(|v| v.abs() <= (6.0f32 / 300.0).sqrt()));
    let xn = xavier_normal(&shape, 1.0, &mut rng).unwrap();
    assert!((std_of(&xn) - (2.0f32 / 500.0).sqrt()).abs() < 2e-3);
    let xu = xavier_uniform(&shape, 1.0, &mut rng).unwrap();
    assert!(xu.data().iter().all(|v| v.abs() <= (6.0f32 / 500.0).sqrt()));
    assert!(kaiming_uniform(&[3, 0], 0.0, &mut rng).is_err());
}
