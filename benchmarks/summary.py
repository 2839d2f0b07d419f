"""The benchmark tables of docs/, rendered from a run's results files (`python -m benchmarks.summary`).

Every figure in docs/benchmarks.md's table comes from here, so each one is read from the file its row
names; a file that is missing gives "not yet measured". Where a target is missed, the row shows
the measured figure and MISSED.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from latentsweep.tables import markdown_table

from .common import RESULTS_DIR

HEADERS = ["comparison", "figure", "target", "results file"]


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / name
    return json.loads(path.read_text()) if path.exists() else None


def _verdict(holds: bool) -> str:
    return "holds" if holds else "MISSED"


def _latents_win(m: dict[str, Any]) -> bool:
    """issue 17's bar: the latents' RBF-SVM accuracy and spectral NMI on TEST both at least the raw series'."""
    return m["latent.svm_accuracy"] >= m["raw.svm_accuracy"] and m["latent.spectral.nmi"] >= m["raw.spectral.nmi"]


def _latent_verdict(m: dict[str, Any]) -> str:
    """`_latents_win` in words, naming a tie: equal on a score is not a win, only not a loss."""
    if not _latents_win(m):
        return "NO"
    ties = [name for name, key in (("SVM", "svm_accuracy"), ("NMI", "spectral.nmi"))
            if m[f"latent.{key}"] == m[f"raw.{key}"]]
    return f"yes ({' and '.join(ties)} tied)" if ties else "yes"


def _memory(folder: Path) -> tuple[dict[str, Any] | None, str]:
    """The run's memory.json where it holds each run's own peak (it names its `measure`), else the
    one `python -m benchmarks.bench_memory` wrote: older files read the benchmark runner's peak."""
    own = _load(folder, "memory.json")
    if own and "measure" in own:
        return own, f"{folder.name}/memory.json"
    return _load(folder.parent / "memory", "memory.json"), "memory/memory.json"


def rows(folder: Path) -> list[list[str]]:
    """One row per comparison: [comparison, measured figure + verdict, target, file]."""
    run = folder.name
    missing = "not yet measured"
    out: list[list[str]] = []

    batching = _load(folder, "batching-cpu.json")
    figure = missing
    if batching:
        s, t = batching["summary"], batching["table"]
        figure = (f"{s['default_ratio']:.2f}× ({t['bucket-padded']['epoch_s']:.2f} s vs "
                  f"{t['random-packed']['epoch_s']:.2f} s), val loss within {100 * s['loss_diff']:.1f}% — "
                  f"{_verdict(batching['target_holds'])}")
    out.append(["bucketed + padded vs random + packed epoch", figure, "≤ 0.30×, val loss within 2%",
                f"`{run}/batching-cpu.json`"])

    out += _sweep_rows(folder)

    memory, memory_file = _memory(folder)
    figure = missing
    if memory:
        sizes = [k for k in memory if k.endswith("x") and isinstance(memory[k], dict)]
        figure = " / ".join(f"{memory[k]['peak_rss_mb'] / 1024:.2f} GB" for k in sizes) + f" ({' / '.join(sizes)})"
    out.append(["peak RSS of one default run, its own process, 1× / 4× / 16× data", figure, "—",
                f"`{memory_file}`"])

    return out + _quality_and_sharing_rows(folder) + _wall_and_gpu_rows(folder)


def _breakdown(seconds: dict[str, float]) -> str:
    """`ask 0.02 s, startup 0.61 s, ...`: a trial's seconds per phase (`latentsweep.timing`)."""
    return ", ".join(f"{name.replace('_', '-')} {value:.2f}" for name, value in seconds.items()) + " s"


def _overhead(o: dict, trial: str, runs: str) -> str:
    """The per-trial overhead cell: outside the epochs (judged) beside the wall-clock difference, or
    only the latter in files written before the outside-epochs estimate existed."""
    once = f"plus {o['sweep_fixed_cost_s']:.1f} s once per sweep"
    if "outside_epochs_overhead_share" not in o:
        return (f"+{o['overhead_per_trial_s']:.2f} s{trial} ({100 * o['overhead_share']:.0f}%{runs}), {once} — "
                f"{_verdict(o['overhead_share'] <= 0.10)}")
    share = o["outside_epochs_overhead_share"]
    return (f"{o['outside_epochs_overhead_per_trial_s']:+.2f} s outside the epochs{trial} ({100 * share:.0f}%{runs}); "
            f"wall clock {o['overhead_per_trial_s']:+.2f} s ({100 * o['overhead_share']:.0f}%), epochs "
            f"{o['cli_epochs_per_trial_s']:.1f} s per trial vs {o['bare_epochs_per_trial_s']:.1f} s bare; {once} — "
            f"{_verdict(share <= 0.10)}")


