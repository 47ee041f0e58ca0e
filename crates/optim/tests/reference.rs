//! Every optimizer, scheduler and clipping case in `tools/reference/optim_reference.json`
//! (written by `optim_reference.py` with torch) replayed with tapegrad and compared.

use serde_json::Value;
use tapegrad_autograd::Tensor;
use tapegrad_optim::*;

#[path = "../../../tests/support/reference.rs"]
mod reference;
use reference::{floats, tensor};

/// The tolerance of the brief: |a − b| ≤ 1e-6 + 1e-5·|b|.
fn close(actual: &[f32], expected: &[f32], what: &str) {
    reference::assert_slices_close(what, actual, expected, 1e-6, 1e-5);
}

const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tools/reference/optim_reference.json"
);

fn reference() -> Value {
    let text = std::fs::read_to_string(REFERENCE).expect("reference JSON is readable");
    serde_json::from_str(&text).expect("reference JSON parses")
}

fn num(cfg: &Value, key: &str, default: f64) -> f64 {
    cfg.get(key)
        .map_or(default, |v| v.as_f64().expect("a number"))
}

fn flag(cfg: &Value, key: &str) -> bool {
    cfg.get(key).is_some_and(|v| v.as_bool().expect("a bool"))
}

fn betas(cfg: &Value) -> (f64, f64) {
    // At full f64 precision: PyTorch computes 1 − β and βᵗ from the Python floats.
    let raw = cfg["betas"].as_array().expect("betas");
    assert_eq!(raw.len(), 2);
    (
        raw[0].as_f64().expect("beta1"),
        raw[1].as_f64().expect("beta2"),
    )
}

fn build(kind: &str, cfg: &Value, params: Vec<Tensor>) -> Box<dyn Optimizer> {
    // Options tapegrad does not implement must be off in the reference.
    assert!(!flag(cfg, "maximize"), "maximize is not supported");
    assert!(!flag(cfg, "decoupled_weight_decay"), "use AdamW instead");
    let lr = num(cfg, "lr", f64::NAN);
    match kind {
        "GradientDescent" => {
            Box::new(GradientDescent::new(params, GradientDescentConfig { lr }).unwrap())
        }
        "SGD" => Box::new(
            Sgd::new(
                params,
                SgdConfig {
                    lr,
                    momentum: num(cfg, "momentum", 0.0),
                    dampening: num(cfg, "dampening", 0.0),
                    weight_decay: num(cfg, "weight_decay", 0.0),
                    nesterov: flag(cfg, "nesterov"),
                },
            )
            .unwrap(),
        ),
        "Adam" => Box::new(
            Adam::new(
                params,
                AdamConfig {
                    lr,
                    betas: betas(cfg),
                    eps: num(cfg, "eps", 1e-8),
                    weight_decay: num(cfg, "weight_decay", 0.0),
                    amsgrad: flag(cfg, "amsgrad"),
                },
            )
            .unwrap(),
        ),
        "AdamW" => Box::new(
            AdamW::new(
                params,
                AdamWConfig {
                    lr,
                    betas: betas(cfg),
                    eps: num(cfg, "eps", 1e-8),
                    weight_decay: num(cfg, "weight_decay", 0.01),
                    amsgrad: flag(cfg, "amsgrad"),
                },
            )
            .unwrap(),
        ),
        "RMSprop" => Box::new(
            RMSprop::new(
                params,
                RMSpropConfig {
                    lr,
                    alpha: num(cfg, "alpha", 0.99),
                    eps: num(cfg, "eps", 1e-8),
                    weight_decay: num(cfg, "weight_decay", 0.0),
                    momentum: num(cfg, "momentum", 0.0),
                    centered: flag(cfg, "centered"),
                },
            )
            .unwrap(),
        ),
        "Adagrad" => Box::new(
            Adagrad::new(
                params,
                AdagradConfig {
                    lr,
                    lr_decay: num(cfg, "lr_decay", 0.0),
                    weight_decay: num(cfg, "weight_decay", 0.0),
                    initial_accumulator_value: num(cfg, "initial_accumulator_value", 0.0),
                    eps: num(cfg, "eps", 1e-10),
                },
            )
            .unwrap(),
        ),
        other => panic!("unknown optimizer {other} in the reference"),
    }
}

