//! `examples/char_lm.rs` resumes to the bit: a tiny run of N steps ends with the same
//! parameters, losses, validation loss and sample as a run stopped after N/2 steps and
//! resumed from its checkpoint for the rest (with dropout and gradient accumulation on,
//! so the generator position and the per-step batches must both be restored).

#[allow(dead_code)]
#[path = "../examples/char_lm.rs"]
mod char_lm;

use char_lm::{lr_at, run, Args};

fn tiny(out: &str) -> Args {
    Args {
        layers: 1,
        heads: 2,
        width: 16,
        context: 16,
        batch: 4,
        steps: 6,
        warmup: 2,
        accum: 2,
        dropout: 0.1,
        threads: 1,
        eval_every: 3,
        eval_batches: 1,
        final_eval_windows: 8,
        generate: 20,
        out: out.to_string(),
        progress_secs: 0.0,
        ..Args::default()
    }
}

#[test]
fn stopping_and_resuming_is_bit_identical_to_not_stopping() {
    let dir = std::env::temp_dir().join(format!("tapegrad_char_lm_{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();

    let straight = run(&tiny(&path("straight.ckpt"))).unwrap();
    let first_half = run(&Args {
        stop_after: Some(3),
        ..tiny(&path("half.ckpt"))
    })
    .unwrap();
    let resumed = run(&Args {
        resume: Some(path("half.ckpt")),
        ..tiny(&path("resumed.ckpt"))
    })
    .unwrap();
    std::fs::remove_dir_all(&dir).ok();

    assert_eq!(straight.losses.len(), 6);
    assert_eq!(first_half.losses, straight.losses[..3]);
    assert_eq!(resumed.losses, straight.losses[3..]);
    assert!(
        resumed.param_bits == straight.param_bits,
        "parameters differ after resuming"
    );
    assert_eq!(resumed.val_loss.to_bits(), straight.val_loss.to_bits());
    assert_eq!(resumed.sample, straight.sample);
    // The run learned something and stayed finite.
    assert!(straight.losses.iter().all(|(_, l)| l.is_finite()));
    assert!(straight.val_loss.is_finite() && straight.val_loss < 67f32.ln() + 0.5);
}

#[test]
fn schedule_warms_up_linearly_then_decays_to_the_floor() {
    let a = Args {
        steps: 100,
        warmup: 10,
        lr: 1e-3,
        min_lr: 1e-4,
        ..Args::default()
    };
    assert!((lr_at(&a, 0) - 1e-4).abs() < 1e-12);
    assert!((lr_at(&a, 9) - 1e-3).abs() < 1e-12);
    assert!((lr_at(&a, 10) - 1e-3).abs() < 1e-12);
    assert!((lr_at(&a, 55) - 5.5e-4).abs() < 1e-9);
    assert!(lr_at(&a, 99) > 1e-4 && lr_at(&a, 99) < 1.01e-4);
    assert!((1..100).all(|s| s <= 10 || lr_at(&a, s) <= lr_at(&a, s - 1)));
}

#[test]
fn flags_parse_and_reject_nonsense() {
    let argv: Vec<String> = ["--layers", "2", "--lr", "5e-4", "--resume", "x.ckpt"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let a = Args::parse(&argv).unwrap();
    assert_eq!(
        (a.layers, a.lr, a.resume.as_deref()),
        (2, 5e-4, Some("x.ckpt"))
    );
    for bad in [
        &["--layers"][..],
        &["--bogus", "1"],
        &["--steps", "ten"],
        &["--accum", "0"],
    ] {
        let argv: Vec<String> = bad.iter().map(|s| s.to_string()).collect();
        assert!(Args::parse(&argv).is_err(), "{bad:?}");
    }
}
