//! The program the MPI integration tests (`tests/mpi.rs`) and the measurements launch
//! under `mpirun`. Not a user-facing tool.
//!
//! `mpi-worker train [--optimizer sgd|adam] [--steps N] [--ordered] [--save-at STEP FILE]
//!  [--resume FILE] [--fail RANK STEP panic|kill|error] [--out FILE]` runs the test job and
//! writes rank 0's final parameters as hexadecimal bit patterns, one per line.
//!
//! `mpi-worker bench-allreduce ELEMENTS REPEATS` times all-reduces of that many f32s;
//! `mpi-worker bench-w2 GLOBAL_BATCH STEPS` times data-parallel steps of W2's network.

mod bench;
#[path = "../../../tests/common/scenario.rs"]
mod scenario;

use std::error::Error;
use std::path::PathBuf;

use scenario::{Failure, Job};
use tapegrad_distributed::{run, Communicator};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    run(|world| match args.first().map(String::as_str) {
        Some("train") => train(world, &args[1..]),
        Some("bench-allreduce") => bench::all_reduce(world, &args[1..]),
        Some("bench-w2") => bench::w2(world, &args[1..]),
        other => Err(format!("unknown mode {other:?}").into()),
    });
}

fn train(world: &tapegrad_distributed::World, args: &[String]) -> Result<(), Box<dyn Error>> {
    let mut job = Job::new("adam", 20);
    let mut out = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--optimizer" => job.optimizer = value()?,
            "--steps" => job.steps = value()?.parse()?,
            "--ordered" => job.ordered = true,
            "--save-at" => {
                let step = value()?.parse()?;
                job.save_at = Some((step, PathBuf::from(value()?)));
            }
            "--resume" => job.resume = Some(PathBuf::from(value()?)),
            "--fail" => {
                let rank = value()?.parse()?;
                let step = value()?.parse()?;
                let how = match value()?.as_str() {
                    "panic" => Failure::Panic,
                    "kill" => Failure::Kill,
                    "error" => Failure::Error,
                    other => return Err(format!("unknown failure {other}").into()),
                };
                job.fail = Some((rank, step, how));
            }
            "--out" => out = Some(PathBuf::from(value()?)),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let params = scenario::train(world, &job)?;
    if world.rank() == 0 {
        println!("trained {} steps on {} ranks", job.steps, world.size());
        if let Some(out) = out {
            let text: String = params
                .iter()
                .map(|v| format!("{:08x}\n", v.to_bits()))
                .collect();
            std::fs::write(out, text)?;
        }
    }
    Ok(())
}