#[test]
fn optimizers_match_pytorch() {
    let r = reference();
    let (x, y) = (tensor(&r["x"]), tensor(&r["y"]));
    let cases = r["cases"].as_array().expect("cases");
    let mut checked = 0;
    let mut bit_exact = 0;
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let w = tensor(&r["w0"]).with_requires_grad(true);
        let b = tensor(&r["b0"]).with_requires_grad(true);
        let kind = case["optimizer"].as_str().expect("optimizer");
        let mut opt = build(kind, &case["config"], vec![w.clone(), b.clone()]);
        assert_eq!(opt.kind(), kind);
        let losses = floats(&case["losses"]);
        let (ws, bs) = (case["w"].as_array().unwrap(), case["b"].as_array().unwrap());
        assert_eq!((losses.len(), ws.len(), bs.len()), (10, 10, 10), "{name}");
        let mut exact = true;
        for step in 0..10 {
            opt.zero_grad();
            let loss = x.linear(&w, Some(&b)).sub(&y).pow(2.0).mean();
            loss.backward();
            opt.step();
            let (w_ref, b_ref) = (floats(&ws[step]), floats(&bs[step]));
            close(
                &[loss.item()],
                &[losses[step]],
                &format!("{name} loss {step}"),
            );
            close(&w.to_vec(), &w_ref, &format!("{name} w after step {step}"));
            close(&b.to_vec(), &b_ref, &format!("{name} b after step {step}"));
            exact &= loss.item() == losses[step] && w.to_vec() == w_ref && b.to_vec() == b_ref;
        }
        bit_exact += usize::from(exact);
        checked += 1;
    }
    println!("{checked} optimizer cases match, {bit_exact} of them bit for bit");
    assert_eq!(checked, cases.len());
    assert_eq!(checked, 19, "the reference has 19 optimizer cases");
}

#[test]
fn schedulers_match_pytorch() {
    let r = reference();
    let cases = r["schedulers"].as_array().expect("schedulers");
    let mut checked = 0;
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let cfg = &case["config"];
        assert_eq!(
            cfg["last_epoch"].as_i64(),
            Some(-1),
            "{name}: resuming is not replayed"
        );
        let base_lr = case["base_lr"].as_f64().expect("base_lr");
        let p = Tensor::zeros(&[1]).with_requires_grad(true);
        let config = SgdConfig {
            lr: base_lr,
            ..Default::default()
        };
        let mut opt = Sgd::new(vec![p], config).unwrap();
        let int = |k: &str| cfg[k].as_u64().expect("an integer");
        let mut sched: Box<dyn LrScheduler> = match case["scheduler"].as_str().expect("kind") {
            "StepLR" => {
                Box::new(StepLr::new(&mut opt, int("step_size"), num(cfg, "gamma", 0.1)).unwrap())
            }
            "ExponentialLR" => Box::new(ExponentialLr::new(&mut opt, num(cfg, "gamma", f64::NAN))),
            "CosineAnnealingLR" => Box::new(
                CosineAnnealingLr::new(&mut opt, int("T_max"), num(cfg, "eta_min", 0.0)).unwrap(),
            ),
            "LinearLR" => Box::new(
                LinearLr::new(
                    &mut opt,
                    num(cfg, "start_factor", 1.0 / 3.0),
                    num(cfg, "end_factor", 1.0),
                    int("total_iters"),
                )
                .unwrap(),
            ),
            other => panic!("unknown scheduler {other}"),
        };
        let expected: Vec<f64> = case["lrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert_eq!(expected.len(), 21, "{name}");
        let mut got = vec![sched.last_lr()];
        for _ in 0..20 {
            opt.step();
            sched.step(&mut opt);
            assert_eq!(
                sched.last_lr(),
                opt.lr(),
                "{name}: the optimizer got the new lr"
            );
            got.push(sched.last_lr());
        }
        assert_eq!(sched.last_epoch(), 20);
        for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
            assert!(
                (g - e).abs() <= 1e-9 * e.abs(),
                "{name} lr {i}: got {g}, PyTorch {e}"
            );
        }
        checked += 1;
    }
    assert_eq!(checked, cases.len());
    assert_eq!(checked, 6, "the reference has 6 scheduler cases");
}

#[test]
fn clipping_matches_pytorch() {
    let r = reference();
    let cases = r["clipping"].as_array().expect("clipping");
    let mut checked = 0;
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let w = tensor(&r["w0"]);
        let b = tensor(&r["b0"]);
        let before = &case["grads_before"];
        w.set_grad(Some(
            &Tensor::from_vec(floats(&before["w"]), &[3, 2]).unwrap(),
        ))
        .unwrap();
        b.set_grad(Some(&Tensor::from_vec(floats(&before["b"]), &[3]).unwrap()))
            .unwrap();
        let params = [w.clone(), b.clone()];
        let cfg = &case["config"];
        match case["function"].as_str().expect("function") {
            "clip_grad_norm_" => {
                let norm = clip_grad_norm(
                    &params,
                    num(cfg, "max_norm", f64::NAN) as f32,
                    num(cfg, "norm_type", 2.0) as f32,
                );
                close(
                    &[norm],
                    &[case["total_norm"].as_f64().unwrap() as f32],
                    &format!("{name} total norm"),
                );
            }
            "clip_grad_value_" => clip_grad_value(&params, num(cfg, "clip_value", f64::NAN) as f32),
            other => panic!("unknown clipping function {other}"),
        }
        let after = &case["grads_after"];
        close(
            &w.grad().unwrap().to_vec(),
            &floats(&after["w"]),
            &format!("{name} w grad"),
        );
        close(
            &b.grad().unwrap().to_vec(),
            &floats(&after["b"]),
            &format!("{name} b grad"),
        );
        checked += 1;
    }
    assert_eq!(checked, cases.len());
    assert_eq!(checked, 2, "the reference has 2 clipping cases");
}
