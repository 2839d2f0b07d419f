"""The yardstick of unsupervised series representations: TS2Vec's `fit_svm`, rule for rule.

TS2Vec and its successors score a representation with an RBF-SVM fitted on TRAIN and report its
accuracy on the official TEST split. Their rules, followed exactly here so our figures sit beside
theirs:

- the features as they are (no scaling), `SVC(kernel="rbf", gamma="scale")`;
- C from {1e-4, ..., 1e4, inf} by 5-fold cross-validation on TRAIN (scikit-learn's `cv=5`: stratified,
  unshuffled folds; ties go to the smaller C);
- no search on a tiny TRAIN (fewer than 5 series per class, or fewer than 50 series): C=inf;
- above 10,000 TRAIN series, C is searched on a stratified subsample of 10,000, and the SVM is the
  one refitted on that subsample.

`fit_svm` and `svm_cv_score` only ever receive TRAIN rows: nothing of TEST can influence C.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import DataError

RULES = "TS2Vec fit_svm"  # written beside every benchmark figure, so figures from other rules are told apart
SVM_CS = (*(float(c) for c in 10.0 ** np.arange(-4, 5)), float("inf"))  # TS2Vec's grid
FOLDS = 5
TINY_PER_CLASS = 5  # fewer TRAIN series per class than this (on average): C=inf, no search
TINY_ROWS = 50  # ... or fewer TRAIN series than this
MAX_CV_SAMPLES = 10_000  # C is searched on at most this many TRAIN rows (a stratified subsample)
REPEATS = 10  # shuffled fold splits that svm_cv_score averages on a small TRAIN ...
REPEAT_BELOW = 500  # ... of fewer series than this (above, one pass is precise enough and costs less)


@dataclass
class SVMResult:
    """An RBF-SVM fitted on TRAIN by TS2Vec's rules, scored on TEST."""

    accuracy: float  # on the TEST rows
    C: float
    cv_accuracy: float | None  # mean CV accuracy of the chosen C on TRAIN; None: a tiny TRAIN, no search
    predictions: np.ndarray


def _svc(C: float):
    from sklearn.svm import SVC

    return SVC(C=C, kernel="rbf", gamma="scale", max_iter=10_000_000)  # TS2Vec's max_iter


def _as_arrays(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.asarray(x, dtype=np.float64), np.asarray(y)


def is_tiny(y_train: np.ndarray) -> bool:
    """TS2Vec's rule for a TRAIN too small to cross-validate C on: `n // n_classes < 5 or n < 50`."""
    n, n_classes = len(y_train), len(np.unique(y_train))
    return n // max(n_classes, 1) < TINY_PER_CLASS or n < TINY_ROWS


def _cv_rows(x: np.ndarray, y: np.ndarray, max_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """All rows, or a stratified subsample of `max_samples` (TS2Vec's, with its random_state=0)."""
    if len(y) <= max_samples:
        return x, y
    from sklearn.model_selection import train_test_split

    x, _, y, _ = train_test_split(x, y, train_size=max_samples, random_state=0, stratify=y)
    return x, y


def _grid_search(x: np.ndarray, y: np.ndarray):
    """GridSearchCV over SVM_CS with `cv=5` (stratified, unshuffled), refitted on the best C."""
    import warnings

    from sklearn.model_selection import GridSearchCV

    with warnings.catch_warnings():  # a class with fewer than 5 series: scikit-learn warns, and copes
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        return GridSearchCV(_svc(1.0), {"C": list(SVM_CS)}, cv=FOLDS).fit(x, y)


def fit_svm(x_train: np.ndarray, y_train: np.ndarray, max_samples: int = MAX_CV_SAMPLES):
    """TS2Vec's `fit_svm`: (the fitted SVC, its C, the mean CV accuracy of that C on TRAIN or None
    for a tiny TRAIN, where C=inf is fitted on every row without a search)."""
    x_train, y_train = _as_arrays(x_train, y_train)
    if is_tiny(y_train):
        return _svc(float("inf")).fit(x_train, y_train), float("inf"), None
    search = _grid_search(*_cv_rows(x_train, y_train, max_samples))
    return search.best_estimator_, float(search.best_params_["C"]), float(search.best_score_)


def svm_cv_score(x_train: np.ndarray, y_train: np.ndarray, max_samples: int = MAX_CV_SAMPLES) -> float | None:
    """The yardstick on TRAIN alone (what a sweep may select on): the cross-validated accuracy of the
    C the rules choose (C=inf on a tiny TRAIN); None when a class has a single series, so no fold can
    hold it out.

    The C is TS2Vec's; its accuracy is re-estimated over REPEATS shuffled stratified fold splits when
    TRAIN holds fewer than REPEAT_BELOW series. One unshuffled 5-fold pass over ArrowHead's 36 series
    moves in steps of 1/36 and barely ranked models (Spearman 0.10 against TEST accuracy over 72 trained
    models); ten shuffled passes ranked them at 0.41 (benchmarks/results/latent-cv/). Deterministic:
    the shuffles are seeded."""
    x_train, y_train = _as_arrays(x_train, y_train)
    if is_tiny(y_train):
        C, folds = float("inf"), int(min(FOLDS, np.unique(y_train, return_counts=True)[1].min()))
        if folds < 2:
            return None
    else:  # searched on the grid's own folds, as fit_svm does; a class smaller than a fold is coped with
        x_train, y_train = _cv_rows(x_train, y_train, max_samples)
        search = _grid_search(x_train, y_train)
        if len(y_train) >= REPEAT_BELOW:
            return float(search.best_score_)
        C, folds = float(search.best_params_["C"]), FOLDS
    return _repeated_cv_accuracy(C, x_train, y_train, folds)


def _repeated_cv_accuracy(C: float, x: np.ndarray, y: np.ndarray, folds: int) -> float:
    """The mean held-out accuracy over REPEATS seeded stratified fold splits: `cross_val_score`'s
    figure, in a plain loop (its joblib and scorer machinery cost more than these tiny fits; issue 29)."""
    import warnings

    from sklearn.model_selection import RepeatedStratifiedKFold

    splits = RepeatedStratifiedKFold(n_splits=folds, n_repeats=REPEATS, random_state=0)
    with warnings.catch_warnings():  # a class with fewer series than folds: scikit-learn warns, and copes
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        scores = [float((_svc(C).fit(x[fit], y[fit]).predict(x[held]) == y[held]).mean())
                  for fit, held in splits.split(x, y)]
    return float(np.mean(scores))


def svm_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                 max_samples: int = MAX_CV_SAMPLES) -> SVMResult:
    """TS2Vec's `fit_svm` on TRAIN, then its accuracy on TEST."""
    x_train, y_train = _as_arrays(x_train, y_train)
    x_test, y_test = _as_arrays(x_test, y_test)
    if len(np.unique(y_train)) < 2:
        raise DataError(f"the training rows hold {len(np.unique(y_train))} class — an SVM needs at least 2")
    if len(y_test) == 0:
        raise DataError("no test rows to score the SVM on — the data needs a test (or validation) split")
    svm, C, cv_accuracy = fit_svm(x_train, y_train, max_samples)
    predictions = svm.predict(x_test)
    return SVMResult(float((predictions == y_test).mean()), C, cv_accuracy, predictions)
