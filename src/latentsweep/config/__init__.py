"""Config schemas (`schema`, `zoo`, `sources`, `tasks`), their checks, and their registration."""

from .registry import register_configs
from .schema import COMMON_DATA_FIELDS, SCHEMAS, validate

__all__ = ["COMMON_DATA_FIELDS", "SCHEMAS", "register_configs", "validate"]
