//! Parameter groups and the SequentialLR / OneCycleLR / LambdaLR / ReduceLROnPlateau
//! schedulers against `tools/reference/optim_groups_reference.json` (written by
//! `optim_groups_reference.py` with torch).

use serde_json::Value;
use tapegrad_autograd::Tensor;
use tapegrad_optim::*;

mod common;
use common::params;

#[path = "../../../tests/support/reference.rs"]
mod reference;
use reference::{f64s, floats};

/// The tolerance of the brief: |a − b| ≤ 1e-6 + 1e-5·|b|.
fn close(actual: &[f32], expected: &[f32], what: &str) {
    reference::assert_slices_close(what, actual, expected, 1e-6, 1e-5);
}

const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tools/reference/optim_groups_reference.json"
);

fn reference() -> Value {
    let text = std::fs::read_to_string(REFERENCE).expect("reference JSON is readable");
    serde_json::from_str(&text).expect("reference JSON parses")
}

/// Learning rates and momenta are f64 on both sides: equal to 1e-12 relative.
fn close64(actual: &[f64], expected: &[f64], what: &str) {
    assert_eq!(actual.len(), expected.len(), "{what}: length");
    for (i, (&a, &b)) in actual.iter().zip(expected).enumerate() {
        assert!(
            (a - b).abs() <= 1e-12 * b.abs().max(1e-300),
            "{what}[{i}]: got {a}, PyTorch {b}"
        );
    }
}

fn num(cfg: &Value, key: &str) -> f64 {
    cfg[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} is a number"))
}

fn flag(cfg: &Value, key: &str) -> bool {
    cfg[key]
        .as_bool()
        .unwrap_or_else(|| panic!("{key} is a bool"))
}

fn int(cfg: &Value, key: &str) -> u64 {
    cfg[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is an integer"))
}

fn betas(cfg: &Value) -> (f64, f64) {
    let b = f64s(&cfg["betas"]);
    (b[0], b[1])
}

fn adam(cfg: &Value) -> AdamConfig {
    AdamConfig {
        lr: num(cfg, "lr"),
        betas: betas(cfg),
        eps: num(cfg, "eps"),
        weight_decay: num(cfg, "weight_decay"),
        amsgrad: flag(cfg, "amsgrad"),
    }
}

fn adamw(cfg: &Value) -> AdamWConfig {
    let a = adam(cfg);
    AdamWConfig {
        lr: a.lr,
        betas: a.betas,
        eps: a.eps,
        weight_decay: a.weight_decay,
        amsgrad: a.amsgrad,
    }
}

/// The optimizer of `kind` with one group per (config, parameter) pair.
fn build(kind: &str, cfgs: &[Value], params: &[Tensor]) -> Box<dyn Optimizer> {
    fn groups<C>(cfgs: &[Value], params: &[Tensor], f: impl Fn(&Value) -> C) -> Vec<ParamGroup<C>> {
        cfgs.iter()
            .zip(params)
            .map(|(c, p)| ParamGroup::new(vec![p.clone()], f(c)))
            .collect()
    }
    match kind {
        "GradientDescent" => Box::new(
            GradientDescent::with_groups(groups(cfgs, params, |c| GradientDescentConfig {
                lr: num(c, "lr"),
            }))
            .unwrap(),
        ),
        "SGD" => Box::new(
            Sgd::with_groups(groups(cfgs, params, |c| SgdConfig {
                lr: num(c, "lr"),
                momentum: num(c, "momentum"),
                dampening: num(c, "dampening"),
                weight_decay: num(c, "weight_decay"),
                nesterov: flag(c, "nesterov"),
            }))
            .unwrap(),
        ),
        "Adam" => Box::new(Adam::with_groups(groups(cfgs, params, adam)).unwrap()),
        "AdamW" => Box::new(AdamW::with_groups(groups(cfgs, params, adamw)).unwrap()),
        "RMSprop" => Box::new(
            RMSprop::with_groups(groups(cfgs, params, |c| RMSpropConfig {
                lr: num(c, "lr"),
                alpha: num(c, "alpha"),
                eps: num(c, "eps"),
                weight_decay: num(c, "weight_decay"),
                momentum: num(c, "momentum"),
                centered: flag(c, "centered"),
            }))
            .unwrap(),
        ),
        "Adagrad" => Box::new(
            Adagrad::with_groups(groups(cfgs, params, |c| AdagradConfig {
                lr: num(c, "lr"),
                lr_decay: num(c, "lr_decay"),
                weight_decay: num(c, "weight_decay"),
                initial_accumulator_value: num(c, "initial_accumulator_value"),
                eps: num(c, "eps"),
            }))
            .unwrap(),
        ),
        other => panic!("unknown optimizer {other}"),
    }
}

fn data(r: &Value) -> (Tensor, Tensor) {
    let _ = r;
    let x = Tensor::from_vec(vec![1.0, 2.0, -0.5, 0.3, 0.7, -1.2, 2.0, 0.5], &[4, 2]).unwrap();
    let y = Tensor::from_vec(
        vec![
            0.3, -1.0, 0.8, 0.0, 0.5, -0.2, 1.1, 0.2, 0.4, -0.7, 1.5, 0.9,
        ],
        &[4, 3],
    )
    .unwrap();
    (x, y)
}

#[test]
fn grouped_optimizers_match_pytorch() {
    let r = reference();
    let (x, y) = data(&r);
    let cases = r["group_cases"].as_array().expect("group cases");
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (w, b) = params();
        let cfgs = case["groups"].as_array().unwrap();
        let mut opt = build(
            case["optimizer"].as_str().unwrap(),
            cfgs,
            &[w.clone(), b.clone()],
        );
        assert_eq!(opt.num_groups(), 2, "{name}");
        assert!(opt.group_params(1)[0].same_storage(&b));
        let losses = floats(&case["losses"]);
        for step in 0..10 {
            opt.zero_grad();
            let loss = x.linear(&w, Some(&b)).sub(&y).pow(2.0).mean();
            loss.backward();
            opt.step();
            close(
                &[loss.item()],
                &[losses[step]],
                &format!("{name} loss {step}"),
            );
            close(
                &w.to_vec(),
                &floats(&case["w"][step]),
                &format!("{name} w {step}"),
            );
            close(
                &b.to_vec(),
                &floats(&case["b"][step]),
                &format!("{name} b {step}"),
            );
        }
    }
    assert_eq!(
        cases.len(),
        7,
        "one two-group case per optimizer, two for AdamW"
    );
}

