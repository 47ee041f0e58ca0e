//! The fused `scaled_dot_product_attention` against the same causal attention written
//! from unfused ops (matmul, scale, masked_fill, softmax, matmul): time of one forward +
//! backward, and memory.
//!
//! Run with `cargo bench --bench attention`; `TAPEGRAD_THREADS=n` sets the thread count
//! (default 1). Before timing, it prints for each shape the heap bytes held between the
//! forward and the backward pass (what the tape keeps, plus the output) and the peak
//! heap bytes during forward + backward, both measured by a counting allocator on a
//! fresh thread (whose buffer pool starts empty, so every buffer is a real allocation).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, BenchmarkId, Criterion};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tapegrad::autograd::{set_num_threads, Tensor};

/// Counts live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

// SAFETY: every call forwards to the system allocator with the caller's arguments
// unchanged; the counters are only statistics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the trait requires, forwarded unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; `ptr` came from this allocator with `layout`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            grew(new_size);
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// [B, H, T, D] of the GPT workload, and a longer context.
const SHAPES: [[usize; 4]; 2] = [[16, 4, 64, 32], [4, 4, 256, 32]];

fn inputs(shape: &[usize]) -> (Tensor, Tensor, Tensor, Tensor) {
    let mut rng = StdRng::seed_from_u64(0);
    let mut t = || {
        Tensor::normal(shape, 0.0, 1.0, &mut rng)
            .unwrap()
            .with_requires_grad(true)
    };
    let (q, k, v) = (t(), t(), t());
    let len = shape[2];
    // 1 above the diagonal: the positions a causal mask fills with -inf.
    let masked = Tensor::ones(&[len, len]).triu(1);
    (q, k, v, masked)
}

fn fused(q: &Tensor, k: &Tensor, v: &Tensor, _masked: &Tensor) -> Tensor {
    q.scaled_dot_product_attention(k, v, None, true)
}

fn unfused(q: &Tensor, k: &Tensor, v: &Tensor, masked: &Tensor) -> Tensor {
    let d = q.shape()[3] as f32;
    let scores = &q.matmul(&k.transpose(2, 3)) * (1.0 / d.sqrt());
    scores
        .masked_fill(masked, f32::NEG_INFINITY)
        .softmax(3)
        .matmul(v)
}

type Attention = fn(&Tensor, &Tensor, &Tensor, &Tensor) -> Tensor;

/// (bytes held between forward and backward, peak bytes during both), above the inputs.
fn memory(shape: [usize; 4], f: Attention) -> (usize, usize) {
    std::thread::spawn(move || {
        let (q, k, v, masked) = inputs(&shape);
        let base = LIVE.load(Ordering::Relaxed);
        PEAK.store(base, Ordering::Relaxed);
        let loss = f(&q, &k, &v, &masked).sum();
        let held = LIVE.load(Ordering::Relaxed) - base;
        loss.backward();
        (held, PEAK.load(Ordering::Relaxed) - base)
    })
    .join()
    .unwrap()
}

fn threads() -> usize {
    std::env::var("TAPEGRAD_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

fn report_memory() {
    set_num_threads(threads());
    for shape in SHAPES {
        for (name, f) in [("fused", fused as Attention), ("unfused", unfused)] {
            let (held, peak) = memory(shape, f);
            println!(
                "attention memory {name} {shape:?}: held for backward {:.2} MiB, \
                 peak during forward+backward {:.2} MiB",
                held as f64 / (1 << 20) as f64,
                peak as f64 / (1 << 20) as f64
            );
        }
    }
}

fn attention(c: &mut Criterion) {
    set_num_threads(threads());
    let mut group = c.benchmark_group("attention_fwd_bwd");
    for shape in SHAPES {
        let (q, k, v, masked) = inputs(&shape);
        let id = format!("{}x{}x{}x{}", shape[0], shape[1], shape[2], shape[3]);
        for (name, f) in [("fused", fused as Attention), ("unfused", unfused)] {
            group.bench_with_input(BenchmarkId::new(name, &id), &(), |bench, _| {
                bench.iter(|| {
                    f(&q, &k, &v, &masked).sum().backward();
                    for t in [&q, &k, &v] {
                        t.zero_grad();
                    }
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, attention);

fn main() {
    report_memory();
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
}
