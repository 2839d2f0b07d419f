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
    """One event over the series; shapes are in relative time, so a longer recording of the
    same event is the same shape sampled more densely (as with a sensor at a fixed rate recording
    slower or faster motions)."""
    u = t / max(len(t) - 1, 1)
    if kind == "burst":  # a shake: an enveloped oscillation of 2-3 cycles
        center, width = rng.uniform(0.3, 0.7), rng.uniform(0.12, 0.2)
        period = rng.uniform(0.1, 0.16)
        return 1.4 * np.exp(-0.5 * ((u - center) / width) ** 2) * np.sin(2 * np.pi * (u - center) / period)
    if kind == "chirp":  # a swing that speeds up: 1 to ~4 cycles per series
        f0, f1 = rng.uniform(0.5, 1.0), rng.uniform(3.0, 4.5)
        return np.sin(2 * np.pi * (f0 * u + 0.5 * (f1 - f0) * u**2) + rng.uniform(-0.3, 0.3))
    if kind == "impact":  # a knock: a sharp spike and a damped ring-down
        onset = rng.uniform(0.15, 0.5)
        dt = np.clip(u - onset, 0, None)
        ring = np.exp(-dt / rng.uniform(0.06, 0.12)) * np.cos(2 * np.pi * dt / rng.uniform(0.12, 0.2))
        return np.where(u >= onset, 2.0 * ring, 0.0)
    if kind == "pulse_train":  # periodic taps: a square wave of 3-5 pulses
        period = rng.uniform(0.2, 0.33)
        return np.where(((u + rng.uniform(0, period)) % period) < 0.5 * period, 1.0, -1.0)
    raise ValueError(f"unknown event kind {kind!r}")


def _gravity(n_channels: int, rng: np.random.Generator) -> np.ndarray:
    """Gravity (1 g) along a direction tilted (typically ~25 degrees) from the last axis."""
    g = rng.normal(scale=0.3, size=n_channels)
    g[-1] = 1.0
    return g / np.linalg.norm(g)


def make_synthetic(
    n_series: int = 1200,
    shortest: int = 24,
    longest: int = 480,
    n_channels: int = 3,
    noise: float = 0.1,
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
