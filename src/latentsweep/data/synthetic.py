"""A seeded generator of labelled, variable-length, accelerometer-like series.

Four event classes a wrist or machine sensor would record: a `burst` (enveloped vibration),
a `chirp` (frequency sweep), an `impact` (spike and damped ring-down) and a `pulse_train`
(periodic taps). Each series has 3 channels (x, y, z): the event is projected on a random
direction, gravity points along a tilted axis that varies per series, and sensor noise is added. Lengths are log-uniform, so
the longest series is about 4-5x the median: the case where batching strategy matters.
"""

from __future__ import annotations

import numpy as np

from .series import SeriesSet

CLASSES = ("burst", "chirp", "impact", "pulse_train")


def _event(kind: str, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One event on time steps `t`; rates are in samples, as a real sensor's would be."""
    n = len(t)
    if kind == "burst":
        center, width = rng.uniform(0.3, 0.7) * n, rng.uniform(0.1, 0.25) * n
        period = rng.uniform(6, 12)
        return np.exp(-0.5 * ((t - center) / width) ** 2) * np.sin(2 * np.pi * t / period)
    if kind == "chirp":
        p0, p1 = rng.uniform(30, 50), rng.uniform(6, 10)  # period shrinks along the series
        freq = 1 / p0 + (1 / p1 - 1 / p0) * t / max(n - 1, 1)
        return 0.9 * np.sin(2 * np.pi * np.cumsum(freq))
    if kind == "impact":
        onset = rng.uniform(0.1, 0.5) * n
        dt = np.clip(t - onset, 0, None)
        ring = np.exp(-dt / rng.uniform(6, 20)) * np.cos(2 * np.pi * dt / rng.uniform(5, 9))
        return np.where(t >= onset, 1.8 * ring, 0.0)
    if kind == "pulse_train":
        period = rng.uniform(14, 30)
        duty = rng.uniform(0.25, 0.45)
        return np.where(((t + rng.uniform(0, period)) % period) < duty * period, 1.0, -0.4)
    raise ValueError(f"unknown event kind {kind!r}")


def _gravity(n_channels: int, rng: np.random.Generator) -> np.ndarray:
    """Gravity (1 g) along a direction tilted up to ~60 degrees from the last axis."""
    g = rng.normal(scale=0.6, size=n_channels)
    g[-1] = 1.0
    return g / np.linalg.norm(g)


def make_synthetic(
    n_series: int = 1200,
    shortest: int = 24,
    longest: int = 480,
    n_channels: int = 3,
    noise: float = 0.15,
    seed: int = 0,
    classes: tuple[str, ...] | list[str] = CLASSES,
) -> SeriesSet:
    """Return `n_series` labelled series with lengths log-uniform in [shortest, longest]."""
    if n_series < 1 or shortest < 2 or longest < shortest or n_channels < 1:
        raise ValueError("synthetic data needs n_series >= 1, 2 <= shortest <= longest, "
                         "n_channels >= 1")
    rng = np.random.default_rng(seed)
    series, labels, ids = [], [], []
    for i in range(n_series):
        label = int(rng.integers(len(classes)))
        length = int(np.exp(rng.uniform(np.log(shortest), np.log(longest + 1))))
        length = min(max(length, shortest), longest)
        t = np.arange(length, dtype=np.float64)
        signal = _event(classes[label], t, rng) * rng.uniform(0.7, 1.3)
        direction = rng.normal(size=n_channels)
        direction /= np.linalg.norm(direction) + 1e-12
        x = signal[:, None] * direction[None, :]
        x += _gravity(n_channels, rng)[None, :]  # the sensor's orientation varies per series
        x += rng.normal(scale=noise, size=x.shape)
        series.append(x.astype(np.float32))
        labels.append(label)
        ids.append(f"syn-{i:05d}")
    return SeriesSet.from_arrays(series, ids=ids, labels=labels, class_names=list(classes))
