"""Config schemas and their registration in Hydra's ConfigStore."""

from .schema import COMMON_DATA_FIELDS, SCHEMAS, register_configs, validate

__all__ = ["COMMON_DATA_FIELDS", "SCHEMAS", "register_configs", "validate"]
