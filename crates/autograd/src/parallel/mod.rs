//! A small fork-join pool for the hot loops of a training step (GEMM, optimizer updates).
//!
//! Why not rayon's global pool: a call from a thread outside rayon's pool (the usual
//! training loop's main thread) hands the job to the pool's workers and sleeps on a
//! condition variable, so every parallel region costs a wake-up of the workers *and* of
//! the caller, and an idle rayon worker then spins with `sched_yield` for a while, taking
//! a core from the caller's single-threaded code. W2 on 2 threads was barely faster than
//! on 1 that way. Here the caller does part of the work itself, `threads − 1` persistent
//! workers do the rest, and a worker that just finished spins briefly (so the next
//! product of the same step finds it awake) before it sleeps.
//!
//! [`for_each_part`] runs `f(0)`, …, `f(parts − 1)`, each exactly once, on up to
//! [`crate::num_threads`] threads, and returns when all have run. Which thread runs a
//! part is not fixed, so a part's result must depend on its index only: callers split
//! work at fixed boundaries and never let the thread count change a summation order.
//! Only one region runs at a time; a call made while another runs (from a worker, or
//! from a second thread) runs its parts on the calling thread, with the same results.

mod pieces;
pub(crate) use pieces::{elementwise_piece, for_each_piece, for_each_piece2, for_each_piece3};

use std::any::Any;
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::ops::gemm::num_threads;

/// How long an idle worker keeps polling for the next region before it sleeps: long
/// enough to span the single-threaded ops between two products of one step, short
/// enough not to hold a core when the program has stopped computing.
const SPIN: Duration = Duration::from_micros(200);

/// One parallel region, on the calling thread's stack.
struct Job<'a> {
    f: &'a (dyn Fn(usize) + Sync),
    parts: usize,
    /// Workers with an index below this may join (the caller counts as one thread).
    workers: usize,
    /// The next part not yet claimed.
    next: AtomicUsize,
    /// Parts finished.
    done: AtomicUsize,
    /// The first panic of a part, re-raised on the calling thread.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

impl Job<'_> {
    /// Claims and runs parts until none are left.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, SeqCst);
            if i >= self.parts {
                return;
            }
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (self.f)(i)));
            if let Err(payload) = result {
                let mut slot = self.panic.lock().unwrap_or_else(|e| e.into_inner());
                slot.get_or_insert(payload);
            }
            self.done.fetch_add(1, SeqCst);
        }
    }
}

/// The region workers may join (null between regions). Its type says `'static`, but a
/// job lives only until its caller has seen every part done *and* no worker inside
/// (`ACTIVE` back to zero), which is what makes the lifetime erasure sound.
static CURRENT: AtomicPtr<Job<'static>> = AtomicPtr::new(std::ptr::null_mut());
/// Workers between reading `CURRENT` and leaving the job it pointed to.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// Bumped for each new region; idle workers watch it.
static EPOCH: AtomicUsize = AtomicUsize::new(0);
/// Set while a region runs: the pool serves one at a time.
static BUSY: AtomicBool = AtomicBool::new(false);
/// Workers started so far (they are never stopped).
static SPAWNED: Mutex<usize> = Mutex::new(0);
/// Workers asleep, and the condition they sleep on.
static SLEEPERS: AtomicUsize = AtomicUsize::new(0);
static WAKE: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());

