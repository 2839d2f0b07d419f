"""7. Memory: peak resident memory of one default training run at 1x, 4x and 16x the data.

Each size runs in a fresh process (so peaks don't mix) and reports its own ru_maxrss.
"""

from __future__ import annotations

import json
import subprocess
import sys

from .common import ROOT, save_results, table

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r})
from benchmarks.common import compose_train
from latentsweep.pipeline import train
cfg = compose_train(["model=rnn_ae", "data.n_series={n}", "trainer.max_epochs={epochs}", "tracking.enabled=false",
                     "trainer.checkpoint_dir=null", "trainer.progress=false"])
t0 = time.perf_counter()
train(cfg)
print(json.dumps({{"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                   "seconds": time.perf_counter() - t0}}))
"""


def run(base: int = 1200, factors: tuple[int, ...] = (1, 4, 16), epochs: int = 1) -> dict:
    rows, raw = [], {}
    for f in factors:
        code = CHILD.format(root=str(ROOT), n=base * f, epochs=epochs)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/tmp")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        raw[f"{f}x"] = {"n_series": base * f, **result}
        rows.append([f"{f}x", base * f, result["peak_rss_mb"], result["seconds"]])
    print(f"\n### 7. Memory (default rnn_ae, {epochs} epoch, each size in a fresh process)\n")
    print(table(["data", "series", "peak RSS MB", "run s"], rows))
    save_results("memory", raw)
    return raw


if __name__ == "__main__":
    run()
