"""The benchmarks store what they measure (issue 19): figures with where, when and at which commit.

No timings are asserted here (timings belong in the benchmarks themselves): these tests check that
each section writes its numbers and machine facts, that `make gpu-check` fails where it cannot
measure, and that the GPU-vs-CPU ratios name the file they divide by.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import common, gpu_check
from latentsweep.tables import markdown_table

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(PYTHONPATH=f"{ROOT / 'src'}:{ROOT}", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg",
               **extra)
    return env


def test_a_results_file_holds_the_figures_and_where_when_and_at_which_commit(tmp_path):
    import numpy as np

    common.set_run("unit", "pytest", tmp_path)
    path = common.save_results("section", {"epoch_s": np.float64(1.5), "rows": {1: {"n": np.int64(3)}}})
    saved = json.loads(path.read_text())
    assert path == tmp_path / "unit" / "section.json"
    assert saved["epoch_s"] == 1.5 and saved["rows"] == {"1": {"n": 3}}
    assert saved["run"] == "unit" and saved["command"] == "pytest" and saved["section"] == "section"
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    facts = saved["machine"]
    if head.returncode == 0:
        assert facts["git_commit"] == head.stdout.strip()
    for key in ("date", "cpu", "cpu_count", "usable_cores", "torch", "cuda", "gpu", "python", "commit_dirty"):
        assert key in facts, key
    assert facts["cpu"] and facts["torch"].split("+")[0].count(".") >= 1


def test_a_type_or_object_is_refused_rather_than_stored_as_text(tmp_path):
    common.set_run("unit", "pytest", tmp_path)
    with pytest.raises(TypeError, match="not a figure"):
        common.save_results("bad", {"batching": dict})
    with pytest.raises(TypeError, match="not a figure"):
        common.save_results("bad", {"table": object()})


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_bench_run_writes_one_file_per_section_with_its_numbers(tmp_path):
    """`python -m benchmarks.run` at toy sizes: each section's JSON holds numbers, and the index lists them."""
    result = subprocess.run([sys.executable, "-m", "benchmarks.run", "--tiny", "--only", "throughput", "memory",
                             "--results-dir", str(tmp_path)], cwd=ROOT, env=_env(), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "tiny"
    index = json.loads((folder / "index.json").read_text())
    assert index["files"] == ["memory.json", "throughput-cpu.json"]
    assert set(index["section_seconds"]) == {"throughput", "memory"}
    throughput = json.loads((folder / "throughput-cpu.json").read_text())
    rates = throughput["sequences_per_s"]
    assert set(rates) == {"rnn_ae-bs16", "conv_ae-bs16", "transformer_ae-bs16"}
    assert all(isinstance(v, float) and v > 0 for v in rates.values())
    memory = json.loads((folder / "memory.json").read_text())
    assert memory["1x"]["n_series"] == 60 and memory["1x"]["peak_rss_mb"] > 50
    for saved in (index, throughput, memory):
        assert saved["machine"]["cpu_count"] >= 1 and "class '" not in json.dumps(saved)


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_gpu_check_without_cuda_fails_in_one_line():
    result = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check"], cwd=ROOT,
                            env=_env(CUDA_VISIBLE_DEVICES=""), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert lines == [gpu_check.NO_CUDA], lines


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_make_gpu_check_without_cuda_fails_before_the_gpu_tests():
    """All `gpu` tests skipping is not a pass: the target stops at the CUDA check, non-zero."""
    result = subprocess.run(["make", "-s", "gpu-check", f"PY={sys.executable}"], cwd=ROOT,
                            env=_env(CUDA_VISIBLE_DEVICES=""), capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert gpu_check.NO_CUDA in result.stderr
    assert "skipped" not in result.stdout and "passed" not in result.stdout  # pytest never ran


def _baseline(path: Path, trials_per_hour: float, epochs_per_s: float, n_trials: int = gpu_check.N_TRIALS) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({
        "n_trials": n_trials, "epochs_per_trial": gpu_check.EPOCHS,
        "machine": {"cpu": "Test CPU", "usable_cores": 2, "date": "2026-12-01T10:00:00+00:00",
                    "git_commit": "abcdef0123456789"},
        "sweep": {"trials_per_hour": trials_per_hour, "epochs_per_s": epochs_per_s}}))


def test_gpu_ratios_divide_by_the_baseline_file_and_name_it(tmp_path):
    path = tmp_path / "cpu-sharing.json"
    best = {"trials_per_hour": 3600.0, "epochs_per_s": 48.0}
    _baseline(path, trials_per_hour=36.0, epochs_per_s=0.5)
    line = gpu_check.baseline_line(best, gpu_check.load_baseline(path), path)
    assert "100x trials/hour" in line and "96x epochs/s" in line  # 3600 / 36, 48 / 0.5
    assert str(path) in line and "abcdef0123" in line and "2026-12-01" in line and "Test CPU" in line


def test_without_a_baseline_for_this_sweep_no_ratio_is_printed(tmp_path):
    best = {"trials_per_hour": 3600.0, "epochs_per_s": 48.0}
    missing = tmp_path / "none.json"
    assert gpu_check.load_baseline(missing) is None
    line = gpu_check.baseline_line(best, None, missing)
    assert "not compared" in line and "make gpu-baseline" in line and "x trials/hour" not in line
    other_sweep = tmp_path / "other.json"
    _baseline(other_sweep, 36.0, 0.5, n_trials=gpu_check.N_TRIALS + 1)
    assert gpu_check.load_baseline(other_sweep) is None



MACHINE = {"date": "2026-12-02T03:00:00+00:00", "git_commit": "0123456789abcdef", "cpu": "Test CPU",
           "usable_cores": 2, "gpu": [], "torch": "2.13.0"}


def _bench_quick_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "bench-quick"
    folder.mkdir()
    (folder / "index.json").write_text(json.dumps({"command": "python -m benchmarks.run --quick", "machine": MACHINE}))
    return folder


def test_the_benchmark_table_reads_each_figure_from_the_file_its_row_names(tmp_path):
    """Hand-made results files: every row shows their numbers (and MISSED where a target is missed)."""
    from benchmarks import summary

    folder = _bench_quick_folder(tmp_path)
    (folder / "batching-cpu.json").write_text(json.dumps({
        "summary": {"default_ratio": 0.25, "loss_diff": 0.001}, "target_holds": True,
        "table": {"bucket-padded": {"epoch_s": 1.0}, "random-packed": {"epoch_s": 4.0}}}))
    (folder / "sweep.json").write_text(json.dumps({
        "overhead": {"overhead_per_trial_s": 1.5, "overhead_share": 0.15, "sweep_fixed_cost_s": 4.0, "startup_s": 4.5},
        "pruning": {"default_pruner": "successive_halving", "epochs_saved": 0.32, "best_diff": 0.0,
                    "target_holds": False},
        "parallel": {"speedup": 1.41, "target_holds": False}}))
    (folder / "quality.json").write_text(json.dumps({
        "budget": {"n_trials": 4, "epochs": 60}, "data_sets": {
            "A": {"metrics": {"latent.svm_accuracy": 0.9, "raw.svm_accuracy": 0.8,
                              "latent.spectral.nmi": 0.4, "raw.spectral.nmi": 0.3}},
            "B": {"metrics": {"latent.svm_accuracy": 0.7, "raw.svm_accuracy": 0.66,
                              "latent.spectral.nmi": 0.5, "raw.spectral.nmi": 0.6}}}}))
    table = {row[0]: row for row in summary.rows(folder)}
    assert table["latents vs raw series on TEST (`experiment=latent`): RBF-SVM accuracy, spectral NMI"][1] == (
        "A: SVM 0.90 vs 0.80, NMI 0.40 vs 0.30; B: SVM 0.70 vs 0.66, NMI 0.50 vs 0.60 (4 trials × 60 epochs) — MISSED")
    assert table["bucketed + padded vs random + packed epoch"][1] == (
        "0.25× (1.00 s vs 4.00 s), val loss within 0.1% — holds")
    assert table["sweep overhead per trial, MLflow on"][1] == "+1.50 s (15%), plus 4.0 s once per sweep — MISSED"
    assert table["start-up to first training step"][1] == "4.5 s — MISSED"  # the target: under 3 s
    assert table["where that trial's time goes (median trial; other: Hydra's job set-up)"][1] == "not yet measured"
    assert table["`experiment=latent`, 40 trials on ArrowHead: wall time in epochs"][1] == "not yet measured"
    assert table["default pruner vs none"][1] == "successive_halving: 32% fewer epochs, best value +0.0% — MISSED"
    assert table["`n_jobs=2` vs `1` (joblib, equal trials)"][1] == "1.41× trials/min — MISSED"
    memory = "peak RSS of one default run, its own process, 1× / 4× / 16× data"
    assert table[memory][1] == "not yet measured" and table[memory][3] == "`memory/memory.json`"
    assert table["trials sharing one GPU (1 / 8 / 16 per GPU)"][1].startswith("not yet measured")
    assert table["two runs at once vs one alone, defaults"][1] == "not yet measured"
    (folder / "sharing.json").write_text(json.dumps({"sharing": {"target": 1.1, "target_holds": False, "runs": {
        "defaults (conv_ae)": {"ratio": 1.12, "floor": 1.1}, "rnn_ae": {"ratio": 1.41, "floor": 1.5},
        "defaults, trainer.num_threads=2 (before)": {"ratio": 9.0}}}}))
    table = {row[0]: row for row in summary.rows(folder)}
    assert table["two runs at once vs one alone, defaults"][1] == (
        "1.12× the epoch time of one run alone (defaults (conv_ae)) — MISSED; not judged: rnn_ae 1.41×")
    assert table["`make bench-quick` wall time, all sections"][1] == "not yet measured (no run of every section)"
    (folder / "index.json").write_text(json.dumps({
        "command": "python -m benchmarks.run --quick", "machine": MACHINE, "total_seconds": 960.0,
        "sections_run": ["batching", "gpu", "memory", "quality", "sharing", "sweep", "throughput"]}))
    table = {row[0]: row for row in summary.rows(folder)}
    assert table["`make bench-quick` wall time, all sections"][1] == "16.0 min — MISSED"
    assert "commit 0123456789" in summary.provenance(folder) and "2026-12-02" in summary.provenance(folder)


def test_the_speed_rows_read_the_per_trial_breakdown_and_the_latent_share(tmp_path):
    from benchmarks import summary

    folder = _bench_quick_folder(tmp_path)
    (folder / "sweep.json").write_text(json.dumps({
        "overhead": {"overhead_per_trial_s": 0.5, "overhead_share": 0.05, "sweep_fixed_cost_s": 4.0, "startup_s": 2.5,
                     "runs": [{}, {}, {}], "breakdown_s": {"ask": 0.02, "epochs": 9.0, "label_free": 0.25}},
        "pruning": {"default_pruner": "successive_halving", "epochs_saved": 0.5, "best_diff": 0.0, "target_holds": True},
        "parallel": {"speedup": 1.85, "target_holds": True}}))
    (tmp_path / "speed").mkdir()
    (tmp_path / "speed" / "latent-share.json").write_text(json.dumps({
        "epochs_share": 0.8, "wall_s": 200.0, "median_trial_s": {"startup": 0.5, "epochs": 4.0}}))
    table = {row[0]: row for row in summary.rows(folder)}
    assert table["sweep overhead per trial, MLflow on"][1] == (
        "+0.50 s (5%, median of 3 runs), plus 4.0 s once per sweep — holds")
    assert table["where that trial's time goes (median trial; other: Hydra's job set-up)"][1] == (
        "ask 0.02, epochs 9.00, label-free 0.25 s")
    assert table["start-up to first training step"][1] == "2.5 s — holds"
    assert table["`experiment=latent`, 40 trials on ArrowHead: wall time in epochs"][1] == (
        "80% of 200 s; median trial: startup 0.50, epochs 4.00 s — MISSED")
    assert table["`n_jobs=2` vs `1` (joblib, equal trials)"][1] == "1.85× trials/min — holds"


@pytest.mark.parametrize("outside, verdict", [(1.2, "holds"), (3.0, "MISSED")])
def test_the_overhead_row_judges_the_time_outside_the_epochs_and_shows_the_wall_clock(tmp_path, outside, verdict):
    from benchmarks import summary

    folder = _bench_quick_folder(tmp_path)
    (folder / "sweep.json").write_text(json.dumps({
        "overhead": {"overhead_per_trial_s": -3.3, "overhead_share": -0.11, "sweep_fixed_cost_s": 4.0,
                     "bare_per_trial_s": 24.0, "startup_s": 2.5, "runs": [{}, {}, {}],
                     "outside_epochs_overhead_per_trial_s": outside, "outside_epochs_overhead_share": outside / 24,
                     "cli_epochs_per_trial_s": 21.0, "bare_epochs_per_trial_s": 25.5},
        "pruning": {"default_pruner": "successive_halving", "epochs_saved": 0.5, "best_diff": 0.0, "target_holds": True},
        "parallel": {"speedup": 1.85, "target_holds": True}}))
    table = {row[0]: row for row in summary.rows(folder)}
    assert table["sweep overhead per trial, MLflow on"][1] == (
        f"+{outside:.2f} s outside the epochs on 24 s trials ({100 * outside / 24:.0f}%, median of 3 runs); "
        f"wall clock -3.30 s (-11%), epochs 21.0 s per trial vs 25.5 s bare; plus 4.0 s once per sweep — {verdict}")


def _committed_results(dest: Path) -> Path:
    """benchmarks/results/ as committed (HEAD), not as a local `make bench-quick` left it."""
    listed = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "-r", "--name-only", "HEAD", "benchmarks/results"],
                            capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot tell committed results from local ones")
    for name in listed.stdout.split():
        target = dest / Path(name).relative_to("benchmarks/results")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(subprocess.run(["git", "-C", str(ROOT), "show", f"HEAD:{name}"], capture_output=True,
                                          check=True).stdout)
    return dest


