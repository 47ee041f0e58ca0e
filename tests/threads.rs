//! Results do not depend on the thread count: matrix products split work over output
//! blocks, never over the reduction, and every other reduction runs in a fixed order.
//! (Its own test binary, because the thread count is process-wide.)

mod common;

use common::Workload;
use tapegrad::autograd::set_num_threads;

fn train(threads: usize, steps: usize) -> (Vec<u32>, Vec<u32>) {
    set_num_threads(threads);
    let mut w = Workload::w2();
    let losses = (0..steps).map(|_| w.step().to_bits()).collect();
    (losses, w.bits())
}

#[test]
fn one_and_two_threads_train_bit_identically() {
    let (losses_1, params_1) = train(1, 4);
    let (losses_2, params_2) = train(2, 4);
    assert_eq!(losses_1, losses_2);
    assert!(
        params_1 == params_2,
        "parameters differ between 1 and 2 threads"
    );
}
