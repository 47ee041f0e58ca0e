"""PyTorch side of the matmul benchmark comparison with tapegrad.

Run by hand:  python3 benches/compare/torch_matmul.py
Times torch.matmul on square float32 matrices (n = 256, 1024) with 1 and 2
intra-op threads; warm-up first, then the median of many repetitions.
Prints one line per (n, threads):  torch_matmul n=1024 threads=1 gflops=111.2
"""
import statistics
import time

import torch

torch.manual_seed(0)
SIZES = [256, 1024]
THREADS = [1, 2]


def median_seconds(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    for n in SIZES:
        a = torch.randn(n, n, dtype=torch.float32)
        b = torch.randn(n, n, dtype=torch.float32)
        out = torch.empty(n, n, dtype=torch.float32)
        reps = 200 if n <= 256 else 30
        for t in THREADS:
            torch.set_num_threads(t)
            sec = median_seconds(lambda: torch.matmul(a, b, out=out), warmup=5, reps=reps)
            print(f"torch_matmul n={n} threads={t} gflops={2 * n**3 / sec / 1e9:.1f}", flush=True)


if __name__ == "__main__":
    main()
