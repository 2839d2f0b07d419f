"""What `train()` returns to the sweeper, and in which direction the sweep should go.

Each objective is a function of the finished run (best model, data, loop result) plus a
direction; sweeps read the direction from here so `objective=...` is the only switch.

- `objective=val_loss` (default), `recon_mse`, `silhouette`, `probe_accuracy`, `svm_cv_accuracy`,
  `latent_dim`, `n_parameters`.
  `recon_mse` (validation MSE at each series' own length, deterministic latent) is what a family
  sweep selects on, as it means the same for every model family.
- With `task=classify`: `val_macro_f1`, `val_accuracy` (maximised).
- `silhouette@<k>`: k-means with k clusters (default k: the number of classes).
- `label_free` (maximised): a score of the TRAIN latents that never reads a label, for unlabelled
  series (`analysis.labelfree`; which score was measured against labelled sets: docs/latent-recipe.md,
  "Selecting latents without labels"). Every run also logs each candidate score as
  `label_free.<name>`, beside the objective.
- `a|b`: `a` when the data has what `a` needs (labels, or a k), else `b`: the recipe's
  `svm_cv_accuracy|label_free` selects with labels when there are some and without them otherwise.
  The alternatives must share a direction; the run logs the one it used (param `objective_used`).
- Several objectives (a Pareto front): `objective=[val_loss,latent_dim]` (a Hydra list; the
  string `val_loss+latent_dim` means the same). `train()` then returns a list of values, in that
  order, and `directions(objective)` gives their directions.

The latent-quality objectives use the functions of `latentsweep.analysis.metrics`, so a sweep's
number means the same as the one `python analyze.py` reports.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError

SVM_OBJECTIVE_ROWS = 3000  # svm_cv_accuracy: cross-validate on at most this many training series


@dataclass(frozen=True)
class Objective:
    direction: str  # "minimize" | "maximize"
    compute: Callable[..., float]
    needs_labels: bool = False
    takes_k: bool = False  # accepts a "@<k>" suffix (number of clusters)


def _encode(context: dict[str, Any], subset: Any):
    from .analysis.latents import encode_series

    return encode_series(context["model"], subset, with_errors=False, device=context.get("device")).latents


def _latents(context: dict[str, Any], split: str):
    """Eval-mode latents of one split, computed once per `objective_value` call."""
    cache = context["_cache"]
    if split not in cache:
        cache[split] = _encode(context, getattr(context["data"], split))
    return cache[split]


def _best_val_loss(*, result: Any, **_: Any) -> float:
    return float(result.best_val_loss)


def _silhouette(*, k: int | None = None, **context: Any) -> float:
    """Silhouette of k-means on the validation latents: how clustered the latent space is."""
    from .analysis.metrics import kmeans_silhouette

    k = k or context["data"].spec.n_classes
    if not k:
        raise ConfigError(_needs_k_message("silhouette"))
    return kmeans_silhouette(_latents(context, "val"), int(k))


def _probe_accuracy(**context: Any) -> float:
    """Validation accuracy of a logistic regression fitted on the training latents."""
    from .analysis.metrics import probe

    data = context["data"]
    return probe(_latents(context, "train"), data.train.labels.cpu().numpy(),
                 _latents(context, "val"), data.val.labels.cpu().numpy(),
                 n_classes=data.spec.n_classes).accuracy


def _svm_cv_accuracy(**context: Any) -> float:
    """The yardstick of `analyze.py` (TS2Vec's SVM rules, `analysis.svm`) on the TRAIN latents alone
    (train + validation rows, both carved from TRAIN; TEST is never read): the cross-validated
    accuracy of the C those rules choose, C=inf on a tiny TRAIN, averaged over shuffled fold splits
    on a small TRAIN (`analysis.svm.svm_cv_score`). Up to SVM_OBJECTIVE_ROWS series;
    beyond, a stratified subsample keeps each trial's evaluation to seconds."""
    import numpy as np

    from .analysis.metrics import is_collapsed
    from .analysis.svm import svm_cv_score

    data = context["data"]
    latents = np.concatenate([_latents(context, "train"), _latents(context, "val")])
    labels = np.concatenate([data.train.labels.cpu().numpy(), data.val.labels.cpu().numpy()])
    if not np.isfinite(latents).all() or is_collapsed(latents):
        return 0.0  # diverged, or every series at one point up to float noise (the silhouette's rule): the worst
    cv_accuracy = svm_cv_score(latents, labels, max_samples=SVM_OBJECTIVE_ROWS)
    if cv_accuracy is None:
        raise ConfigError("objective=svm_cv_accuracy needs at least 2 training series of each class "
                          "— use objective=probe_accuracy or val_loss")
    return float(cv_accuracy)


def _label_free_scores(context: dict[str, Any]) -> dict[str, float]:
    """Every label-free candidate on the TRAIN latents (train + validation rows), computed once per
    run; labels are never read (`analysis.labelfree`)."""
    cache = context["_cache"]
    if "label_free" not in cache:
        import numpy as np

        from .analysis.labelfree import (
            label_free_scores,
            raw_length,
            scored_rows,
            train_raw_features,
        )

        data = context["data"]
        if "train" in cache and "val" in cache:  # encoded for the objective already
            latents = np.concatenate([cache["train"], cache["val"]])
            raw = train_raw_features([data.train, data.val])
        else:  # only the rows the scores keep (the same rows: the subsample is seeded)
            rows = scored_rows(len(data.train), len(data.val))
            parts = [subset.subset(idx) for subset, idx in zip((data.train, data.val), rows)]
            latents = np.concatenate([_encode(context, part) for part in parts])
            raw = train_raw_features(parts, raw_length([data.train, data.val]))
        cache["label_free"] = label_free_scores(latents, raw)
    return cache["label_free"]


def _label_free(**context: Any) -> float:
    """The label-free selection score (`LABEL_FREE_SCORE` of `analysis.labelfree`)."""
    from .analysis.labelfree import LABEL_FREE_SCORE

    return _label_free_scores(context)[LABEL_FREE_SCORE]


def label_free_metrics(**context: Any) -> dict[str, float]:
    """`label_free.<candidate>` for every candidate score and the data-chosen k, to log beside the
    objective (pass the `_cache` the objective used: the latents are encoded once)."""
    context.setdefault("_cache", {})
    from .analysis.metrics import limited_threads

    with limited_threads(1):
        return {f"label_free.{name}": float(v) for name, v in _label_free_scores(context).items()}


def _recon_mse(*, model: Any, data: Any, device: Any = None, **_: Any) -> float:
    """Validation reconstruction MSE at each series' own length: comparable across model families
    (vrae's ELBO and BCE losses, resampled fixed-length inputs all scored the same way)."""
    from .analysis.latents import native_reconstruction_mse

    return native_reconstruction_mse(model, data.val, data.val_reference, device=device)


def _latent_dim(**context: Any) -> float:
    """Size of the representation (for a reconstruction-vs-compactness Pareto front)."""
    return float(_latents(context, "val").shape[1])


def _n_parameters(*, model: Any, **_: Any) -> float:
    return float(sum(p.numel() for p in model.parameters()))


def _best_epoch_score(metric: str) -> Callable[..., float]:
    """A classifier's per-epoch score (task=classify) at the epoch whose weights were kept."""
    def compute(*, result: Any, **_: Any) -> float:
        row = next((h for h in result.history if h["epoch"] == result.best_epoch), {})
        if metric not in row:
            raise ConfigError(f"objective={metric} needs task=classify (no {metric} was recorded) "
                              "— add task=classify or use objective=val_loss")
        return float(row[metric])
    return compute


OBJECTIVES: dict[str, Objective] = {
    "val_loss": Objective("minimize", _best_val_loss),
    "recon_mse": Objective("minimize", _recon_mse),  # the family sweep's default: comparable across models
    "silhouette": Objective("maximize", _silhouette, takes_k=True),
    "label_free": Objective("maximize", _label_free),  # unlabelled series: never reads a label
    "probe_accuracy": Objective("maximize", _probe_accuracy, needs_labels=True),
    "svm_cv_accuracy": Objective("maximize", _svm_cv_accuracy, needs_labels=True),
    "latent_dim": Objective("minimize", _latent_dim),
    "n_parameters": Objective("minimize", _n_parameters),
    # task=classify: validation scores of the kept (lowest val_loss) epoch
    "val_macro_f1": Objective("maximize", _best_epoch_score("val_macro_f1"), needs_labels=True),
    "val_accuracy": Objective("maximize", _best_epoch_score("val_accuracy"), needs_labels=True),
}


def _parse(name: str) -> tuple[str, int | None]:
    """'silhouette@8' -> ('silhouette', 8); 'val_loss' -> ('val_loss', None)."""
    base, sep, arg = str(name).strip().partition("@")
    if base not in OBJECTIVES:
        raise ConfigError(f"unknown objective={name!r} — choose one of {sorted(OBJECTIVES)} "
                          "(or a list such as objective=[val_loss,latent_dim])")
    if not sep:
        return base, None
    if not OBJECTIVES[base].takes_k or not arg.isdigit() or int(arg) < 2:
        raise ConfigError(f"objective={name!r}: only silhouette takes '@<k>', with an integer k >= 2 "
                          "— e.g. objective=silhouette@4")
    return base, int(arg)


def _alternatives(name: str) -> list[str]:
    """'svm_cv_accuracy|label_free' -> ['svm_cv_accuracy', 'label_free'], each checked; one direction."""
    options = [part.strip() for part in str(name).split("|")]
    for option in options:
        _parse(option)
    if len({OBJECTIVES[_parse(o)[0]].direction for o in options}) > 1:
        raise ConfigError(f"objective={name!r}: its alternatives go in different directions — "
                          "join objectives that are all maximised (or all minimised) with '|'")
    return options


def _usable(name: str, spec: Any) -> bool:
    """Whether the data (its `DataSpec`) has what objective `name` needs: labels, or a k for silhouette."""
    base, k = _parse(name)
    if spec is None or spec.n_classes:
        return True
    return not OBJECTIVES[base].needs_labels and not (OBJECTIVES[base].takes_k and k is None)


def resolve(objective: str | Sequence[str], spec: Any) -> str | list[str]:
    """`objective` with each 'a|b' replaced by its first alternative the data supports (else its
    last, which `check_objective` then rejects with its own message); other names unchanged."""
    chosen = []
    for name in objective_names(objective):
        options = _alternatives(name)
        chosen.append(next((o for o in options if _usable(o, spec)), options[-1]))
    return chosen[0] if len(chosen) == 1 else chosen


def objective_names(objective: str | Sequence[str]) -> list[str]:
    """The objectives of `objective` in order: a name, 'a+b', or a list (e.g. Hydra's ListConfig)."""
    if isinstance(objective, str):
        names = [part.strip() for part in objective.split("+")]
    else:
        names = [str(part).strip() for part in objective]
    if not names or any(not n for n in names):
        raise ConfigError(f"empty objective in {objective!r} — e.g. objective=val_loss or "
                          "objective=[val_loss,latent_dim]")
    if len(set(names)) != len(names):
        raise ConfigError(f"objective {list(names)} repeats a name — list each objective once")
    for name in names:
        _alternatives(name)
    return names


def is_multi(objective: str | Sequence[str]) -> bool:
    return len(objective_names(objective)) > 1


def check_objective(objective: str | Sequence[str], spec: Any = None) -> None:
    """Fail before training, not after it: unknown names, and label-based objectives on unlabelled
    data (where no alternative of an 'a|b' fits)."""
    resolved = resolve(objective, spec)
    for name in objective_names(resolved):
        if _usable(name, spec):
            continue
        base, _ = _parse(name)
        raise ConfigError(_needs_labels_message(name) if OBJECTIVES[base].needs_labels else _needs_k_message(name))


def _needs_k_message(name: str) -> str:
    return (f"objective={name} needs a number of clusters and the data has no labels "
            f"— use objective={name}@<k>")


def _needs_labels_message(name: str) -> str:
    return (f"objective={name} needs labelled series and these have none — set "
            "data.label_column=<column> or use objective=label_free (or val_loss, silhouette@<k>)")


def get_objective(name: str) -> Objective:
    """The objective `name` (for 'a|b': `a`'s; the alternatives share a direction)."""
    return OBJECTIVES[_parse(_alternatives(name)[0])[0]]


def objective_value(objective: str | Sequence[str], **context: Any) -> float | list[float]:
    """The value(s) to report: a float for one objective, a list (same order) for several."""
    context.setdefault("_cache", {})  # latents shared by the objectives of one call
    data = context.get("data")
    resolved = resolve(objective, data.spec if data is not None else None)
    values = [_value(name, context) for name in objective_names(resolved)]
    return values if len(values) > 1 else values[0]


def _value(name: str, context: dict[str, Any]) -> float:
    base, k = _parse(name)
    obj = OBJECTIVES[base]
    data = context.get("data")
    if obj.needs_labels and (data is None or data.train.labels is None):
        raise ConfigError(_needs_labels_message(name))
    from .analysis.metrics import limited_threads

    with limited_threads(1):  # small matrices; parallel trials must not stall each other's BLAS
        if obj.takes_k:
            return float(obj.compute(k=k, **context))
        return float(obj.compute(**context))


def direction(objective: str | Sequence[str]) -> str:
    """'minimize' | 'maximize' of a single objective; several objectives need `directions`."""
    dirs = directions(objective)
    if len(dirs) > 1:
        raise ConfigError(f"objective={objective_names(objective)} has several directions {dirs} "
                          "— a multi-objective sweep must use objectives.directions()")
    return dirs[0]


def directions(objective: str | Sequence[str]) -> list[str]:
    """One direction per objective, in the order `objective_value` returns the values."""
    return [get_objective(name).direction for name in objective_names(objective)]


def metric_name(name: str) -> str:
    """An MLflow-safe metric name for one objective ('silhouette@4' -> 'objective.silhouette_k4')."""
    return "objective." + re.sub(r"[^0-9A-Za-z_.\-/ ]", "_", str(name).replace("@", "_k"))


def objective_metrics(objective: str | Sequence[str], value: float | Sequence[float]) -> dict[str, float]:
    """Metrics to log: `objective` (single objective only) and `objective.<name>` for each."""
    names = objective_names(objective)
    values = [float(v) for v in value] if isinstance(value, (list, tuple)) else [float(value)]
    metrics = {metric_name(n): v for n, v in zip(names, values)}
    if len(values) == 1:
        metrics["objective"] = values[0]
    return metrics
