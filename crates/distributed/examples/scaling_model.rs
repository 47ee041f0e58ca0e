//! Projects data-parallel step time and scaling efficiency from one-machine measurements
//! with the α-β ring all-reduce model (`tapegrad_distributed::cost_model`); prints the
//! markdown tables of `docs/distributed.md`. Needs no MPI.
//!
//! `cargo run -p tapegrad-distributed --example scaling_model -- PER_SAMPLE_S FIXED_S`
//! where a one-process step on a batch of b samples took `FIXED_S + b·PER_SAMPLE_S`
//! seconds for W2 (defaults: this machine's figures in the doc).

use tapegrad_distributed::cost_model::{AlphaBeta, StepModel};

/// W2's parameters: 784·512 + 512 + 512·512 + 512 + 512·10 + 10.
const W2_PARAMS: f64 = 669_706.0;
/// The larger model: 25 M parameters (a ResNet-50's count, as a wide MLP).
const BIG_PARAMS: f64 = 25_000_000.0;
/// Latency per message on an Ethernet link with MPI over TCP (an assumption; shared
/// memory on this machine measures far less).
const LINK_LATENCY: f64 = 30e-6;

fn main() {
    let args: Vec<f64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: PER_SAMPLE_S FIXED_S"))
        .collect();
    let per_sample = args.first().copied().unwrap_or(20e-6);
    let fixed = args.get(1).copied().unwrap_or(1.0e-3);
    let w2 = StepModel {
        per_sample,
        fixed,
        // Backward does about two thirds of a dense network's forward + backward FLOPs.
        backward_share: 2.0 / 3.0,
        grad_bytes: W2_PARAMS * 4.0,
    };
    // An MLP's FLOPs per sample and its optimizer update both grow with the parameters.
    let scale = BIG_PARAMS / W2_PARAMS;
    let big = StepModel {
        per_sample: per_sample * scale,
        fixed: fixed * scale,
        backward_share: 2.0 / 3.0,
        grad_bytes: BIG_PARAMS * 4.0,
    };
    // What cannot overlap is the bucket backward finishes last, the first layer's: for W2
    // fc1 (401 920 of 669 706 parameters; one tensor is never split over buckets), for
    // the larger model one 25 MiB bucket.
    table(
        "W2 (0.67 M parameters), global batch 256",
        &w2,
        256,
        401_920.0 / W2_PARAMS,
    );
    let last = 25.0 * 1024.0 * 1024.0 / big.grad_bytes;
    table("25 M parameters, global batch 1024", &big, 1024, last);
}

fn table(title: &str, model: &StepModel, global_batch: usize, last: f64) {
    let links = [10.0, 25.0, 100.0];
    println!("\n{title}: step ms (scaling efficiency), without / with overlap\n");
    print!("| nodes |");
    for gbps in links {
        print!(" {gbps} Gb/s |");
    }
    println!();
    println!("| --- |{}", " --- |".repeat(links.len()));
    for n in [1usize, 2, 4, 8, 16, 32, 64] {
        print!("| {n} |");
        for gbps in links {
            let link = AlphaBeta::link(gbps, LINK_LATENCY);
            let plain = model.project(&link, n, global_batch, false, last);
            let hidden = model.project(&link, n, global_batch, true, last);
            print!(
                " {:.2} ({:.0}%) / {:.2} ({:.0}%) |",
                plain.step * 1e3,
                plain.efficiency * 100.0,
                hidden.step * 1e3,
                hidden.efficiency * 100.0
            );
        }
        println!();
    }
}