def test_the_benchmark_tables_in_docs_are_the_ones_the_committed_results_give(tmp_path):
    """No hand-typed figure: docs/benchmarks.md's tables are `python -m benchmarks.summary` (bench-quick,
    and `memory --memory`) over the committed files."""
    from benchmarks import summary

    page = (ROOT / "docs" / "benchmarks.md").read_text()
    results = _committed_results(tmp_path / "results")
    for folder, headers, rows, provenance in (
            (results / "bench-quick", summary.HEADERS, summary.rows, summary.provenance(results / "bench-quick")),
            (results / "memory", summary.MEMORY_HEADERS, summary.memory_rows,
             summary.provenance(results / "memory", "memory.json"))):
        assert rows(folder), f"no committed results in {folder.name}/"
        assert markdown_table(headers, rows(folder)) in page, (
            f"docs/benchmarks.md's {folder.name} table differs from the committed results files: commit them, "
            "then paste `python -m benchmarks.summary` into it")
        assert provenance in page


def test_the_memory_row_reads_each_runs_own_peak_not_the_runners(tmp_path):
    """A memory.json without `measure` read the benchmark runner's peak: the row takes memory/ instead."""
    from benchmarks import summary

    (tmp_path / "bench-quick").mkdir()
    (tmp_path / "memory").mkdir()
    old = {"1x": {"n_series": 1, "peak_rss_mb": 1474.0, "seconds": 1.0}}
    (tmp_path / "bench-quick" / "memory.json").write_text(json.dumps(old))
    own = {"measure": "VmHWM", "1x": {"n_series": 1, "peak_rss_mb": 512.0, "seconds": 1.0}}
    (tmp_path / "memory" / "memory.json").write_text(json.dumps(own))
    row = next(r for r in summary.rows(tmp_path / "bench-quick") if r[0].startswith("peak RSS"))
    assert row[1] == "0.50 GB (1x)" and row[3] == "`memory/memory.json`"
    (tmp_path / "bench-quick" / "memory.json").write_text(json.dumps({**own, "1x": {**own["1x"], "peak_rss_mb": 1024.0}}))
    row = next(r for r in summary.rows(tmp_path / "bench-quick") if r[0].startswith("peak RSS"))
    assert row[1] == "1.00 GB (1x)" and row[3] == "`bench-quick/memory.json`"


