"""Security rules (issue 7): no pickle in anything we write or read, local-only UIs by default.

Pickle runs arbitrary code on load, so a shared checkpoint or MLflow artifact must never be one:
weights are safetensors, other tensors are read with `torch.load(..., weights_only=True)`, configs
are YAML, and models are registered as models-from-code pyfuncs. The scan reads our sources with
`ast` (comments and docstrings that *mention* pickle are fine); a self-test proves it catches each
pattern, so a clean result means something.
"""

from __future__ import annotations

import ast
import os
import subprocess
from pathlib import Path

import pytest

from latentsweep.pipeline import train
from tests.hardening_kit import empty_store

ROOT = Path(__file__).resolve().parents[1]
OUR_CODE = [ROOT / "src", ROOT / "train.py", ROOT / "analyze.py", ROOT / "benchmarks"]

PICKLING_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal"}
# (module path, attribute): calls that write or read pickles
FORBIDDEN_CALLS = {("joblib", "dump"), ("joblib", "load"), ("mlflow.pytorch", "log_model"),
                   ("mlflow.pytorch", "save_model"), ("mlflow.pytorch", "load_model"),
                   ("mlflow.sklearn", "log_model"), ("mlflow.sklearn", "save_model")}


def _dotted(node: ast.AST) -> str:
    """'a.b.c' for a Name/Attribute chain, '' otherwise."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _kw(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def scan_source(source: str, filename: str = "<src>") -> list[str]:
    """Every pickle use in `source`, as 'file:line: what'."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.Import):
            found += [f"{where}: import {a.name}" for a in node.names if a.name.split(".")[0] in PICKLING_MODULES]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if module.split(".")[0] in PICKLING_MODULES:
                found.append(f"{where}: from {module} import ...")
            found += [f"{where}: from {module} import {a.name}" for a in node.names
                      if (module, a.name) in FORBIDDEN_CALLS or (module == "mlflow" and a.name == "pytorch")]
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            module, _, attr = name.rpartition(".")
            if (module, attr) in FORBIDDEN_CALLS:
                found.append(f"{where}: {name}()")
            if name == "torch.load":
                flag = _kw(node, "weights_only")
                if not (isinstance(flag, ast.Constant) and flag.value is True):
                    found.append(f"{where}: torch.load without weights_only=True")
            if attr in ("to_pickle", "read_pickle"):
                found.append(f"{where}: .{attr}()")
            if attr == "load" and module in ("np", "numpy"):
                flag = _kw(node, "allow_pickle")
                if flag is not None and not (isinstance(flag, ast.Constant) and flag.value is False):
                    found.append(f"{where}: numpy.load(allow_pickle=...)")
            if name in ("mlflow.pyfunc.log_model", "mlflow.pyfunc.save_model"):
                model = _kw(node, "python_model")  # an instance is cloudpickled; a path (code) is not
                if model is not None and not (isinstance(model, ast.Constant) or _dotted(getattr(model, "func", model)) == "str"):
                    found.append(f"{where}: {name}(python_model=<object>) is cloudpickled")
    return found


def _our_files() -> list[Path]:
    files = []
    for entry in OUR_CODE:
        files += [entry] if entry.is_file() else sorted(entry.rglob("*.py")) if entry.exists() else []
    return files


def test_the_scanner_catches_every_pattern():
    bad = '''
import pickle
import cloudpickle
from joblib import dump
import joblib, torch, mlflow, numpy as np, pandas as pd
torch.load("x.pt")
torch.load("x.pt", weights_only=False)
joblib.dump(model, "m.joblib")
mlflow.pytorch.log_model(model, "model")
mlflow.pyfunc.log_model("m", python_model=Wrapper())
pd.read_pickle("t.pkl")
frame.to_pickle("t.pkl")
np.load("a.npy", allow_pickle=True)
'''
    found = scan_source(bad)
    assert len(found) == 11, "\n".join(found)
    good = '''
import torch, mlflow
"""pickle is mentioned in docs only"""
torch.load("x.pt", map_location="cpu", weights_only=True)
mlflow.pyfunc.save_model(path="p", python_model=str(here / "model.py"))
'''
    assert scan_source(good) == []