/// The scheduler a reference case describes, built on `opt`.
enum Built {
    Epoch(Box<dyn LrScheduler>),
    Plateau(ReduceLrOnPlateau),
}

fn lambda(name: &str) -> LrLambda {
    match name {
        "saw" => Box::new(|e| 0.9f64.powf(e as f64) * (1 + e % 3) as f64),
        "inverse" => Box::new(|e| 1.0 / (e + 1) as f64),
        "pow" => Box::new(|e| 0.95f64.powf(e as f64)),
        other => panic!("unknown lambda {other}"),
    }
}

fn build_part(opt: &mut dyn Optimizer, kind: &str, c: &Value) -> Box<dyn LrScheduler> {
    match kind {
        "LinearLR" => Box::new(
            LinearLr::new(
                opt,
                num(c, "start_factor"),
                num(c, "end_factor"),
                int(c, "total_iters"),
            )
            .unwrap(),
        ),
        "CosineAnnealingLR" => {
            Box::new(CosineAnnealingLr::new(opt, int(c, "T_max"), num(c, "eta_min")).unwrap())
        }
        "ExponentialLR" => Box::new(ExponentialLr::new(opt, num(c, "gamma"))),
        "StepLR" => Box::new(StepLr::new(opt, int(c, "step_size"), num(c, "gamma")).unwrap()),
        other => panic!("unknown scheduler {other}"),
    }
}