def test_the_gpu_row_reads_the_sharing_file_and_says_when_it_is_partial(tmp_path):
    from benchmarks import summary

    (tmp_path / "gpu-check").mkdir()
    (tmp_path / "bench-quick").mkdir()
    rows = {"1": {"epochs_per_s": 2.0}, "8": {"epochs_per_s": 12.0}}
    (tmp_path / "gpu-check" / "sharing.json").write_text(json.dumps({"result": rows, "complete": False}))
    gpu_row = summary.rows(tmp_path / "bench-quick")[-1]
    assert gpu_row[1] == "6.0× the epochs/s of one trial — MISSED (partial: rows 1, 8 only)"
    rows["16"] = {"epochs_per_s": 20.0}
    (tmp_path / "gpu-check" / "sharing.json").write_text(json.dumps({"result": rows, "complete": True}))
    assert summary.rows(tmp_path / "bench-quick")[-1][1] == "10.0× the epochs/s of one trial — holds"


def test_the_latent_tables_in_docs_are_the_ones_the_committed_runs_give(tmp_path):
    """docs/latent-recipe.md's tables are `python -m benchmarks.summary <run> --latent|--variants` over
    the committed files: the 3-seed table, the sets kept aside, and the variants the recipe was chosen from."""
    from benchmarks import summary

    results = _committed_results(tmp_path / "results")
    page = (ROOT / "docs" / "latent-recipe.md").read_text()
    tables = {"latent-seeds": (summary.LATENT_HEADERS, summary.latent_rows),
              "latent-carryover": (summary.LATENT_HEADERS, summary.latent_rows),
              "latent-explore": (summary.VARIANT_HEADERS, summary.variant_rows),
              "latent-sizes": (summary.SIZE_HEADERS, summary.size_rows)}
    flags = {"latent-explore": "variants", "latent-sizes": "sizes"}
    for run, (headers, rows) in tables.items():
        found = rows(results / run)
        assert found, f"no committed results in benchmarks/results/{run}/"
        assert markdown_table(headers, found) in page, (
            f"docs/latent-recipe.md lacks the table of benchmarks/results/{run}/: paste "
            f"`python -m benchmarks.summary {run} --{flags.get(run, 'latent')}`")


