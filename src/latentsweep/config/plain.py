"""`plain(node)`: a config node (OmegaConf or any mapping) as a plain, resolved dict."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omegaconf import OmegaConf


def plain(node: Mapping[str, Any]) -> dict[str, Any]:
    """Resolved interpolations, no OmegaConf types: what `instantiate` and our checks expect."""
    if OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)  # type: ignore[return-value]
    return dict(node)
