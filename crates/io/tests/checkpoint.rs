//! Checkpoints: resuming in a fresh process is bit-identical (with Dropout drawing from
//! the default generator); a save killed at any
//! moment leaves the previous checkpoint loadable; no byte string makes the decoder
//! panic.
//!
//! The "fresh process" and the "killed saver" are this test binary run again with an
//! environment variable naming the role (see `child_*` below).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tapegrad_autograd::Tensor;
use tapegrad_data::{DataLoader, TensorDataset};
use tapegrad_io::{format, Checkpoint, IoError, SchedulerState};
use tapegrad_losses::MseLoss;
use tapegrad_nn::{Dropout, Linear, Module, Relu, Sequential};
use tapegrad_optim::{Adam, AdamConfig, LrScheduler, Optimizer, Sgd, SgdConfig, StepLr};

const STEPS: usize = 23;
const SAVE_AT: usize = 9;

/// A small regression run: model, optimizer, scheduler and a shuffling loader.
struct Run {
    model: Sequential,
    optimizer: Box<dyn Optimizer>,
    scheduler: StepLr,
    loader: DataLoader,
    step: usize,
}

impl Run {
    fn new(kind: &str, init_seed: u64) -> Run {
        let mut rng = StdRng::seed_from_u64(init_seed);
        // Dropout draws from the default generator, which the checkpoint must carry.
        tapegrad_autograd::manual_seed(init_seed + 1000);
        let model = Sequential::new()
            .add(Linear::new_with_rng(4, 8, &mut rng).unwrap())
            .add(Relu)
            .add(Dropout::new(0.3).unwrap())
            .add(Linear::new_with_rng(8, 1, &mut rng).unwrap());
        let mut optimizer: Box<dyn Optimizer> = match kind {
            "sgd" => Box::new(
                Sgd::new(
                    model.parameters(),
                    SgdConfig {
                        lr: 0.05,
                        momentum: 0.9,
                        ..Default::default()
                    },
                )
                .unwrap(),
            ),
            _ => Box::new(
                Adam::new(
                    model.parameters(),
                    AdamConfig {
                        lr: 0.01,
                        ..Default::default()
                    },
                )
                .unwrap(),
            ),
        };
        let scheduler = StepLr::new(optimizer.as_mut(), 4, 0.7).unwrap();
        // The data never changes: seed 99 whatever the model's seed.
        let mut data_rng = StdRng::seed_from_u64(99);
        let x = Tensor::normal(&[37, 4], 0.0, 1.0, &mut data_rng).unwrap();
        let y = Tensor::normal(&[37, 1], 0.0, 1.0, &mut data_rng).unwrap();
        let loader = DataLoader::new(TensorDataset::new(x, y).unwrap(), 8)
            .unwrap()
            .shuffle(5);
        Run {
            model,
            optimizer,
            scheduler,
            loader,
            step: 0,
        }
    }

    fn train_until(&mut self, steps: usize) {
        while self.step < steps {
            let mut epoch = self.loader.epoch();
            for batch in epoch.by_ref() {
                self.optimizer.zero_grad();
                MseLoss::new()
                    .forward(&self.model.forward(&batch.x), &batch.y)
                    .backward();
                self.optimizer.step();
                self.step += 1;
                if self.step % 3 == 0 {
                    self.scheduler.step(self.optimizer.as_mut());
                }
                if self.step == steps {
                    return;
                }
            }
        }
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint::new(&self.model)
            .with_optimizer(self.optimizer.as_ref())
            .with_scheduler(self.scheduler.clone())
            .with_loader(&self.loader)
            .with_counters(0, self.step as u64)
    }

    fn restore(&mut self, ckpt: &Checkpoint) {
        ckpt.restore_model(&self.model).unwrap();
        ckpt.restore_optimizer(self.optimizer.as_mut()).unwrap();
        ckpt.restore_loader(&mut self.loader).unwrap();
        let Some(SchedulerState::StepLr(s)) = &ckpt.scheduler else {
            panic!("a StepLr was saved")
        };
        self.scheduler = s.clone();
        self.step = ckpt.step as usize;
    }