def test_readme_is_a_front_page_that_links_pages_that_exist():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250, "README is the front page: move the detail into docs/"
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)\)", readme))
    assert {"docs/sweeps.md", "docs/benchmarks.md", "docs/latent-recipe.md", "docs/troubleshooting.md"} <= linked
    assert [page for page in linked if not (ROOT / page).exists()] == []


def test_latent_rows_say_no_where_the_raw_series_win_and_name_a_tie(tmp_path):
    from benchmarks import summary

    def metrics(svm, nmi):
        return {"latent.svm_accuracy": svm, "raw.svm_accuracy": 0.8, "latent.spectral.nmi": nmi,
                "raw.spectral.nmi": 0.3, "latent.kmeans.nmi": 0.2, "raw.kmeans.nmi": 0.2}

    for seed, (svm, nmi) in enumerate([(0.85, 0.35), (0.85, 0.25), (0.75, 0.35), (0.8, 0.35), (0.8, 0.3)]):
        body = {"seed": seed, "machine": {"git_commit": "abcdef0123"},
                "data_sets": {"ArrowHead": {"sweep_s": 100.0, "metrics": metrics(svm, nmi)}}}
        (tmp_path / f"quality-seed{seed}.json").write_text(json.dumps(body))
    rows = summary.latent_rows(tmp_path)
    assert [r[5] for r in rows] == ["yes", "NO", "NO", "yes (SVM tied)", "yes (SVM and NMI tied)"]
    assert rows[0][2] == "0.850 / 0.800" and rows[1][3] == "0.250 / 0.300" and rows[0][7] == "abcdef0"


