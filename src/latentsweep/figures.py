"""Matplotlib figures that tracking logs: loss curves and reconstructions.

Uses the non-interactive Agg backend so figures render on headless GPU boxes and in CI. Margins
are fixed rather than computed by `tight_layout`, which draws each figure once more to measure it:
a sweep logs these two figures for every trial, and that extra draw was about a third of their
time (issue 21).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch import Tensor  # noqa: E402


def loss_curve(history: Sequence[dict], title: str = "loss") -> plt.Figure:
    epochs = [h["epoch"] + 1 for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, style in (("train_loss", "-"), ("val_loss", "--")):
        if history and key in history[0]:
            ax.plot(epochs, [h[key] for h in history], style, marker="o", ms=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_yscale("log" if all(h.get("val_loss", 1) > 0 for h in history) else "linear")
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.12, top=0.92)
    return fig


def reconstructions(originals: Sequence[Tensor], recons: Sequence[Tensor], ids: Sequence[str],
                    image_shape: tuple[int, int] | None = None, title: str = "reconstructions") -> plt.Figure:
    """Series overlays (each at its own length, one colour per channel) or image pairs."""
    n = len(originals)
    if image_shape is not None:
        fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.4), squeeze=False)
        for i, (x, r) in enumerate(zip(originals, recons)):
            for row, img in enumerate((x, r)):
                ax = axes[row][i]
                ax.imshow(np.asarray(img.float().cpu()).reshape(image_shape), cmap="gray", vmin=0, vmax=1)
                ax.set_xticks([])
                ax.set_yticks([])
            axes[0][i].set_title(str(ids[i]), fontsize=7)
        axes[0][0].set_ylabel("original")
        axes[1][0].set_ylabel("reconstruction")
    else:
        cols = min(3, n)
        rows = -(-n // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.4 * rows), squeeze=False)
        for i, (x, r) in enumerate(zip(originals, recons)):
            ax = axes[i // cols][i % cols]
            x, r = np.asarray(x.float().cpu()), np.asarray(r.float().cpu())
            for c in range(x.shape[1]):
                color = f"C{c}"
                ax.plot(x[:, c], color=color, lw=1.0, label=f"ch{c}" if i == 0 else None)
                ax.plot(r[:, c], color=color, lw=1.0, ls="--")
            ax.set_title(f"{ids[i]} (T={x.shape[0]})", fontsize=8)
            ax.tick_params(labelsize=7)
        for j in range(n, rows * cols):
            axes[j // cols][j % cols].axis("off")
        axes[0][0].legend(fontsize=6, loc="upper right", title="solid: data, dashed: recon",
                          title_fontsize=6)
    fig.suptitle(title)
    height = fig.get_figheight()  # inches: keep ~0.45 in for the suptitle and ~0.35 in at the bottom
    fig.subplots_adjust(left=0.06 if image_shape is None else 0.08, right=0.98, bottom=0.35 / height,
                        top=1 - 0.45 / height, wspace=0.2 if image_shape is None else 0.08,
                        hspace=0.45 if image_shape is None else 0.15)
    return fig


def close(fig: plt.Figure) -> None:
    plt.close(fig)
