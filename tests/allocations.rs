//! Heap allocations per steady-state training step, counted by a global allocator.
//!
//! Buffers come from the tensor pool, tensor headers are reused (`tensor.rs`), the
//! backward pass's gradient slots and the tape's arena are kept between steps, so what
//! remains per step is the losses' own bookkeeping: `custom_op`'s boxed backward
//! closure and its input list, and the `Vec`s the losses build (MSE: 6 per W1 step;
//! cross-entropy's target checks and closures: 10 per W2 step), plus the convolution
//! path's input lists in W4/W5. The bounds below catch regressions;
//! `cargo test --test allocations -- --nocapture` prints the counts.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Workload;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Mean allocations per step over `steps` steps after a warm-up.
fn allocations_per_step(workload: &mut Workload, steps: usize) -> f64 {
    for _ in 0..20 {
        workload.step();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..steps {
        workload.step();
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / steps as f64
}

#[test]
fn steady_state_steps_allocate_only_bookkeeping() {
    // One test, so no other test's allocations are counted (tests share the process).
    tapegrad::autograd::set_num_threads(1);
    let w1 = allocations_per_step(&mut Workload::w1(), 200);
    let w2 = allocations_per_step(&mut Workload::w2(), 3);
    let w4 = allocations_per_step(&mut Workload::w4(), 3);
    let w5 = allocations_per_step(&mut Workload::w5(), 2);
    println!(
        "allocations per step: w1_seed_step {w1:.1}, w2_mlp_adam_step {w2:.1}, \
         w4_digits_cnn_step {w4:.1}, w5_conv_step {w5:.1}"
    );
    assert!(w4 <= 40.0, "w4 allocates {w4} times per step");
    assert!(w5 <= 40.0, "w5 allocates {w5} times per step");
    assert!(w1 <= 6.5, "w1 allocates {w1} times per step");
    assert!(w2 <= 10.5, "w2 allocates {w2} times per step");
}
