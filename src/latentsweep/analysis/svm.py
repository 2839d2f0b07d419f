"""The usual yardstick of unsupervised series representations: an RBF-SVM, C chosen on TRAIN only.

Protocol of TS2Vec and its successors: fit `SVC(kernel="rbf", gamma="scale")` on the TRAIN
series' representations with `C` picked by stratified cross-validation on TRAIN from
10^-4..10^4, then report accuracy on the official TEST split. The same SVM on the raw
z-normalised series is the baseline, so "the latents beat the raw data" means what it means in
the papers.

`choose_svm_c` only ever receives the TRAIN rows: nothing of TEST can influence C.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import DataError

log = logging.getLogger("latentsweep")

SVM_CS = tuple(float(c) for c in 10.0 ** np.arange(-4, 5))  # 1e-4 ... 1e4, TS2Vec's grid (less C=inf)
FALLBACK_C = 1.0  # scikit-learn's default, when a class has a single TRAIN example (no stratified folds)
MAX_FOLDS = 5
MAX_CV_SAMPLES = 10_000  # cross-validate C on at most this many TRAIN rows (as TS2Vec); the final fit uses all


@dataclass
class SVMResult:
    """An RBF-SVM fitted on TRAIN with C from TRAIN-only cross-validation, scored on TEST."""

    accuracy: float  # on the TEST rows
    C: float
    cv_accuracy: float | None  # mean cross-validated TRAIN accuracy of the chosen C; None: no CV possible
    predictions: np.ndarray


def _svc(C: float):
    from sklearn.svm import SVC

    return SVC(C=C, kernel="rbf", gamma="scale")


def choose_svm_c(x_train: np.ndarray, y_train: np.ndarray, seed: int = 0,
                 max_samples: int = MAX_CV_SAMPLES) -> tuple[float, float | None]:
    """(C, its mean CV accuracy) by stratified k-fold on TRAIN (k = min(5, smallest class)), on at
    most `max_samples` rows (a stratified subsample: an RBF-SVM's cost grows with the square of the rows).

    Ties go to the smaller C (GridSearchCV's rule): the smoother boundary. With a class of a
    single example no stratified split exists, so C falls back to scikit-learn's default.
    """
    from sklearn.model_selection import GridSearchCV, StratifiedKFold, train_test_split

    x_train, y_train = np.asarray(x_train, dtype=np.float64), np.asarray(y_train)
    _, counts = np.unique(y_train, return_counts=True)
    folds = int(min(MAX_FOLDS, counts.min()))
    if folds < 2:
        log.info("RBF-SVM: a class has a single training series, so C is not cross-validated (C=%g)", FALLBACK_C)
        return FALLBACK_C, None
    if len(y_train) > max_samples:
        x_train, _, y_train, _ = train_test_split(x_train, y_train, train_size=max_samples,
                                                  random_state=seed, stratify=y_train)
    search = GridSearchCV(_svc(1.0), {"C": list(SVM_CS)},
                          cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
    search.fit(x_train, y_train)
    return float(search.best_params_["C"]), float(search.best_score_)


def svm_accuracy(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray,
                 seed: int = 0) -> SVMResult:
    """RBF-SVM fitted on TRAIN (C cross-validated on TRAIN only), accuracy on TEST."""
    x_train, y_train = np.asarray(x_train, dtype=np.float64), np.asarray(y_train)
    x_test, y_test = np.asarray(x_test, dtype=np.float64), np.asarray(y_test)
    if len(np.unique(y_train)) < 2:
        raise DataError(f"the training rows hold {len(np.unique(y_train))} class — an SVM needs at least 2")
    if len(y_test) == 0:
        raise DataError("no test rows to score the SVM on — the data needs a test (or validation) split")
    C, cv_accuracy = choose_svm_c(x_train, y_train, seed)
    predictions = _svc(C).fit(x_train, y_train).predict(x_test)
    return SVMResult(float((predictions == y_test).mean()), C, cv_accuracy, predictions)
