//! `TAPEGRAD_THREADS` sets the thread count, read once at first use, as PyTorch reads
//! `OMP_NUM_THREADS`. (Its own test binary: the count is process-wide and read once.)

use tapegrad::autograd::{num_threads, set_num_threads};
use tapegrad::Tensor;

#[test]
fn the_environment_variable_sets_the_thread_count_until_set_num_threads() {
    std::env::set_var("TAPEGRAD_THREADS", "3");
    assert_eq!(num_threads(), 3);
    // Read once: later changes to the environment do not move it.
    std::env::set_var("TAPEGRAD_THREADS", "5");
    let a = Tensor::ones(&[128, 128]);
    assert_eq!(a.matmul(&a).to_vec()[0], 128.0);
    assert_eq!(num_threads(), 3);
    set_num_threads(1);
    assert_eq!(num_threads(), 1);
}