def _sweep_rows(folder: Path) -> list[list[str]]:
    """Sweep overhead, its per-trial breakdown, start-up, pruning, parallel trials, and the recipe's
    share of time in epochs (`speed/latent-share.json`, `python -m benchmarks.bench_sweep --latent-share`)."""
    run, missing = folder.name, "not yet measured"
    sweep = _load(folder, "sweep.json")
    overhead = breakdown = startup = pruning = parallel = missing
    if sweep:
        o, p, j = sweep["overhead"], sweep["pruning"], sweep["parallel"]
        runs = f", median of {len(o['runs'])} runs" if "runs" in o else ""
        trial = f" on {o['bare_per_trial_s']:.0f} s trials" if "bare_per_trial_s" in o else ""
        overhead = _overhead(o, trial, runs)
        if "breakdown_s" in o:
            breakdown = _breakdown(o["breakdown_s"])
        startup = f"{o['startup_s']:.1f} s — {_verdict(o['startup_s'] < 3)}"
        pruning = (f"{p.get('default_pruner', 'median')}: {100 * p['epochs_saved']:.0f}% fewer epochs, best value {100 * p['best_diff']:+.1f}% — "
                   f"{_verdict(p['target_holds'])}")
        parallel = f"{j['speedup']:.2f}× trials/min — {_verdict(j['speedup'] >= 1.8)}"
    share = _load(folder.parent / "speed", "latent-share.json")
    latent = missing
    if share:
        latent = (f"{100 * share['epochs_share']:.0f}% of {share['wall_s']:.0f} s; median trial: "
                  f"{_breakdown(share['median_trial_s'])} — {_verdict(share['epochs_share'] >= 0.90)}")
    return [["sweep overhead per trial, MLflow on", overhead, "≤ 10%", f"`{run}/sweep.json`"],
            ["where that trial's time goes (median trial; other: Hydra's job set-up)", breakdown, "—",
             f"`{run}/sweep.json`"],
            ["start-up to first training step", startup, "< 3 s", f"`{run}/sweep.json`"],
            ["`experiment=latent`, 40 trials on ArrowHead: wall time in epochs", latent, "≥ 90%",
             "`speed/latent-share.json`"],
            ["default pruner vs none", pruning, "≥ 40% fewer epochs, best within 2%", f"`{run}/sweep.json`"],
            ["`n_jobs=2` vs `1` (joblib, equal trials)", parallel, "≥ 1.8×", f"`{run}/sweep.json`"]]


def _quality_and_sharing_rows(folder: Path) -> list[list[str]]:
    run, missing, out = folder.name, "not yet measured", []
    quality = _load(folder, "quality.json")
    figure = missing
    if quality:
        parts, holds = [], True
        for name, result in quality["data_sets"].items():
            m = result["metrics"]
            svm, nmi = (m["latent.svm_accuracy"], m["raw.svm_accuracy"]), (m["latent.spectral.nmi"], m["raw.spectral.nmi"])
            holds = holds and _latents_win(m)
            parts.append(f"{name}: SVM {svm[0]:.2f} vs {svm[1]:.2f}, NMI {nmi[0]:.2f} vs {nmi[1]:.2f}")
        budget = quality["budget"]
        figure = (f"{'; '.join(parts)} ({budget['n_trials']} trials × {budget['epochs']} epochs) — "
                  f"{_verdict(holds)}")
    out.append(["latents vs raw series on TEST (`experiment=latent`): RBF-SVM accuracy, spectral NMI", figure,
                "latent ≥ raw on both", f"`{run}/quality.json`"])

    shared = _load(folder, "sharing.json")
    figure = missing
    if shared:
        s = shared["sharing"]
        runs, target = s["runs"], s.get("target", 1.3)
        judged = next(k for k in ("defaults (conv_ae)", "defaults (rnn_ae)") if k in runs)  # rnn_ae: before issue 25
        figure = (f"{runs[judged]['ratio']:.2f}× the epoch time of one run alone ({judged}) — "
                  f"{_verdict(runs[judged]['ratio'] <= target)}")
        others = [f"{k} {v['ratio']:.2f}×" for k, v in runs.items()
                  if k != judged and "ratio" in v and not k.startswith("defaults")]
        if others:
            figure += f"; not judged: {', '.join(others)}"
    out.append(["two runs at once vs one alone, defaults", figure, "≤ 1.1×", f"`{run}/sharing.json`"])

    return out


