"""Device choice and per-process settings."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from ..errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """`auto`: CUDA, else MPS, else CPU. A forced device that is missing is a config error."""
    name = name.lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("trainer.device=cuda but no CUDA device is visible — use trainer.device=auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("trainer.device=mps but MPS is not available — use trainer.device=auto or cpu")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown trainer.device={name!r} — use auto, cpu, cuda, cuda:N or mps") from exc


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_deterministic(on: bool) -> None:
    """`trainer.deterministic`: PyTorch's deterministic algorithms, so that a resumed run ends
    with the same weights on CUDA too (on the CPU it does without). Set for every run, on or off:
    sweep workers are reused across trials."""
    if on:  # cuBLAS needs a fixed workspace for deterministic matmuls (read when CUDA starts)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # Only when it changes something: the first call imports torch modules that cost 1.5 s of
    # start-up on 2 cores (issue 21), and the default (off) needs no call.
    if on or torch.are_deterministic_algorithms_enabled():
        torch.use_deterministic_algorithms(on)


def configure_cuda(deterministic: bool = False) -> None:
    """Settings that pay for these small models on NVIDIA GPUs (see the GPU-box issue). cuDNN's
    autotuner picks kernels by timing, so it is off when runs must repeat bit for bit."""
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
