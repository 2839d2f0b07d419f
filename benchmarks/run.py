"""`make bench-quick` (2 CPU cores, about 35 min since the overhead section takes the median of 3 runs; target < 15) and `make bench` (sized for a GPU box).

Prints one markdown table per comparison and writes each section's figures, with machine facts
(CPU, cores, GPU, torch/CUDA versions), the date and the git commit, to
benchmarks/results/<bench-quick|bench>/<section>.json, plus index.json listing them. Each
comparison is measured side by side in one run. `--tiny` runs every section at toy sizes into
results/tiny/ (git-ignored): it checks that the benchmarks run and write their files, and its
figures mean nothing.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from . import (
    bench_batching,
    bench_memory,
    bench_quality,
    bench_sharing,
    bench_sweep,
    bench_throughput,
)
from .common import machine, run_dir, save_results, set_run, written_files

SECTIONS = ("batching", "throughput", "sweep", "quality", "gpu", "memory", "sharing")


def _sizes(scale: str) -> dict[str, dict]:
    """Each section's arguments at `scale` (quick | full | tiny)."""
    return {
        "quick": {"batching": dict(epochs=2, n_series=1200), "throughput": dict(n_series=300),
                  "sweep": dict(quick=True), "quality": dict(n_trials=4, epochs=60),
                  "memory": dict(factors=(1, 4, 16), epochs=1), "sharing": dict(n_series=400, repeats=2, epochs=5)},
        "full": {"batching": dict(epochs=3, n_series=2000), "throughput": dict(n_series=2000),
                 "sweep": dict(quick=False), "quality": dict(),
                 "memory": dict(factors=(1, 4, 16), epochs=1), "sharing": dict(n_series=1200, repeats=3, epochs=5)},
        "tiny": {"batching": dict(epochs=1, n_series=60), "throughput": dict(n_series=40, batch_sizes=(16,)),
                 "sweep": dict(tiny=True), "quality": dict(n_trials=1, epochs=1),
                 "memory": dict(base=60, factors=(1,), epochs=1),
                 "sharing": dict(n_series=40, repeats=1, epochs=2, tiny=True)},
    }[scale]


def main(argv: list[str] | None = None) -> dict[str, Path]:
    parser = argparse.ArgumentParser(description=__doc__)
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true", help="CPU-sized: about 35 minutes on 2 cores (target: under 15)")
    size.add_argument("--tiny", action="store_true", help="toy sizes: checks the benchmarks run (figures meaningless)")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--results-dir", type=Path, default=None, help="instead of benchmarks/results/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    scale = "tiny" if args.tiny else "quick" if args.quick else "full"
    label = {"quick": "bench-quick", "full": "bench", "tiny": "tiny"}[scale]
    set_run(label, "python -m benchmarks.run " + " ".join(sys.argv[1:] if argv is None else argv), args.results_dir)
    sections = set(args.only or SECTIONS)
    sizes = _sizes(scale)
    print(f"# latentsweep benchmarks ({scale})\n\n{machine()}")
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}

    def timed(name: str, fn, **kwargs) -> None:
        start = time.perf_counter()
        fn(**kwargs)  # each section writes its own <section>.json through save_results
        seconds[name] = time.perf_counter() - start

    if "batching" in sections:
        timed("batching", bench_batching.run, **sizes["batching"])
    if "throughput" in sections:
        timed("throughput", bench_throughput.run, **sizes["throughput"])
    if "sweep" in sections:
        timed("sweep", bench_sweep.run, **sizes["sweep"])
    if "quality" in sections:
        timed("quality", bench_quality.run, **sizes["quality"])
    if "gpu" in sections:
        if torch.cuda.is_available():
            from .gpu_check import sharing_table

            timed("gpu", sharing_table, save_as="gpu-sharing")
        else:
            print("\n### 6. GPU\n\nskipped: no CUDA device on this machine (`make gpu-check` on a GPU box)")
    if "memory" in sections:
        timed("memory", bench_memory.run, **sizes["memory"])
    if "sharing" in sections:  # runs sharing the machine (issue 21)
        timed("sharing", bench_sharing.run, **sizes["sharing"])
    total = time.perf_counter() - t0
    print(f"\nbenchmarks took {total:.0f} s")
    files = {p.stem: p for p in written_files()}
    save_results("index", {"scale": scale, "sections_run": sorted(seconds), "section_seconds": seconds,
                           "total_seconds": total, "files": sorted(p.name for p in files.values())})
    print(f"results: {run_dir()}/ ({', '.join(sorted(p.name for p in files.values()))}, index.json)")
    return files


if __name__ == "__main__":
    main()