fn build_scheduler(opt: &mut dyn Optimizer, kind: &str, c: &Value) -> Built {
    match kind {
        "SequentialLR" => {
            let parts = c["schedulers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| build_part(opt, p[0].as_str().unwrap(), &p[1]))
                .collect();
            let milestones = c["milestones"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_u64().unwrap())
                .collect();
            Built::Epoch(Box::new(SequentialLr::new(opt, parts, milestones).unwrap()))
        }
        "OneCycleLR" => {
            let mut config = OneCycleConfig::new(0.0, int(c, "total_steps"));
            config.max_lr = f64s(&c["max_lr"]);
            let get = |k: &str, d: f64| c.get(k).map_or(d, |v| v.as_f64().unwrap());
            config.pct_start = get("pct_start", config.pct_start);
            config.div_factor = get("div_factor", config.div_factor);
            config.final_div_factor = get("final_div_factor", config.final_div_factor);
            config.base_momentum = get("base_momentum", config.base_momentum);
            config.max_momentum = get("max_momentum", config.max_momentum);
            config.three_phase = c.get("three_phase").is_some_and(|v| v.as_bool().unwrap());
            config.cycle_momentum = c.get("cycle_momentum").is_none_or(|v| v.as_bool().unwrap());
            if c.get("anneal_strategy").is_some_and(|v| v == "linear") {
                config.anneal_strategy = AnnealStrategy::Linear;
            }
            Built::Epoch(Box::new(OneCycleLr::new(opt, config).unwrap()))
        }
        "LambdaLR" => {
            let names: Vec<&str> = c["lr_lambda"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap())
                .collect();
            if let [one] = names[..] {
                let f = lambda(one);
                Built::Epoch(Box::new(LambdaLr::new(opt, f)))
            } else {
                let fs = names.iter().map(|n| lambda(n)).collect();
                Built::Epoch(Box::new(LambdaLr::with_lambdas(opt, fs).unwrap()))
            }
        }
        "ReduceLROnPlateau" => {
            let config = ReduceLrOnPlateauConfig {
                mode: if c["mode"] == "min" {
                    PlateauMode::Min
                } else {
                    PlateauMode::Max
                },
                factor: num(c, "factor"),
                patience: int(c, "patience"),
                threshold: num(c, "threshold"),
                threshold_mode: if c["threshold_mode"] == "rel" {
                    ThresholdMode::Rel
                } else {
                    ThresholdMode::Abs
                },
                cooldown: int(c, "cooldown"),
                min_lr: f64s(&c["min_lr"]),
                eps: num(c, "eps"),
            };
            Built::Plateau(ReduceLrOnPlateau::new(opt, config).unwrap())
        }
        other => panic!("unknown scheduler {other}"),
    }
}

#[test]
fn schedulers_over_two_groups_match_pytorch() {
    let r = reference();
    let metrics = f64s(&r["metrics"]);
    let cases = r["schedulers"].as_array().expect("schedulers");
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let (w, b) = params();
        let lrs = f64s(&case["group_lrs"]);
        let mut opt: Box<dyn Optimizer> = if case["optimizer"] == "Adam" {
            let c = |lr| AdamConfig {
                lr,
                ..Default::default()
            };
            Box::new(
                Adam::with_groups(vec![
                    ParamGroup::new(vec![w], c(lrs[0])),
                    ParamGroup::new(vec![b], c(lrs[1])),
                ])
                .unwrap(),
            )
        } else {
            let c = |lr| SgdConfig {
                lr,
                momentum: 0.9,
                ..Default::default()
            };
            Box::new(
                Sgd::with_groups(vec![
                    ParamGroup::new(vec![w], c(lrs[0])),
                    ParamGroup::new(vec![b], c(lrs[1])),
                ])
                .unwrap(),
            )
        };
        let kind = case["scheduler"].as_str().unwrap();
        let mut sched = build_scheduler(opt.as_mut(), kind, &case["config"]);
        let expected_lrs = case["lrs"].as_array().unwrap();
        let expected_momenta = case["momentum"].as_array().unwrap();
        assert_eq!(expected_lrs.len(), 21, "{name}");
        for step in 0..=20 {
            if step > 0 {
                match &mut sched {
                    Built::Epoch(s) => s.step(opt.as_mut()),
                    Built::Plateau(p) => p.step(opt.as_mut(), metrics[step - 1]),
                }
            }
            let what = format!("{name} step {step}");
            close64(
                &opt.lrs(),
                &f64s(&expected_lrs[step]),
                &format!("{what} lrs"),
            );
            let momenta: Vec<f64> = (0..2).map(|g| opt.group_momentum(g).unwrap()).collect();
            close64(
                &momenta,
                &f64s(&expected_momenta[step]),
                &format!("{what} momentum"),
            );
            let last = match &sched {
                Built::Epoch(s) => s.last_lrs().to_vec(),
                Built::Plateau(p) => p.last_lrs().to_vec(),
            };
            assert_eq!(last, opt.lrs(), "{what}: last_lrs");
        }
    }
    assert_eq!(cases.len(), 11);
}

#[test]
fn adamw_groups_warmup_cosine_and_clipping_match_pytorch() {
    let r = reference();
    let (x, y) = data(&r);
    let case = &r["recipe"];
    let (w, b) = params();
    let cfgs = case["groups"].as_array().unwrap();
    let mut opt = AdamW::with_groups(vec![
        ParamGroup::new(vec![w.clone()], adamw(&cfgs[0])),
        ParamGroup::new(vec![b.clone()], adamw(&cfgs[1])),
    ])
    .unwrap();
    let (warm, cos) = (&case["warmup"], &case["cosine"]);
    let warmup = LinearLr::new(
        &mut opt,
        num(warm, "start_factor"),
        num(warm, "end_factor"),
        int(warm, "total_iters"),
    )
    .unwrap();
    let cosine = CosineAnnealingLr::new(&mut opt, int(cos, "T_max"), num(cos, "eta_min")).unwrap();
    let mut sched =
        SequentialLr::new(&mut opt, vec![Box::new(warmup), Box::new(cosine)], vec![3]).unwrap();
    let max_norm = num(case, "max_norm") as f32;
    for step in 0..10 {
        opt.zero_grad();
        let loss = x.linear(&w, Some(&b)).sub(&y).pow(2.0).mean();
        loss.backward();
        let norm = clip_grad_norm(opt.params(), max_norm, 2.0);
        let what = format!("step {step}");
        close(
            &[norm],
            &[floats(&case["grad_norms"])[step]],
            &format!("{what} norm"),
        );
        close64(
            &opt.lrs(),
            &f64s(&case["lrs_used"][step]),
            &format!("{what} lrs"),
        );
        opt.step();
        sched.step(&mut opt);
        close(
            &[loss.item()],
            &[floats(&case["losses"])[step]],
            &format!("{what} loss"),
        );
        close(&w.to_vec(), &floats(&case["w"][step]), &format!("{what} w"));
        close(&b.to_vec(), &floats(&case["b"][step]), &format!("{what} b"));
    }
}