    /// Every parameter's bits, in order.
    fn bits(&self) -> Vec<u32> {
        self.model
            .parameters()
            .iter()
            .flat_map(|p| p.to_vec())
            .map(f32::to_bits)
            .collect()
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tapegrad-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn this_test_binary(test: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", test, "--ignored", "--test-threads", "1"]);
    cmd.stdout(std::process::Stdio::null());
    cmd
}

/// Role of the fresh process: load the checkpoint, finish the run, write the bits.
#[test]
#[ignore = "runs only as the child of resume_in_a_fresh_process_is_bit_identical"]
fn child_resume() {
    let (Ok(kind), Ok(ckpt), Ok(out)) = (
        std::env::var("RESUME_KIND"),
        std::env::var("RESUME_CHECKPOINT"),
        std::env::var("RESUME_OUT"),
    ) else {
        return;
    };
    // A different initialisation seed: everything must come from the checkpoint.
    let mut run = Run::new(&kind, 12345);
    run.restore(&Checkpoint::load(&ckpt).unwrap());
    run.train_until(STEPS);
    let bytes: Vec<u8> = run.bits().iter().flat_map(|b| b.to_le_bytes()).collect();
    std::fs::write(out, bytes).unwrap();
}

#[test]
fn resume_in_a_fresh_process_is_bit_identical() {
    let dir = temp_dir("resume");
    for kind in ["sgd", "adam"] {
        let mut whole = Run::new(kind, 1);
        whole.train_until(STEPS);

        let mut first = Run::new(kind, 1);
        first.train_until(SAVE_AT);
        let path = dir.join(format!("{kind}.ckpt"));
        first.checkpoint().save(&path).unwrap();

        let out = dir.join(format!("{kind}.bits"));
        let status = this_test_binary("child_resume")
            .env("RESUME_KIND", kind)
            .env("RESUME_CHECKPOINT", &path)
            .env("RESUME_OUT", &out)
            .status()
            .unwrap();
        assert!(status.success());
        let resumed: Vec<u32> = std::fs::read(&out)
            .unwrap()
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        assert_eq!(
            resumed,
            whole.bits(),
            "{kind}: resumed run differs from the uninterrupted one"
        );

        // And in this process too, continuing the saved run object itself.
        first.train_until(STEPS);
        assert_eq!(first.bits(), whole.bits());
    }
}

/// A model big enough that a save takes a while, so kills land mid-write.
fn big_model() -> Sequential {
    let mut rng = StdRng::seed_from_u64(7);
    Sequential::new().add(Linear::new_with_rng(256, 512, &mut rng).unwrap())
}

/// Role of the killed process: save checkpoints in a loop, counting up, forever.
#[test]
#[ignore = "runs only as the child of a_save_killed_at_any_moment_leaves_the_last_checkpoint"]
fn child_save_forever() {
    let Ok(path) = std::env::var("SAVE_FOREVER") else {
        return;
    };
    let model = big_model();
    let mut step = Checkpoint::load(&path).map_or(0, |c| c.step);
    loop {
        step += 1;
        Checkpoint::new(&model)
            .with_counters(0, step)
            .save(&path)
            .unwrap();
    }
}

#[test]
fn a_save_killed_at_any_moment_leaves_the_last_checkpoint() {
    let dir = temp_dir("kill");
    let path = dir.join("run.ckpt");
    let expected = Checkpoint::new(&big_model());
    expected.save(&path).unwrap();
    let mut rng = StdRng::seed_from_u64(3);
    let mut last_step = 0;
    for round in 0..40 {
        let mut child = this_test_binary("child_save_forever")
            .env("SAVE_FOREVER", &path)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(20..120)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let loaded = Checkpoint::load(&path).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_eq!(loaded.model, expected.model, "round {round}");
        assert!(
            loaded.step >= last_step,
            "round {round}: went back from {last_step} to {}",
            loaded.step
        );
        last_step = loaded.step;
    }
    assert!(last_step > 0, "the children never completed a save");
    remove_stale_temporaries(&dir);
}

/// Temporaries of killed saves stay behind (a save never deletes another process's
/// file); the test cleans its own.
fn remove_stale_temporaries(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.file_name().to_string_lossy().contains(".tmp-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[test]
fn thousands_of_random_and_mutated_files_are_errors_never_panics() {
    let mut run = Run::new("adam", 2);
    run.train_until(5);
    let valid = run.checkpoint().to_bytes().unwrap();
    assert_eq!(Checkpoint::from_bytes(&valid).unwrap(), run.checkpoint());
    let mut rng = StdRng::seed_from_u64(11);
    let (mut rejected, mut decoded) = (0, 0);
    for i in 0..4000 {
        let bytes: Vec<u8> = match i % 5 {
            // Random garbage.
            0 => (0..rng.random_range(0..300))
                .map(|_| rng.random())
                .collect(),
            // Truncated at a random point.
            1 => valid[..rng.random_range(0..valid.len())].to_vec(),
            // A few flipped bytes anywhere (the checksum or header catches them).
            2 => {
                let mut b = valid.clone();
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..b.len());
                    b[at] ^= rng.random_range(1..=255u8);
                }
                b
            }
            // Payload damage with a recomputed checksum: the decoder itself must cope,
            // including with absurd length prefixes.
            3 => {
                let mut payload = valid[28..].to_vec();
                for _ in 0..rng.random_range(1..6) {
                    let at = rng.random_range(0..payload.len());
                    payload[at] = rng.random();
                }
                if rng.random_bool(0.5) {
                    payload.truncate(rng.random_range(0..payload.len()));
                }
                rewrap(&valid, &payload)
            }
            // Valid header, random payload.
            _ => {
                let payload: Vec<u8> = (0..rng.random_range(0..200))
                    .map(|_| rng.random())
                    .collect();
                rewrap(&valid, &payload)
            }
        };
        match Checkpoint::from_bytes(&bytes) {
            Err(_) => rejected += 1,
            // Only a payload edit that happens to stay well-formed decodes.
            Ok(_) => {
                assert!(i % 5 == 3, "case {i} decoded from damaged bytes");
                decoded += 1;
            }
        }
    }
    // Every case outside the payload edits was rejected (asserted above), and those
    // edits that land in float bytes legitimately decode.
    assert!(rejected >= 3200, "rejected {rejected}, decoded {decoded}");
}

/// `valid`'s header around another payload, with its length and checksum fixed up.
fn rewrap(valid: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut b = valid[..12].to_vec();
    b.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let sum = payload.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x0100_0000_01b3)
    });
    b.extend_from_slice(&sum.to_le_bytes());
    b.extend_from_slice(payload);
    b
}

