"""`make gpu-wheels`: which packages travel to an offline GPU box (benchmarks/wheelhouse.py)."""

from __future__ import annotations

from importlib.metadata import version

from benchmarks.wheelhouse import ALWAYS_THERE, RUNTIME_ROOTS, closure, read_have


def test_the_closure_holds_our_stack_at_the_installed_versions_and_not_the_project():
    found = closure(RUNTIME_ROOTS)
    assert "latentsweep" not in found  # travels as source
    for name in ("hydra-core", "omegaconf", "optuna", "sqlalchemy", "mlflow", "mlflow-skinny", "torch"):
        assert found[name] == version(name)


def test_the_have_list_takes_commas_newlines_comments_and_any_spelling(tmp_path):
    have = tmp_path / "have.txt"
    have.write_text("# the image\nPyYAML, scikit_learn,\n  numpy  # pinned there\n")
    assert read_have(have) == {"pyyaml", "scikit-learn", "numpy"}
    assert ALWAYS_THERE.match("torch") and ALWAYS_THERE.match("nvidia-cudnn-cu13")
    assert not ALWAYS_THERE.match("torchmetrics")
