"""7. Memory: peak resident memory of one default training run at 1x, 4x and 16x the data.

Each size runs in a fresh Python process, which reads its own peak from `VmHWM` in
/proc/self/status. Not `ru_maxrss`: Linux carries a process's peak across fork and exec, so a
child of the (large) benchmark runner would report the runner's peak at every size.
`python -m benchmarks.bench_memory` writes benchmarks/results/memory/memory.json.
"""

from __future__ import annotations

import json
import subprocess
import sys

from latentsweep.tables import markdown_table

from .common import ROOT, save_results, set_run

MEASURE = "VmHWM of the training process itself (/proc/self/status)"

CHILD = r"""
import json, sys, time
sys.path.insert(0, {root!r})
from benchmarks.common import compose_train
from latentsweep.pipeline import train
cfg = compose_train(["model=rnn_ae", "data.n_series={n}", "trainer.max_epochs={epochs}", "tracking.enabled=false",
                     "trainer.checkpoint_dir=null", "trainer.progress=false"])
t0 = time.perf_counter()
train(cfg)
seconds = time.perf_counter() - t0
status = dict(line.split(":", 1) for line in open("/proc/self/status") if ":" in line)
print(json.dumps({{"peak_rss_mb": int(status["VmHWM"].split()[0]) / 1024, "seconds": seconds}}))
"""


def run(base: int = 1200, factors: tuple[int, ...] = (1, 4, 16), epochs: int = 1) -> dict:
    if sys.platform != "linux":
        print("\n### 7. Memory\n\nskipped: reads /proc/self/status (Linux only)")
        return {}
    rows, raw = [], {"measure": MEASURE}
    for f in factors:
        code = CHILD.format(root=str(ROOT), n=base * f, epochs=epochs)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/tmp")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        raw[f"{f}x"] = {"n_series": base * f, **result}
        rows.append([f"{f}x", base * f, result["peak_rss_mb"], result["seconds"]])
    print(f"\n### 7. Memory (default rnn_ae, {epochs} epoch, each size in its own process, its own peak)\n")
    print(markdown_table(["data", "series", "peak RSS MB", "run s"], rows))
    save_results("memory", raw)
    return raw


if __name__ == "__main__":
    set_run("memory", "python -m benchmarks.bench_memory")
    run()
