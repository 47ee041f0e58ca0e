"""Runs the workload benchmarks in tapegrad and in PyTorch on this machine, one after
the other, and prints one table: workload, threads, tapegrad time, PyTorch time, and the
speed-up (PyTorch time / tapegrad time; above 1 means tapegrad is faster).

Run by hand from the repository root (CI never runs it; it needs `pip install torch`):
    python3 benches/compare/compare.py [--quick] [--rounds N]
tapegrad's times are criterion's median estimates (`cargo bench --bench workloads`, once
with TAPEGRAD_THREADS=1 and once with 2); PyTorch's come from torch_workloads.py.

The host this runs on is shared and noisy (runs an hour apart differ by up to 40%), so
`--rounds N` repeats the whole measurement N times, tapegrad then PyTorch each round,
prints every round's table, and ends with each cell's per-round speed-ups and their median:
a ratio is only ever taken between two figures from the same round.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WORKLOADS = ["w1_seed_step", "w2_mlp_adam_step", "gemm_256", "gemm_1024", "optimizer_step",
             "w3_gpt_step", "w4_digits_cnn_step", "w5_conv_step"]
# Workloads also reported in tokens per second: tokens per step.
TOKENS = {"w3_gpt_step": 16 * 64}
GEMM_N = {"gemm_256": 256, "gemm_1024": 1024}
# PEAK_FLOPS_PER_CALL in benches/workloads.rs: 2M iterations x 12 chains x 8 lanes x 2.
PEAK_FLOPS_PER_THREAD = 2_000_000 * 12 * 8 * 2


def tapegrad_times(threads, quick):
    env = dict(os.environ, TAPEGRAD_THREADS=str(threads))
    args = ["cargo", "bench", "--bench", "workloads", "--", "--noplot", "--save-baseline", f"threads{threads}"]
    if quick:
        args += ["--warm-up-time", "1", "--measurement-time", "2"]
    subprocess.run(args, cwd=ROOT, env=env, check=True, stdout=sys.stderr)
    times = {}
    for w in WORKLOADS + ["peak_fma"]:
        path = os.path.join(ROOT, "target", "criterion", w, f"threads{threads}", "estimates.json")
        if w == "peak_fma" and not os.path.exists(path):
            continue  # no AVX2 + FMA on this CPU
        with open(path) as f:
            times[w] = json.load(f)["median"]["point_estimate"] / 1000.0  # ns -> us
    return times


def torch_times():
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run([sys.executable, os.path.join(HERE, "torch_workloads.py"), "--json", out.name],
                       check=True, stdout=sys.stderr)
        data = json.load(open(out.name))
    return data["torch_version"], {(r["workload"], r["threads"]): r["time_us"] for r in data["results"]}


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def fmt_time(us):
    return f"{us / 1000:.3f} ms" if us >= 1000 else f"{us:.2f} µs"


def measure(quick):
    """One round: tapegrad on 1 and 2 threads, then PyTorch right after."""
    ours = {t: tapegrad_times(t, quick) for t in (1, 2)}
    version, theirs = torch_times()
    return ours, version, theirs


def print_round(ours, version, theirs):
    """Prints one round's table and returns its speed-ups by (workload, threads)."""
    print(f"{datetime.datetime.now():%Y-%m-%d %H:%M} · {cpu_name()} · {os.cpu_count()} cores · PyTorch {version}")
    print()
    # benches/workloads.rs: peak_fma runs PEAK_FLOPS_PER_CALL on each thread.
    peak = {t: PEAK_FLOPS_PER_THREAD * t / (ours[t]["peak_fma"] * 1e3) for t in (1, 2) if "peak_fma" in ours[t]}
    for t, gflops in peak.items():
        print(f"measured fp32 FMA peak, {t} thread(s): {gflops:.0f} GFLOP/s")
    print()
    print("| workload | threads | tapegrad | PyTorch | speed-up |")
    print("| --- | --- | --- | --- | --- |")
    ratios = {}
    for w in WORKLOADS:
        for t in (1, 2):
            a, b = ours[t][w], theirs[(w, t)]
            cells = [fmt_time(a), fmt_time(b)]
            if w in GEMM_N:
                flops = 2 * GEMM_N[w] ** 3
                cells = [f"{c} ({flops / (us * 1e3):.0f} GFLOP/s)" for c, us in zip(cells, (a, b))]
                if t in peak:
                    cells[0] += f", {100 * flops / (a * 1e3) / peak[t]:.0f}% of peak"
            if w in TOKENS:
                cells = [f"{c} ({TOKENS[w] / (us * 1e-6):.0f} tokens/s)" for c, us in zip(cells, (a, b))]
            ratios[(w, t)] = b / a
            print(f"| {w} | {t} | {cells[0]} | {cells[1]} | {b / a:.2f}x |")
    print(flush=True)
    return ratios


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="shorter criterion runs")
    ap.add_argument("--rounds", type=int, default=1, help="repeat the measurement this many times")
    args = ap.parse_args()
    rounds = [print_round(*measure(args.quick)) for _ in range(args.rounds)]
    if len(rounds) > 1:
        print("| workload | threads | speed-up per round | median |")
        print("| --- | --- | --- | --- |")
        for key in rounds[0]:
            each = [r[key] for r in rounds]
            print(f"| {key[0]} | {key[1]} | {' / '.join(f'{x:.2f}x' for x in each)} | "
                  f"{statistics.median(each):.2f}x |")


if __name__ == "__main__":
    main()