thread_local! {
    /// Whether this thread is one of the pool's workers.
    static IS_WORKER: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f(i)` for every `i < parts`, on up to [`crate::num_threads`] threads (the
/// calling thread included), and returns when all have run. A panic in a part is
/// re-raised here after every part has finished.
pub fn for_each_part(parts: usize, f: impl Fn(usize) + Sync) {
    let threads = num_threads().min(parts);
    if threads <= 1
        || IS_WORKER.with(Cell::get)
        || BUSY.compare_exchange(false, true, SeqCst, SeqCst).is_err()
    {
        run_here(parts, &f);
        return;
    }
    // Release BUSY however this returns (a panicking part is re-raised below).
    struct Release;
    impl Drop for Release {
        fn drop(&mut self) {
            BUSY.store(false, SeqCst);
        }
    }
    let _release = Release;
    ensure_workers(threads - 1);
    let job = Job {
        f: &f,
        parts,
        workers: threads - 1,
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        panic: Mutex::new(None),
    };
    let ptr = &job as *const Job<'_> as *mut Job<'static>;
    CURRENT.store(ptr, SeqCst);
    EPOCH.fetch_add(1, SeqCst);
    if SLEEPERS.load(SeqCst) > 0 {
        let _guard = WAKE.0.lock().unwrap_or_else(|e| e.into_inner());
        WAKE.1.notify_all();
    }
    job.work();
    wait_until(|| job.done.load(SeqCst) == parts);
    CURRENT.store(std::ptr::null_mut(), SeqCst);
    // A worker that read the pointer before it was cleared may still be leaving.
    wait_until(|| ACTIVE.load(SeqCst) == 0);
    let panic = job.panic.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(payload) = panic {
        std::panic::resume_unwind(payload);
    }
}

/// Runs every part on the calling thread, with the pool's contract: a panicking part
/// does not stop the others, and the first panic is re-raised once all have run (so a
/// region behaves the same whether the pool was free, busy, or one thread wide).
fn run_here(parts: usize, f: &impl Fn(usize)) {
    let mut first = None;
    for i in 0..parts {
        if let Err(payload) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(i))) {
            first.get_or_insert(payload);
        }
    }
    if let Some(payload) = first {
        std::panic::resume_unwind(payload);
    }
}

/// Spins until `ready`, yielding the core after a while (the host may be busy).
pub(crate) fn wait_until(ready: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !ready() {
        if spins < 1 << 12 {
            std::hint::spin_loop();
            spins += 1;
        } else {
            std::thread::yield_now();
        }
    }
}

/// Starts workers until there are at least `n`.
fn ensure_workers(n: usize) {
    let mut spawned = SPAWNED.lock().unwrap_or_else(|e| e.into_inner());
    while *spawned < n {
        let index = *spawned;
        let started = std::thread::Builder::new()
            .name(format!("tapegrad-{index}"))
            .spawn(move || worker(index));
        if started.is_err() {
            // No more threads: the caller and the existing workers do the parts.
            return;
        }
        *spawned += 1;
    }
}

/// A worker's life: wait for a region, join it if its index allows, repeat.
fn worker(index: usize) {
    IS_WORKER.with(|w| w.set(true));
    let mut seen = EPOCH.load(SeqCst);
    loop {
        seen = wait_for_epoch(seen);
        ACTIVE.fetch_add(1, SeqCst);
        let ptr = CURRENT.load(SeqCst);
        if !ptr.is_null() {
            // SAFETY: the job's caller does not return (so the job stays alive) until
            // ACTIVE is zero, and this worker counted itself in ACTIVE before reading
            // the pointer; a job reached through CURRENT is fully built.
            let job = unsafe { &*ptr };
            if index < job.workers {
                job.work();
            }
        }
        ACTIVE.fetch_sub(1, SeqCst);
    }
}

/// Waits until `EPOCH` differs from `seen`: spins for [`SPIN`], then sleeps.
fn wait_for_epoch(seen: usize) -> usize {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let now = EPOCH.load(SeqCst);
        if now != seen {
            return now;
        }
        std::hint::spin_loop();
        spins += 1;
        if spins % 256 == 0 && start.elapsed() > SPIN {
            break;
        }
    }
    let mut guard = WAKE.0.lock().unwrap_or_else(|e| e.into_inner());
    SLEEPERS.fetch_add(1, SeqCst);
    loop {
        let now = EPOCH.load(SeqCst);
        if now != seen {
            SLEEPERS.fetch_sub(1, SeqCst);
            return now;
        }
        guard = WAKE.1.wait(guard).unwrap_or_else(|e| e.into_inner());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_part_runs_once() {
        for parts in [0, 1, 2, 3, 17] {
            let hits: Vec<AtomicU64> = (0..parts).map(|_| AtomicU64::new(0)).collect();
            for _ in 0..50 {
                for_each_part(parts, |i| {
                    hits[i].fetch_add(1, SeqCst);
                });
            }
            assert!(hits.iter().all(|h| h.load(SeqCst) == 50));
        }
    }

    #[test]
    fn nested_regions_run_on_the_calling_thread() {
        let total = AtomicU64::new(0);
        for_each_part(4, |i| {
            for_each_part(3, |j| {
                total.fetch_add((i * 3 + j) as u64, SeqCst);
            });
        });
        assert_eq!(total.load(SeqCst), (0..12).sum::<u64>());
    }

    #[test]
    fn a_panicking_part_is_reraised_after_the_others() {
        let ran = AtomicU64::new(0);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for_each_part(6, |i| {
                ran.fetch_add(1, SeqCst);
                assert!(i != 2, "part 2 fails");
            })
        }));
        assert!(result.is_err());
        assert_eq!(ran.load(SeqCst), 6);
        // The pool still works afterwards.
        let after = AtomicU64::new(0);
        for_each_part(3, |_| {
            after.fetch_add(1, SeqCst);
        });
        assert_eq!(after.load(SeqCst), 3);
    }

    #[test]
    fn a_panicking_part_on_the_calling_thread_lets_the_others_run() {
        // A region started inside another runs on the calling thread (as on a busy
        // pool, or with one thread): the same contract holds there.
        let ran = AtomicU64::new(0);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_here(5, &|i| {
                ran.fetch_add(1, SeqCst);
                assert!(i != 1, "part 1 fails");
            })
        }));
        assert!(result.is_err());
        assert_eq!(ran.load(SeqCst), 5);
    }
}
