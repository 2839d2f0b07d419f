"""The MLflow UI in a real browser (issue 7): a tiny sweep, `mlflow ui` on loopback, headless Chromium.

Debian's Chromium (`/usr/bin/chromium`), driven by Playwright's Python package: no browser download,
no network beyond 127.0.0.1. The test sees the study's parent run, expands it to its trial runs,
opens the best trial and previews figures/reconstructions.png among its artifacts; a screenshot
is kept in the test's tmp dir (and copied to $LATENTSWEEP_UI_SCREENSHOT when that is set).
"""

from __future__ import annotations

import os
import shutil
import struct
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from tests.hardening_kit import empty_store, mlflow_server, run_cli

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.slow


def _png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # the IHDR chunk
    return width, height


def test_sweep_runs_and_the_best_reconstruction_in_the_mlflow_ui(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} missing (apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no `playwright install`)")

    uri = empty_store(tmp_path / "mlruns")
    result = run_cli(tmp_path, "model.cell=choice(gru,lstm)", "trainer.max_epochs=2", "hydra.sweeper.n_trials=2",
                     "tracking.n_reconstructions=3", f"tracking.uri={uri}", sweep=True)
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="rnn_ae-synthetic", storage=f"sqlite:///{tmp_path / 'sweeps' / 'optuna.db'}")
    best_run = study.best_trial.user_attrs["mlflow_run_id"]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("latentsweep").experiment_id
    (parent,) = client.search_runs([exp], "tags.sweep_parent = 'true'")
    children = client.search_runs([exp], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(r.data.tags["optuna_trial"] for r in children) == ["0", "1"]
    local_png = Path(client.download_artifacts(best_run, "figures/reconstructions.png", str(tmp_path)))

    shot = tmp_path / "mlflow-ui-best-run.png"
    with mlflow_server(tmp_path / "mlruns", command="ui") as (url, _), sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_default_timeout(30_000)
            page.goto(f"{url}/#/experiments/{exp}/runs")
            # the study's parent run is listed; expanding it shows one row per trial run
            row = page.locator("[role=row]", has_text=parent.info.run_name)
            row.first.wait_for()
            row.first.locator("button[data-component-id*='runnamecellrenderer']").click()
            for child in children:
                link = page.locator(f"a[href='#/experiments/{exp}/runs/{child.info.run_id}']")
                link.first.wait_for()
                assert child.info.run_name in link.first.inner_text()
            page.screenshot(path=str(tmp_path / "mlflow-ui-runs.png"))

            # the best trial's run: its artifacts hold the reconstruction figure, previewed as an image
            page.goto(f"{url}/#/experiments/{exp}/runs/{best_run}/artifacts")
            page.get_by_text("figures", exact=True).first.click()
            page.get_by_text("reconstructions.png", exact=True).first.click()
            page.get_by_text("figures/reconstructions.png").first.wait_for()
            preview = page.locator("img[src^='blob:']").first
            preview.wait_for()
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=preview.element_handle())
            shown = preview.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            assert tuple(shown) == _png_size(local_png)  # the stored figure itself, decoded by the browser
            page.screenshot(path=str(shot))
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("LATENTSWEEP_UI_SCREENSHOT"):
        shutil.copy(shot, os.environ["LATENTSWEEP_UI_SCREENSHOT"])
