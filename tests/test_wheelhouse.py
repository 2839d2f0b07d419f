"""`make gpu-wheels`: which packages travel to an offline GPU box (benchmarks/wheelhouse.py)."""

from __future__ import annotations

import pytest

from benchmarks.wheelhouse import ALWAYS_THERE, RUNTIME_ROOTS, closure, read_have


def _dist(site, name: str, version: str, *requires: str) -> None:
    info = site / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", *(f"Requires-Dist: {r}" for r in requires)]
    (info / "METADATA").write_text("\n".join(lines) + "\n")


def test_the_closure_follows_requirements_and_markers_of_installed_distributions(tmp_path, monkeypatch):
    """Hand-made distributions with a known answer: a cycle, an extra, markers, odd spelling."""
    site = tmp_path / "site"
    _dist(site, "lsfake-alpha", "1.0", "lsfake-beta>=2", "lsfake-gamma; extra == 'docs'",
          "LSFake_Delta; python_version >= '3'", "lsfake-epsilon; python_version < '3'")
    _dist(site, "lsfake-beta", "2.0", "lsfake-alpha")  # a cycle
    _dist(site, "lsfake-delta", "0.3")
    _dist(site, "lsfake-gamma", "9.9")  # only behind an extra: not needed
    monkeypatch.syspath_prepend(str(site))
    assert closure(["lsfake-alpha"]) == {"lsfake-alpha": "1.0", "lsfake-beta": "2.0", "lsfake-delta": "0.3"}
    with pytest.raises(SystemExit, match="lsfake-zeta is not installed"):
        closure(["lsfake-zeta"])


def test_the_closure_of_our_runtime_holds_the_stack_but_not_the_project():
    found = closure(RUNTIME_ROOTS)
    assert "latentsweep" not in found  # travels as source
    for name in ("hydra-core", "omegaconf", "optuna", "sqlalchemy", "mlflow", "mlflow-skinny", "torch",
                 "pytest-timeout"):
        assert name in found, name


def test_the_have_list_takes_commas_newlines_comments_and_any_spelling(tmp_path):
    have = tmp_path / "have.txt"
    have.write_text("# the image\nPyYAML, scikit_learn,\n  numpy  # pinned there\n")
    assert read_have(have) == {"pyyaml", "scikit-learn", "numpy"}
    assert ALWAYS_THERE.match("torch") and ALWAYS_THERE.match("nvidia-cudnn-cu13")
    assert not ALWAYS_THERE.match("torchmetrics")