def _wall_and_gpu_rows(folder: Path) -> list[list[str]]:
    run, missing, out = folder.name, "not yet measured", []
    index = _load(folder, "index.json")
    figure = missing + " (no run of every section)"
    if index and set(index.get("sections_run", [])) >= {"batching", "throughput", "sweep", "quality", "memory", "sharing"}:
        minutes = index["total_seconds"] / 60
        figure = f"{minutes:.1f} min — {_verdict(minutes < 15)}"
    out.append(["`make bench-quick` wall time, all sections", figure, "< 15 min", f"`{run}/index.json`"])

    sharing = _load(folder.parent / "gpu-check", "sharing.json")
    figure = missing + " (no GPU run committed)"
    if sharing and isinstance(sharing.get("result"), dict) and "1" in sharing["result"]:
        r = sharing["result"]
        best = max((r[k] for k in ("1", "8", "16") if k in r), key=lambda v: v["epochs_per_s"])
        ratio = best["epochs_per_s"] / r["1"]["epochs_per_s"]
        figure = f"{ratio:.1f}× the epochs/s of one trial — {_verdict(ratio >= 8)}"
        if not sharing.get("complete", True):
            figure += f" (partial: rows {', '.join(k for k in ('1', '8', '16') if k in r)} only)"
    out.append(["trials sharing one GPU (1 / 8 / 16 per GPU)", figure, "≥ 8× one trial", "`gpu-check/sharing.json`"])
    return out


LATENT_HEADERS = ["data set", "seed", "RBF-SVM accuracy, latent / raw", "spectral NMI, latent / raw",
                  "k-means NMI, latent / raw", "both at or above raw", "sweep s", "commit"]


def latent_rows(folder: Path) -> list[list[str]]:
    """One row per data set and seed of `bench_quality` files (quality*.json) in `folder`: the
    recipe's scores on TEST, latent vs raw, and whether the latents win on both yardsticks."""
    rows = []
    for path in sorted(folder.glob("quality*.json")):
        body = json.loads(path.read_text())
        for name, result in body["data_sets"].items():
            m = result["metrics"]
            rows.append([name, str(body["seed"]),
                         f"{m['latent.svm_accuracy']:.3f} / {m['raw.svm_accuracy']:.3f}",
                         f"{m['latent.spectral.nmi']:.3f} / {m['raw.spectral.nmi']:.3f}",
                         f"{m['latent.kmeans.nmi']:.3f} / {m['raw.kmeans.nmi']:.3f}",
                         _latent_verdict(m), f"{result['sweep_s']:.0f}",
                         str(body["machine"]["git_commit"])[:7]])
    return sorted(rows, key=lambda r: (r[0], int(r[1])))


VARIANT_HEADERS = ["SVM rules", "variant (overrides on the recipe of its commit)", "data set", "seeds",
                   "RBF-SVM accuracy, latent / raw (mean)", "spectral NMI, latent / raw (mean)",
                   "runs where both are at or above raw", "commits"]


# The SVM yardstick before issue 30: C from 1e-4..1e4 by seeded, shuffled CV, no C=inf nor tiny-TRAIN rule.
PREVIOUS_SVM_RULES = "previous (C 1e-4..1e4, shuffled CV)"


def variant_rows(folder: Path) -> list[list[str]]:
    """The `bench_quality --override ...` runs in `folder`, one row per SVM rules, variant and data set:
    means over seeds, and in how many runs the latents beat the raw series on both yardsticks. Runs
    scored by different SVM rules are never averaged together (files without `svm_rules` predate them)."""
    groups: dict[tuple[str, str, str], list[tuple[dict, dict]]] = {}
    for path in sorted(folder.glob("*.json")):
        body = json.loads(path.read_text())
        variant = " ".join(body.get("overrides") or []) or "none"
        for name, result in body.get("data_sets", {}).items():
            key = (body.get("svm_rules", PREVIOUS_SVM_RULES), variant, name)
            groups.setdefault(key, []).append((body, result["metrics"]))
    def mean(runs: list[tuple[dict, dict]], key: str) -> float:
        return sum(m[key] for _, m in runs) / len(runs)

    rows = []
    for (rules, variant, name), runs in sorted(groups.items()):
        wins = sum(_latents_win(m) for _, m in runs)
        rows.append([rules, variant, name, ", ".join(str(b["seed"]) for b, _ in runs),
                     f"{mean(runs, 'latent.svm_accuracy'):.3f} / {mean(runs, 'raw.svm_accuracy'):.3f}",
                     f"{mean(runs, 'latent.spectral.nmi'):.3f} / {mean(runs, 'raw.spectral.nmi'):.3f}",
                     f"{wins} of {len(runs)}",
                     ", ".join(sorted({str(b["machine"]["git_commit"])[:7] for b, _ in runs}))])
    return rows