def test_variant_rows_never_average_runs_scored_by_different_svm_rules(tmp_path):
    """Files written before issue 30 carry no `svm_rules`: they get their own row, labelled as such."""
    from benchmarks import summary

    metrics = {"latent.svm_accuracy": 0.9, "raw.svm_accuracy": 0.8, "latent.spectral.nmi": 0.4, "raw.spectral.nmi": 0.3}
    for seed, rules in enumerate([None, "TS2Vec fit_svm", "TS2Vec fit_svm"]):
        body = {"seed": seed, "overrides": ["trainer.max_epochs=5"], "machine": {"git_commit": "abcdef0123"},
                "data_sets": {"ArrowHead": {"metrics": metrics}}, **({"svm_rules": rules} if rules else {})}
        (tmp_path / f"q-s{seed}.json").write_text(json.dumps(body))
    rows = summary.variant_rows(tmp_path)
    assert [(r[0], r[3]) for r in rows] == [("TS2Vec fit_svm", "1, 2"), (summary.PREVIOUS_SVM_RULES, "0")]


def test_the_selection_tables_in_docs_are_the_ones_the_committed_tables_give(tmp_path):
    """docs/latent-recipe.md's "Selecting latents without labels" tables are `bench_selection --summarise` over the
    committed per-trial tables of benchmarks/results/latent-selection/."""
    from benchmarks import bench_selection

    folder = _committed_results(tmp_path / "results") / "latent-selection"
    summary = bench_selection.summarise(folder)
    page = (ROOT / "docs" / "latent-recipe.md").read_text()
    assert summary["n_studies"] >= 1
    assert bench_selection.render(summary) in page and bench_selection.per_study_table(summary) in page, (
        "docs/latent-recipe.md lacks the tables of benchmarks/results/latent-selection/: paste "
        "`python -m benchmarks.bench_selection --summarise --run-name latent-selection`")


