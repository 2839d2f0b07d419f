"""The RBF-SVM yardstick follows TS2Vec's `fit_svm` rules: C from {1e-4..1e4, inf} by 5-fold CV on
TRAIN, C=inf without a search on a tiny TRAIN, and TEST only decides the reported accuracy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from latentsweep.analysis.svm import (
    REPEAT_BELOW,
    REPEATS,
    SVM_CS,
    fit_svm,
    is_tiny,
    svm_accuracy,
    svm_cv_score,
)
from latentsweep.errors import DataError


def _blobs(n_per_class: tuple[int, ...], seed: int = 0, spread: float = 0.5,
           dims: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Blobs centred at -3, +3, +9, ... on the first axis, one per class, of the given spread.

    Overlapping blobs get `dims` > 1: points in a few dimensions lie far enough apart that the
    hard-margin SVM (C=inf) converges quickly, as it does on real latents."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, spread, (n, dims)) + np.eye(dims)[0] * (-3 + 6 * c)
                        for c, n in enumerate(n_per_class)])
    y = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])
    return x, y


def test_the_grid_is_ts2vecs():
    assert SVM_CS == (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, math.inf)


@pytest.mark.parametrize(("n_per_class", "tiny"), [
    ((24, 25), True),            # 49 series: fewer than 50
    ((25, 25), False),           # 50 series, 25 per class: searched
    ((4,) * 15, True),           # 60 series but 4 per class
    ((5,) * 10 + (1,), True),    # 51 series in 11 classes: 51 // 11 = 4 per class
    ((40, 9, 1), False),         # 50 series, 16 per class on average: searched, though one class has 1
])
def test_tiny_rule(n_per_class, tiny):
    y = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])
    assert is_tiny(y) == tiny


def test_tiny_train_is_fitted_with_hard_margin():
    # 30 distinct points with random labels: no smooth boundary fits them, but an RBF kernel's Gram
    # matrix is positive definite, so the hard-margin SVM (C=inf) separates any labelling exactly.
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (30, 2))
    y = rng.integers(0, 2, 30)
    result = svm_accuracy(x, y, x, y)
    assert result.C == math.inf and result.cv_accuracy is None
    assert result.accuracy == 1.0  # on its own training rows: only a hard margin guarantees this


def test_separable_toy_case_by_hand():
    # 30 + 30 balanced, well-separated series (not tiny): every C classifies every fold perfectly,
    # and ties go to the smallest C. Accuracy on TEST is counted by hand: 4 test points lie in their
    # own class's blob, and the fifth is labelled against its blob.
    x, y = _blobs((30, 30))
    x_test = np.array([[-3.0], [-2.5], [3.0], [3.4], [-3.1]])
    y_test = np.array([0, 0, 1, 1, 1])
    result = svm_accuracy(x, y, x_test, y_test)
    assert result.C == 1e-4 and result.cv_accuracy == 1.0
    assert result.predictions.tolist() == [0, 0, 1, 1, 0] and result.accuracy == pytest.approx(4 / 5)


def test_c_follows_the_training_data():
    # 50 vs 10 series: at C=1e-4 the margin violations are nearly free, so the SVM calls every point
    # the majority class (5/6 of each fold); cross-validation on TRAIN must therefore pick a larger C.
    x, y = _blobs((50, 10))
    _, C, cv_accuracy = fit_svm(x, y)
    assert C > 1e-4 and cv_accuracy == 1.0


def test_test_rows_never_influence_c():
    x, y = _blobs((20, 20, 20), spread=2.5, dims=4)  # overlapping classes: C matters, and CV is imperfect
    rng = np.random.default_rng(1)
    x_test, y_test = _blobs((30, 30, 30), seed=2, spread=2.5, dims=4)
    reference = svm_accuracy(x, y, x_test, y_test)
    assert reference.cv_accuracy < 1.0
    altered_tests = [
        (x_test, rng.permutation(y_test)),  # other labels
        (x_test * 100 + 7, (y_test + 1) % 3),  # other features and labels
        (x_test[:5], y_test[:5]),  # other size
    ]
    for xt, yt in altered_tests:
        other = svm_accuracy(x, y, xt, yt)
        assert (other.C, other.cv_accuracy) == (reference.C, reference.cv_accuracy)
        assert other.accuracy == pytest.approx(float((other.predictions == yt).mean()))
    assert svm_accuracy(x, y, x_test, (y_test + 1) % 3).accuracy != reference.accuracy
    # ... and TRAIN does decide C: other training labels move the cross-validation
    assert svm_accuracy(x, rng.permutation(y), x_test, y_test).cv_accuracy != reference.cv_accuracy


def test_large_train_searches_and_refits_on_a_subsample():
    x, y = _blobs((60, 60), spread=2.0, dims=4)
    svm, C, _ = fit_svm(x, y, max_samples=80)
    assert svm.shape_fit_[0] == 80  # TS2Vec refits the best C on the subsample it searched on
    assert fit_svm(x, y)[0].shape_fit_[0] == 120


def test_cv_score_on_train_alone():
    # Tiny: C=inf on stratified folds, which on well-separated blobs classifies every held-out series;
    # a class of one series has no fold.
    x, y = _blobs((8, 8))
    assert is_tiny(y) and svm_cv_score(x, y) == 1.0
    x, y = _blobs((8, 1))
    assert svm_cv_score(x, y) is None


def test_cv_score_keeps_the_rules_c_and_averages_shuffled_folds_on_a_small_train():
    from sklearn.model_selection import RepeatedStratifiedKFold, StratifiedKFold, cross_val_score
    from sklearn.svm import SVC

    # Small, searched: TS2Vec's C from the grid, its accuracy averaged over REPEATS shuffled 5-fold splits.
    x, y = _blobs((30, 30), spread=2.5, dims=4)
    C = fit_svm(x, y)[1]
    splits = RepeatedStratifiedKFold(n_splits=5, n_repeats=REPEATS, random_state=0)
    expected = cross_val_score(SVC(C=C, kernel="rbf", gamma="scale"), x, y, cv=splits).mean()
    assert svm_cv_score(x, y) == pytest.approx(expected)
    assert svm_cv_score(x, y) == svm_cv_score(x, y)  # seeded: the same latents always score the same
    # Tiny: C=inf, no search, on the same repeated splits.
    x, y = _blobs((12, 12), spread=2.5, dims=4)
    assert is_tiny(y)
    expected = cross_val_score(SVC(C=math.inf, kernel="rbf", gamma="scale"), x, y, cv=splits).mean()
    assert svm_cv_score(x, y) == pytest.approx(expected)
    one_pass = cross_val_score(SVC(C=math.inf, kernel="rbf", gamma="scale"), x, y, cv=StratifiedKFold(5)).mean()
    assert svm_cv_score(x, y) != pytest.approx(one_pass)  # it is not the single unshuffled pass
    # Searched, though one class has a single series: scored on the grid's 5 folds, not refused.
    x, y = _blobs((40, 9, 1), spread=2.5, dims=4)
    assert not is_tiny(y) and 0.0 < svm_cv_score(x, y) <= 1.0
    # Large: one pass is precise enough; the grid's own best score.
    x, y = _blobs((REPEAT_BELOW // 2,) * 2, spread=2.5, dims=4)
    assert svm_cv_score(x, y) == pytest.approx(fit_svm(x, y)[2])


def test_bad_inputs_are_one_line_errors():
    x, y = _blobs((6, 2))
    with pytest.raises(DataError, match="at least 2"):
        svm_accuracy(x[y == 0], y[y == 0], x, y)
    with pytest.raises(DataError, match="no test rows"):
        svm_accuracy(x, y, x[:0], y[:0])