def test_our_code_never_pickles():
    files = _our_files()
    assert any(f.name == "checkpoint.py" for f in files)  # the scan sees the code that saves state
    found = [hit for f in files for hit in scan_source(f.read_text(), str(f.relative_to(ROOT)))]
    assert found == [], "pickle in our code:\n" + "\n".join(found)


def test_a_run_stores_no_pickle(make_cfg, tmp_path):
    """What a run writes (MLflow artifacts, checkpoints) holds no pickle files or pickle streams."""
    empty_store(tmp_path / "mlruns")  # where make_cfg's store lives: skips the ~5 s schema migration
    train(make_cfg(["trainer.max_epochs=1", "data.n_series=40"]))
    written = [f for f in tmp_path.rglob("*") if f.is_file() and ("artifacts" in f.parts or "checkpoint" in f.parts)]
    assert any(f.name == "weights.safetensors" for f in written)
    assert any(f.name == "checkpoint-0.safetensors" for f in written)  # optimiser and RNG state in it too
    for f in written:
        assert f.suffix not in (".pkl", ".pickle", ".joblib", ".pt"), f
        assert not f.read_bytes()[:2].startswith(b"\x80"), f"{f} starts like a pickle stream"


@pytest.mark.parametrize("target, port", [("ui", "5000"), ("dashboard", "8080")])
def test_make_ui_and_dashboard_bind_loopback_by_default(target, port):
    env = {k: v for k, v in os.environ.items() if k not in ("HOST", "PORT")}
    for extra in ({}, {"HOST": "0.0.0.0"}):  # an exported HOST must not open them to the network
        out = subprocess.run(["make", "-s", "-n", "-C", str(ROOT), target], capture_output=True, text=True,
                             env={**env, **extra}, check=True).stdout
        assert "--host 127.0.0.1" in out and "0.0.0.0" not in out, out
        assert f"--port {port}" in out
    wanted = subprocess.run(["make", "-s", "-n", "-C", str(ROOT), target, "HOST=0.0.0.0"], capture_output=True,
                            text=True, env=env, check=True).stdout
    assert "--host 0.0.0.0" in wanted  # opening it up stays an explicit choice on the command line


# --- config can't run arbitrary code: every dotted path from config goes through the whitelist ---

UNCHECKED_LOOKUPS = {"get_method", "get_class", "get_object", "_locate", "import_module", "locate"}


def scan_execution(source: str, filename: str = "<src>") -> list[str]:
    """Dotted-path lookups that bypass Hydra's execution whitelist, as 'file:line: what'."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        where = f"{filename}:{getattr(node, 'lineno', '?')}"
        if isinstance(node, ast.ImportFrom):
            found += [f"{where}: from {node.module} import {a.name}" for a in node.names
                      if a.name in UNCHECKED_LOOKUPS and (node.module or "").startswith(("hydra", "importlib", "pydoc"))]
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            attr = name.rpartition(".")[2]
            if attr in UNCHECKED_LOOKUPS and name.split(".")[0] in ("hydra", "importlib", "pydoc", attr):
                found.append(f"{where}: {name}()")
            if attr == "instantiate" and _kw(node, "_execution_whitelist_") is None:
                found.append(f"{where}: {name}() without _execution_whitelist_")
    return found


def test_the_execution_scanner_catches_every_pattern():
    bad = '''
from hydra.utils import get_method, instantiate
import hydra, importlib
get_method(cfg.custom_search_space)
hydra.utils.get_class(path)
importlib.import_module(name)
instantiate(cfg.model)
hydra.utils.instantiate({"_target_": path, "_partial_": True})
'''
    found = scan_execution(bad)
    assert len(found) == 6, "\n".join(found)
    good = '''
from hydra.utils import instantiate
instantiate(cfg, _execution_whitelist_=("latentsweep.models.*",))
importlib.util.find_spec("aeon")
'''
    assert scan_execution(good) == []


def test_our_code_resolves_config_targets_only_through_the_whitelist():
    """README: a config cannot run arbitrary code (custom_search_space included)."""
    found = [hit for f in _our_files() for hit in scan_execution(f.read_text(), str(f.relative_to(ROOT)))]
    assert found == [], "config-controlled lookups outside the execution whitelist:\n" + "\n".join(found)