def test_selection_summary_picks_each_criterions_best_trial_and_orients_val_loss():
    import pandas as pd

    from benchmarks.bench_selection import study_summary

    trials = pd.DataFrame({"trial": [0, 1, 2], "val_loss": [0.3, 0.1, 0.2], "trustworthiness": [0.9, 0.8, 0.7],
                           "test_svm_accuracy": [0.5, 0.9, 0.7], "test_spectral_nmi": [0.1, 0.3, 0.2]})
    summary = study_summary(trials, {"test_svm_accuracy": 0.6, "test_spectral_nmi": 0.2})
    assert summary["trials_at_or_above_raw"] == 2  # trials 1 and 2; trial 0 is below raw on both
    out = summary["criteria"]
    assert out["val_loss"]["chosen_trial"] == 1 and out["val_loss"]["rho_test_svm_accuracy"] == pytest.approx(1.0)
    assert out["trustworthiness"]["chosen_trial"] == 0 and out["trustworthiness"]["chosen_test_svm_accuracy"] == 0.5
    assert out["trustworthiness"]["rho_test_spectral_nmi"] == pytest.approx(-0.5)


def test_selection_summary_gives_the_chance_that_a_random_trial_is_at_or_above_raw_in_every_run(tmp_path):
    import pandas as pd

    from benchmarks.bench_selection import per_study_table, summarise

    raw = {"test_svm_accuracy": 0.6, "test_spectral_nmi": 0.2}
    svm = {"A-seed0": [0.7, 0.7, 0.5, 0.7], "B-seed0": [0.7, 0.5, 0.5, 0.5]}  # 3 of 4, then 1 of 4 at or above
    for stem, accuracy in svm.items():
        pd.DataFrame({"trial": range(4), "val_loss": [0.4, 0.3, 0.2, 0.1], "rankme": [1.0, 2, 3, 4],
                      "trustworthiness": [0.9, 0.8, 0.7, 0.6], "stability": [0.1, 0.2, 0.3, 0.4],
                      "silhouette": [0.4, 0.3, 0.2, 0.1], "svm_cv_accuracy": [0.5, 0.6, 0.7, 0.8],
                      "test_svm_accuracy": accuracy, "test_spectral_nmi": 0.3}).to_parquet(tmp_path / f"trials-{stem}.parquet")
        (tmp_path / f"raw-{stem}.json").write_text(json.dumps({"raw": raw}))
    summary = summarise(tmp_path)
    assert summary["checks"]["chance_every_run_for_a_random_trial"] == pytest.approx(3 / 4 * 1 / 4)
    assert "| 3 of 4 " in per_study_table(summary) and "| 1 of 4 " in per_study_table(summary)