SIZE_HEADERS = ["variant (overrides on the fixed size)", "data set", "seeds", "RBF-SVM accuracy, latent mean (min) / raw mean",
                "seeds at or above raw SVM", "spectral NMI, latent mean (min) / raw mean", "seeds at or above raw NMI"]


def size_rows(folder: Path) -> list[list[str]]:
    """`bench_sizes` files in `folder`: one fixed size of the recipe, trained on several seeds, per variant."""
    rows = []
    for path in sorted(folder.glob("*.json")):
        body = json.loads(path.read_text())
        runs, summary = body["rows"], body["summary"]
        raw_svm, raw_nmi = (sum(r[key] for r in runs) / len(runs) for key in ("raw_svm", "raw_nmi"))  # moves with the seed's split on some sets
        # counted from the rows, not the file's summary: older files lack the NMI count and minimum
        at_or_above = {key: f"{sum(r[key] >= r[f'raw_{key}'] for r in runs)} of {len(runs)}" for key in ("svm", "nmi")}
        rows.append([" ".join(body["overrides"]) or "none (the fixed size)", body["data"],
                     ", ".join(str(r["seed"]) for r in runs),
                     f"{summary['mean_svm']:.3f} ({summary['min_svm']:.3f}) / {raw_svm:.3f}", at_or_above["svm"],
                     f"{summary['mean_nmi']:.3f} ({min(r['nmi'] for r in runs):.3f}) / {raw_nmi:.3f}",
                     at_or_above["nmi"]])
    return rows


MEMORY_HEADERS = ["data", "series", "peak RSS MB", "training s"]


def memory_rows(folder: Path) -> list[list[str]]:
    """`bench_memory`'s sizes in `folder`/memory.json: each run's own peak, in MB."""
    body = _load(folder, "memory.json") or {}
    return [[size, str(m["n_series"]), f"{m['peak_rss_mb']:.0f}", f"{m['seconds']:.1f}"]
            for size, m in body.items() if size.endswith("x") and isinstance(m, dict)]


def provenance(folder: Path, name: str = "index.json") -> str:
    """Where and when the run was measured, from its index.json (or another of its files)."""
    index = _load(folder, name)
    if not index:
        return f"No run in `benchmarks/results/{folder.name}/` yet."
    m = index["machine"]
    return (f"Measured by `{index['command']}` on {m['date'][:10]}, commit {str(m['git_commit'])[:10]}, "
            f"{m['cpu']} ({m['usable_cores']} cores{', ' + ', '.join(m['gpu']) if m['gpu'] else ''}), "
            f"torch {m['torch']}.")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", nargs="?", default="bench-quick", help="results folder (bench-quick | bench)")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--latent", action="store_true",
                        help="the per-seed latent-vs-raw table of the run's quality*.json files (e.g. latent-seeds)")
    parser.add_argument("--variants", action="store_true",
                        help="the recipe variants compared in the run's bench_quality files (e.g. latent-explore)")
    parser.add_argument("--sizes", action="store_true",
                        help="one size of the recipe on several seeds, per variant (bench_sizes: latent-sizes)")
    parser.add_argument("--memory", action="store_true",
                        help="the peak-memory table of the run's memory.json (e.g. memory)")
    args = parser.parse_args(argv)
    folder = args.results_dir / args.run
    if args.memory:
        print(provenance(folder, "memory.json") + "\n")
        print(markdown_table(MEMORY_HEADERS, memory_rows(folder)))
        return
    if args.latent:
        print(markdown_table(LATENT_HEADERS, latent_rows(folder)))
        return
    if args.sizes:
        print(markdown_table(SIZE_HEADERS, size_rows(folder)))
        return
    if args.variants:
        print(markdown_table(VARIANT_HEADERS, variant_rows(folder)))
        return
    print(provenance(folder) + "\n")
    print(markdown_table(HEADERS, rows(folder)))


if __name__ == "__main__":
    main()
