"""Schemas for the tasks config groups; merged into the ConfigStore by `schema.register_configs`."""

from __future__ import annotations

SCHEMAS: dict[str, dict[str, type]] = {}