def test_the_cv_estimator_benchmark_scores_each_saved_model_both_ways(tmp_path):
    """bench_cv_estimator reads a saved model's TRAIN latents only: one unshuffled pass at C=inf (the
    estimate before) and `svm_cv_score` (ten shuffled passes), beside the TEST scores it was given."""
    import numpy as np
    import pandas as pd
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.svm import SVC

    from benchmarks.bench_cv_estimator import score_model, summarise
    from latentsweep.analysis.svm import svm_cv_score

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 14)
    x = rng.normal(0, 1.5, (28, 3)) + y[:, None] * 2.0
    split = np.array(["train"] * 10 + ["val"] * 2 + ["test"] * 2 + ["train"] * 10 + ["val"] * 2 + ["test"] * 2)
    frame = pd.DataFrame({"split": split, "label_index": y, **{f"z{i}": x[:, i] for i in range(3)}})
    frame.loc[split == "test", ["z0", "z1", "z2"]] = 1e6  # TEST rows must not move either estimate
    path = tmp_path / "base" / "ArrowHead-s3.parquet"
    path.parent.mkdir()
    frame.to_parquet(path)
    path.with_suffix(".json").write_text(json.dumps({"svm": 0.8, "nmi": 0.3, "raw_svm": 0.7, "raw_nmi": 0.2}))
    row = score_model(path)
    fit = split != "test"
    single = cross_val_score(SVC(C=np.inf, gamma="scale"), x[fit], y[fit], cv=StratifiedKFold(5)).mean()
    assert row["variant"] == "base" and row["seed"] == 3 and row["test_svm"] == 0.8
    assert row["one_pass"] == pytest.approx(single)
    assert row["repeated"] == pytest.approx(svm_cv_score(x[fit], y[fit]))
    table = pd.DataFrame({"one_pass": [0.5, 0.1, 0.3], "repeated": [0.2, 0.9, 0.5],
                          "test_svm": [0.7, 0.9, 0.8], "test_nmi": [0.3, 0.1, 0.2]})
    assert summarise(table)["repeated"]["rho_svm"] == pytest.approx(1.0)
    assert summarise(table)["repeated"]["rho_nmi"] == pytest.approx(-1.0)
