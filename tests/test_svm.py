"""The RBF-SVM yardstick: C is chosen on TRAIN only, and TEST only decides the reported accuracy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.svm import SVC

from latentsweep.analysis.svm import FALLBACK_C, SVM_CS, choose_svm_c, svm_accuracy
from latentsweep.errors import DataError


def _blobs(n_per_class: tuple[int, ...], seed: int = 0, spread: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """1-d blobs at -3, +3, +9, ...: one per class, far apart compared with their spread."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(-3 + 6 * c, spread, (n, 1)) for c, n in enumerate(n_per_class)])
    y = np.concatenate([np.full(n, c) for c, n in enumerate(n_per_class)])
    return x, y


def test_separable_toy_case_by_hand():
    # Balanced, separated classes: every C in the grid classifies every fold perfectly, and ties go
    # to the smallest C (the smoothest boundary). Accuracy on TEST is counted by hand: 4 test points
    # lie in their own class's blob, and the fifth is labelled against its blob.
    x, y = _blobs((10, 10))
    x_test = np.array([[-3.0], [-2.5], [3.0], [3.4], [-3.1]])
    y_test = np.array([0, 0, 1, 1, 1])
    result = svm_accuracy(x, y, x_test, y_test)
    assert result.C == SVM_CS[0] == 1e-4 and result.cv_accuracy == 1.0
    assert result.predictions.tolist() == [0, 0, 1, 1, 0] and result.accuracy == pytest.approx(4 / 5)


def test_c_follows_the_training_data():
    # 20 vs 6 series: at C=1e-4 the margin violations are nearly free, so the SVM calls every point
    # the majority class; cross-validation on TRAIN must therefore pick a larger C.
    x, y = _blobs((20, 6))
    assert set(SVC(C=1e-4, gamma="scale").fit(x, y).predict(x)) == {0}
    C, cv_accuracy = choose_svm_c(x, y)
    assert C > 1e-4 and C in SVM_CS and cv_accuracy == 1.0


def test_test_rows_never_influence_c():
    x, y = _blobs((12, 12, 12), spread=2.5)  # overlapping classes: C matters, and CV is imperfect
    rng = np.random.default_rng(1)
    x_test, y_test = _blobs((30, 30, 30), seed=2, spread=2.5)
    reference = svm_accuracy(x, y, x_test, y_test, seed=3)
    assert reference.cv_accuracy < 1.0
    altered_tests = [
        (x_test, rng.permutation(y_test)),  # other labels
        (x_test * 100 + 7, (y_test + 1) % 3),  # other features and labels
        (x_test[:5], y_test[:5]),  # other size
    ]
    for xt, yt in altered_tests:
        other = svm_accuracy(x, y, xt, yt, seed=3)
        assert (other.C, other.cv_accuracy) == (reference.C, reference.cv_accuracy)
        # ...while TEST does decide the accuracy: the same SVM's predictions, counted on the new labels
        assert other.accuracy == pytest.approx(float((other.predictions == yt).mean()))
    flipped = svm_accuracy(x, y, x_test, (y_test + 1) % 3, seed=3)
    assert flipped.accuracy != reference.accuracy

    # and TRAIN does decide C: the same TEST with other training labels moves the cross-validation
    shuffled = svm_accuracy(x, rng.permutation(y), x_test, y_test, seed=3)
    assert shuffled.cv_accuracy != reference.cv_accuracy


def test_tiny_classes_fall_back_instead_of_failing():
    x, y = _blobs((6, 3, 1))  # one class has a single training series: no stratified folds
    result = svm_accuracy(x, y, x, y)
    assert result.C == FALLBACK_C and result.cv_accuracy is None and result.accuracy == 1.0
    x, y = _blobs((6, 2))  # two series in the smallest class: 2 folds still work
    assert choose_svm_c(x, y)[1] is not None
    with pytest.raises(DataError, match="at least 2"):
        svm_accuracy(x[y == 0], y[y == 0], x, y)
    with pytest.raises(DataError, match="no test rows"):
        svm_accuracy(x, y, x[:0], y[:0])
