//! The distributed guarantees, each checked by launching the `mpi-worker` binary under
//! `mpirun` (so these tests need the `mpi` feature and Open MPI's launcher):
//! N-rank training matches one process, all ranks hold the same bits after every step
//! (the worker checks that itself and fails otherwise), runs repeat to the bit,
//! checkpoints resume on the same and on another number of ranks, the ordered reduction
//! is bit-identical whatever the number of ranks, and a failing rank ends the job.

#![cfg(feature = "mpi")]

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::scenario::{self, Job};
use tapegrad_distributed::SingleProcess;

/// MPI jobs busy-wait in their collectives: two at once on two cores crawl.
static ONE_JOB_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Finished {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

/// Runs `mpirun -np ranks mpi-worker args`, killing it after `timeout`.
fn mpirun(ranks: usize, args: &[&str], timeout: Duration) -> Finished {
    let _guard = ONE_JOB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let start = Instant::now();
    let mut child = Command::new("mpirun")
        .args([
            "--allow-run-as-root",
            "--oversubscribe",
            "--bind-to",
            "none",
        ])
        // Shared memory and loopback only; no single-copy (needs ptrace rights that
        // containers often lack).
        .args(["--mca", "btl", "self,vader,tcp"])
        .args(["--mca", "btl_vader_single_copy_mechanism", "none"])
        .args(["-np", &ranks.to_string(), env!("CARGO_BIN_EXE_mpi-worker")])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("mpirun must be installed to run the MPI tests (apt-get install openmpi-bin)");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).ok();
        s
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).ok();
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > timeout {
            child.kill().ok();
            child.wait().ok();
            panic!(
                "mpirun -np {ranks} {args:?} still running after {timeout:?}: the job hangs\n\
                 stdout:\n{}\nstderr:\n{}",
                out_reader.join().unwrap(),
                err_reader.join().unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Finished {
        success: status.success(),
        code: status.code(),
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
        elapsed: start.elapsed(),
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tapegrad-mpi-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Runs a training job on `ranks` ranks and returns rank 0's final parameters' bits.
fn train(ranks: usize, name: &str, extra: &[&str]) -> Vec<u32> {
    let out = scratch(&format!("{name}.params"));
    let mut args = vec!["train", "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    let done = mpirun(ranks, &args, Duration::from_secs(120));
    assert!(
        done.success,
        "mpirun -np {ranks} {args:?} failed ({:?})\nstdout:\n{}\nstderr:\n{}",
        done.code, done.stdout, done.stderr
    );
    read_bits(&out)
}

fn read_bits(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| u32::from_str_radix(l, 16).unwrap())
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn max_abs_diff(a: &[u32], b: &[u32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (f32::from_bits(x) - f32::from_bits(y)).abs())
        .fold(0.0, f32::max)
}

#[test]
fn n_ranks_match_one_process_for_sgd_momentum_and_adam() {
    for optimizer in ["sgd", "adam"] {
        let one = bits(&scenario::train(&SingleProcess, &Job::new(optimizer, 20)).unwrap());
        for ranks in [2, 3] {
            let name = format!("{optimizer}-{ranks}");
            let many = train(ranks, &name, &["--optimizer", optimizer, "--steps", "20"]);
            let diff = max_abs_diff(&one, &many);
            assert!(
                diff < 1e-4,
                "{optimizer} on {ranks} ranks differs from one process by {diff} after 20 steps"
            );
        }
    }
}

#[test]
fn two_runs_give_the_same_bits() {
    let args = ["--optimizer", "adam", "--steps", "20"];
    assert_eq!(train(2, "repeat-a", &args), train(2, "repeat-b", &args));
}

#[test]
fn a_checkpoint_resumes_bit_identically_on_as_many_ranks_and_closely_on_others() {
    let ckpt = scratch("resume.ckpt");
    let ckpt = ckpt.to_str().unwrap();
    let whole = train(2, "whole", &["--steps", "20"]);
    train(2, "first-half", &["--steps", "10", "--save-at", "10", ckpt]);
    let resumed = train(2, "second-half", &["--steps", "20", "--resume", ckpt]);
    assert_eq!(
        whole, resumed,
        "resuming on the same number of ranks must be exact"
    );
    let resharded = train(3, "resharded", &["--steps", "20", "--resume", ckpt]);
    let diff = max_abs_diff(&whole, &resharded);
    assert!(diff < 1e-4, "resuming on 3 ranks differs by {diff}");
    assert_ne!(whole, resharded, "3 ranks sum in another order than 2");
}

#[test]
fn the_ordered_reduction_is_bit_identical_on_any_number_of_ranks() {
    let mut job = Job::new("adam", 20);
    job.ordered = true;
    let one = bits(&scenario::train(&SingleProcess, &job).unwrap());
    let args = ["--ordered", "--steps", "20"];
    for ranks in [2, 3, 4] {
        assert_eq!(
            one,
            train(ranks, &format!("ordered-{ranks}"), &args),
            "{ranks} ranks"
        );
    }
    // And a checkpoint saved on 2 ranks resumes on 3 to the bit.
    let ckpt = scratch("ordered.ckpt");
    let ckpt = ckpt.to_str().unwrap();
    train(
        2,
        "ordered-first",
        &["--ordered", "--steps", "8", "--save-at", "8", ckpt],
    );
    let resumed = train(
        3,
        "ordered-resumed",
        &["--ordered", "--steps", "20", "--resume", ckpt],
    );
    assert_eq!(one, resumed);
}

/// Expects the job to end (within the timeout, so it did not hang) with a failure status
/// and our own messages. Open MPI's "MPI_ABORT was invoked" banner is not required: its
/// show_help relay sometimes loses it ("Data unpack would read past end of buffer").
fn assert_job_fails(ranks: usize, how: &str, expect: &[&str]) {
    let done = mpirun(
        ranks,
        &["train", "--steps", "20", "--fail", "1", "3", how],
        Duration::from_secs(60),
    );
    assert!(!done.success, "the job must fail when rank 1 fails ({how})");
    for text in expect {
        assert!(
            done.stderr.contains(text) || done.stdout.contains(text),
            "expected {text:?} in the output of a job whose rank 1 fails by {how} \
             (exit {:?}, {:?})\nstdout:\n{}\nstderr:\n{}",
            done.code,
            done.elapsed,
            done.stdout,
            done.stderr
        );
    }
}

#[test]
fn a_panicking_rank_aborts_the_job() {
    assert_job_fails(
        2,
        "panic",
        &[
            "fails on purpose at step 3",
            "rank 1 of 2 panicked; calling MPI_Abort",
        ],
    );
}

#[test]
fn a_rank_returning_an_error_aborts_the_job() {
    assert_job_fails(3, "error", &["rank 1 of 3 failed", "calling MPI_Abort"]);
}

#[test]
fn a_killed_rank_ends_the_job() {
    assert_job_fails(2, "kill", &["signal 9"]);
}
