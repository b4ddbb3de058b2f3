"""Config files: read from any URI (JSON or YAML) and turned into a checked RunConfig.

A bad file (not YAML, not a mapping) or a bad setting in it is an :class:`InputError` naming the
file, so that every command reports it the same way (exit code 2 from the CLI).
"""

from __future__ import annotations

from typing import Any

from align4d_core.config import build_run_config
from align4d_core.errors import InputError
from align4d_core.io import storage


def read_settings(uri: str | None) -> dict:
    """A config file's contents (JSON or YAML, any URI): overrides of the defaults; {} for None."""
    if uri is None:
        return {}
    import yaml

    try:
        values = yaml.safe_load(storage.read_text(uri)) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML/JSON: {exc}", uri=uri) from None
    if not isinstance(values, dict):
        raise InputError("a config file must hold a mapping of settings", uri=uri)
    return values


def run_config_from(uri: str | None, device_type: str, preset: str | None = None, **fixed: Any):
    """The RunConfig of a config file (``fixed`` keys laid under it, e.g. ``profile="paper"``), with
    any bad setting an :class:`InputError` naming the file."""
    values = {**fixed, **read_settings(uri)}
    try:
        return build_run_config(device_type, values, preset)
    except (ValueError, TypeError) as exc:
        raise InputError(str(exc), uri=uri or "--preset") from None
