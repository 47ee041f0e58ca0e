//! Results do not depend on the thread count: matrix products split work over output
//! blocks, never over the reduction, and every other reduction runs in a fixed order.
//! (Its own test binary, because the thread count is process-wide.)

mod common;

use common::Workload;
use tapegrad::autograd::set_num_threads;

fn train(make: fn() -> Workload, threads: usize, steps: usize) -> (Vec<u32>, Vec<u32>) {
    set_num_threads(threads);
    let mut w = make();
    let losses = (0..steps).map(|_| w.step().to_bits()).collect();
    (losses, w.bits())
}

/// A workload's name, constructor and number of steps.
type Case = (&'static str, fn() -> Workload, usize);

/// One test, so no other test changes the thread count under it. The convolution steps
/// (w4, w5) also split im2col, col2im, pooling and batch norm over planes.
#[test]
fn one_and_two_threads_train_bit_identically() {
    let workloads: [Case; 3] = [
        ("w2", Workload::w2, 4),
        ("w4", Workload::w4, 2),
        ("w5", Workload::w5, 2),
    ];
    for (name, make, steps) in workloads {
        let (losses_1, params_1) = train(make, 1, steps);
        let (losses_2, params_2) = train(make, 2, steps);
        assert_eq!(losses_1, losses_2, "{name}");
        assert!(
            params_1 == params_2,
            "{name}: parameters differ between 1 and 2 threads"
        );
    }
}
