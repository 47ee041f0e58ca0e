//! Convolution, pooling and batch norm against central finite differences; each check
//! weights the output by fixed random values so every output element's gradient counts.

use rand::rngs::StdRng;
use rand::SeedableRng;
use tapegrad_autograd::{
    gradcheck, Conv2dOptions as C, ConvTranspose2dOptions as T, Pool2dOptions as P, Tensor,
};

const TOL: f32 = 2e-2;

fn rand_t(shape: &[usize], seed: u64) -> Tensor {
    Tensor::normal(shape, 0.0, 1.0, &mut StdRng::seed_from_u64(seed)).unwrap()
}

fn check(name: &str, inputs: Vec<Tensor>, op: impl Fn(&[Tensor]) -> Tensor) {
    let shape = op(&inputs).shape().to_vec();
    let weights = rand_t(&shape, 99);
    let report = gradcheck(|xs| (&op(xs) * &weights).sum(), &inputs).unwrap();
    assert!(report.checked > 0, "{name}: nothing checked");
    assert!(report.passes(TOL), "{name}: {report:?}");
}

#[test]
fn conv2d_gradients() {
    let x = rand_t(&[2, 4, 5, 4], 1);
    let w = rand_t(&[4, 2, 3, 2], 2);
    let b = rand_t(&[4], 3);
    let options = [
        C::new(),
        C::new().stride(2).padding(1),
        C::new().same().dilation(2),
        C::new().groups(2).padding(1),
    ];
    for (i, o) in options.into_iter().enumerate() {
        let w = if o.groups == 1 {
            rand_t(&[3, 4, 3, 2], 4)
        } else {
            w.clone()
        };
        let b = if o.groups == 1 {
            rand_t(&[3], 5)
        } else {
            b.clone()
        };
        check(&format!("conv2d {i}"), vec![x.clone(), w, b], move |t| {
            t[0].conv2d(&t[1], Some(&t[2]), o)
        });
    }
    // A 3 × 3 "same" convolution with 8 input channels: the Winograd path.
    check(
        "conv2d winograd",
        vec![
            rand_t(&[2, 8, 4, 3], 7),
            rand_t(&[3, 8, 3, 3], 8),
            rand_t(&[3], 9),
        ],
        |t| t[0].conv2d(&t[1], Some(&t[2]), C::new().padding(1)),
    );
    // Depthwise, without bias.
    check("conv2d depthwise", vec![x, rand_t(&[4, 1, 3, 3], 6)], |t| {
        t[0].conv2d(&t[1], None, C::new().groups(4).padding(1))
    });
}

#[test]
fn conv1d_and_conv_transpose2d_gradients() {
    check(
        "conv1d",
        vec![
            rand_t(&[2, 3, 7], 1),
            rand_t(&[2, 3, 3], 2),
            rand_t(&[2], 3),
        ],
        |t| t[0].conv1d(&t[1], Some(&t[2]), C::new().stride(2).padding(1)),
    );
    check(
        "conv_transpose2d",
        vec![
            rand_t(&[2, 3, 3, 3], 4),
            rand_t(&[3, 2, 3, 3], 5),
            rand_t(&[2], 6),
        ],
        |t| {
            t[0].conv_transpose2d(
                &t[1],
                Some(&t[2]),
                T::new().stride(2).padding(1).output_padding(1),
            )
        },
    );
    check(
        "conv_transpose2d groups",
        vec![rand_t(&[1, 4, 3, 2], 7), rand_t(&[4, 1, 2, 2], 8)],
        |t| t[0].conv_transpose2d(&t[1], None, T::new().groups(2).dilation(2)),
    );
}

#[test]
fn pooling_gradients() {
    // Distinct values far apart, so no finite-difference step changes an arg-max.
    let data: Vec<f32> = (0..2 * 2 * 6 * 5)
        .map(|i| ((i * 37) % 120) as f32 * 0.1)
        .collect();
    let x = Tensor::from_vec(data, &[2, 2, 6, 5]).unwrap();
    check("max_pool2d", vec![x.clone()], |t| {
        t[0].max_pool2d(P::new(2))
    });
    check("max_pool2d pad", vec![x.clone()], |t| {
        t[0].max_pool2d(P::new(3).stride(2).padding(1).ceil_mode(true))
    });
    let y = rand_t(&[2, 2, 6, 5], 3);
    for include in [true, false] {
        check("avg_pool2d", vec![y.clone()], move |t| {
            t[0].avg_pool2d(P::new(3).stride(2).padding(1).count_include_pad(include))
        });
    }
    check("adaptive_avg_pool2d", vec![y.clone()], |t| {
        t[0].adaptive_avg_pool2d([4, 3])
    });
    check("flatten", vec![y], |t| t[0].flatten(1, 2));
}

#[test]
fn batch_norm_gradients() {
    for (shape, training) in [
        (&[4, 3, 2, 2][..], true),
        (&[5, 3][..], true),
        (&[2, 3, 4][..], false),
    ] {
        let x = rand_t(shape, 1);
        let (w, b) = (rand_t(&[3], 2), rand_t(&[3], 3));
        check("batch_norm", vec![x, w, b], move |t| {
            let (rm, rv) = (Tensor::zeros(&[3]), Tensor::ones(&[3]));
            t[0].batch_norm(
                Some(&rm),
                Some(&rv),
                Some(&t[1]),
                Some(&t[2]),
                training,
                0.1,
                1e-5,
            )
        });
    }
}
