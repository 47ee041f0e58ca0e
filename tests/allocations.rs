//! Heap allocations per steady-state training step, counted by a global allocator:
//! none, for every workload of `benches/workloads.rs`.
//!
//! Buffers come from the tensor pool, tensor headers are reused (`tensor.rs`), the
//! backward pass's gradient slots and the tape's arena are kept between steps, the
//! losses are built-in tape records whose saved data lives in pooled buffers
//! (`ops/loss.rs`), op input lists are inline (`tape::present`), and a gather's index
//! list comes from the pool of index buffers (`pool::Indices`).
//!
//! `cargo test --test allocations` prints the counts; with `TAPEGRAD_ALLOC_TRACE=1`
//! every allocation of the counted steps prints its backtrace.
//!
//! The binary has its own `main` (`harness = false`): the global allocator counts every
//! thread, and under libtest the harness's main thread can still be allocating for the
//! test it just spawned while the first steps are counted. Here the only threads are
//! this one and tapegrad's workers.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{GptWorkload, Workload};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// Set while counted steps run with `TAPEGRAD_ALLOC_TRACE`.
static TRACE: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// Set while a backtrace is being taken, so its own allocations are not traced.
    static TRACING: Cell<bool> = const { Cell::new(false) };
}

/// Prints where the allocation being counted comes from.
fn trace(size: usize) {
    if !TRACE.load(Ordering::Relaxed) || TRACING.with(|t| t.replace(true)) {
        return;
    }
    let trace = std::backtrace::Backtrace::force_capture();
    eprintln!("allocation of {size} bytes:\n{trace}");
    TRACING.with(|t| t.set(false));
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        trace(layout.size());
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        trace(new_size);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Mean allocations per step over `steps` steps after a warm-up.
fn allocations_per_step(name: &str, mut step: impl FnMut() -> f32, steps: usize) -> f64 {
    for _ in 0..20 {
        step();
    }
    if std::env::var_os("TAPEGRAD_ALLOC_TRACE").is_some() {
        eprintln!("=== {name}: {steps} counted steps");
        TRACE.store(true, Ordering::Relaxed);
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..steps {
        step();
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    TRACE.store(false, Ordering::Relaxed);
    (after - before) as f64 / steps as f64
}

fn main() {
    tapegrad::autograd::set_num_threads(1);
    let mut w1 = Workload::w1();
    let w1 = allocations_per_step("w1_seed_step", || w1.step(), 200);
    let mut w2 = Workload::w2();
    let w2 = allocations_per_step("w2_mlp_adam_step", || w2.step(), 3);
    let mut w3 = GptWorkload::w3(2);
    let w3 = allocations_per_step("w3_gpt_step", || w3.step(), 2);
    let mut w4 = Workload::w4();
    let w4 = allocations_per_step("w4_digits_cnn_step", || w4.step(), 3);
    let mut w5 = Workload::w5();
    let w5 = allocations_per_step("w5_conv_step", || w5.step(), 2);
    // The same steps with the products, convolutions and elementwise ops split over
    // two threads.
    tapegrad::autograd::set_num_threads(2);
    let mut w2_two = Workload::w2();
    let w2_two = allocations_per_step("w2_mlp_adam_step, 2 threads", || w2_two.step(), 3);
    let mut w4_two = Workload::w4();
    let w4_two = allocations_per_step("w4_digits_cnn_step, 2 threads", || w4_two.step(), 3);
    println!(
        "allocations per step: w1_seed_step {w1:.1}, w2_mlp_adam_step {w2:.1}, \
         w3_gpt_step {w3:.1}, w4_digits_cnn_step {w4:.1}, w5_conv_step {w5:.1}; \
         on 2 threads: w2 {w2_two:.1}, w4 {w4_two:.1}"
    );
    assert_eq!(w1, 0.0, "w1 allocates {w1} times per step");
    assert_eq!(w2, 0.0, "w2 allocates {w2} times per step");
    assert_eq!(w4, 0.0, "w4 allocates {w4} times per step");
    assert_eq!(w5, 0.0, "w5 allocates {w5} times per step");
    assert_eq!(
        w2_two, 0.0,
        "w2 allocates {w2_two} times per step on 2 threads"
    );
    assert_eq!(
        w4_two, 0.0,
        "w4 allocates {w4_two} times per step on 2 threads"
    );
    assert_eq!(w3, 0.0, "w3 allocates {w3} times per step");
}