#[test]
fn errors_say_what_is_wrong() {
    let dir = temp_dir("errors");
    let missing = Checkpoint::load(dir.join("nope.ckpt")).unwrap_err();
    assert!(matches!(missing, IoError::Io { .. }), "{missing}");
    let valid = Checkpoint::new(&big_model()).to_bytes().unwrap();
    let truncated = Checkpoint::from_bytes(&valid[..valid.len() - 1]).unwrap_err();
    assert!(truncated.to_string().contains("truncated"), "{truncated}");
    let mut version = valid.clone();
    version[8..12].copy_from_slice(&7u32.to_le_bytes());
    assert!(Checkpoint::from_bytes(&version)
        .unwrap_err()
        .to_string()
        .contains("version 7"));
    assert_eq!(
        Checkpoint::from_bytes(b"hello").unwrap_err(),
        IoError::BadMagic
    );
    assert!(format::decode::<Checkpoint>(&[]).is_err());

    // Restoring into the wrong optimizer kind or model shape is an error, not a panic.
    let mut run = Run::new("sgd", 1);
    run.train_until(2);
    let ckpt = run.checkpoint();
    let mut adam = Run::new("adam", 1);
    assert!(ckpt.restore_optimizer(adam.optimizer.as_mut()).is_err());
    assert!(ckpt.restore_model(&big_model()).is_err());
}

#[test]
fn write_fuzz_seed_corpus_when_asked() {
    // `FUZZ_CORPUS=dir cargo test -p tapegrad-io --test checkpoint write_fuzz` writes a
    // valid checkpoint's payload as a starting point for `cargo fuzz`.
    let Ok(dir) = std::env::var("FUZZ_CORPUS") else {
        return;
    };
    let mut run = Run::new("adam", 2);
    run.train_until(3);
    let bytes = run.checkpoint().to_bytes().unwrap();
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(Path::new(&dir).join("valid_payload"), &bytes[28..]).unwrap();
    std::fs::write(Path::new(&dir).join("valid_file"), &bytes).unwrap();
}
