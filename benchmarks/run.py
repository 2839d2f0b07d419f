"""`make bench-quick` (2 CPU cores, < 10 min) and `make bench` (sized for a GPU box).

Prints one markdown table per comparison and writes the raw figures as JSON with machine facts
to benchmarks/results/. Each comparison is measured side by side in one run.
"""

from __future__ import annotations

import argparse
import logging
import time

import torch

from . import bench_batching, bench_memory, bench_quality, bench_sweep, bench_throughput
from .common import machine, save_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="CPU-sized: finishes in under 10 minutes on 2 cores")
    parser.add_argument("--only", nargs="*", help="sections: batching throughput sweep quality gpu memory")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sections = set(args.only or ["batching", "throughput", "sweep", "quality", "gpu", "memory"])
    quick = args.quick
    print(f"# latentsweep benchmarks ({'quick' if quick else 'full'})\n\n{machine()}")
    t0 = time.perf_counter()
    results = {}
    if "batching" in sections:
        results["batching"] = bench_batching.run(epochs=2 if quick else 3, n_series=1200 if quick else 2000)
    if "throughput" in sections:
        results["throughput"] = bench_throughput.run(n_series=300 if quick else 2000)
    if "sweep" in sections:
        results["sweep"] = bench_sweep.run(quick=quick)
    if "quality" in sections:
        results["quality"] = bench_quality.run(n_trials=2 if quick else 8, epochs=10 if quick else 40)
    if "gpu" in sections:
        if torch.cuda.is_available():
            from .gpu_check import sharing_table

            results["gpu"] = sharing_table()
        else:
            print("\n### 6. GPU\n\nskipped: no CUDA device on this machine (`make gpu-check` on a GPU box)")
    if "memory" in sections:
        results["memory"] = bench_memory.run(factors=(1, 4, 16), epochs=1)
    print(f"\nbenchmarks took {time.perf_counter() - t0:.0f} s")
    save_results("bench-quick" if quick else "bench", {k: str(type(v)) for k, v in results.items()})


if __name__ == "__main__":
    main()
