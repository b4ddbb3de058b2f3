"""Reading settings: a config file's mapping, checked against the typed schema, into a RunConfig.

The order is fixed (DESIGN.md §9): defaults, then the device's profile, then the preset, then the
values of a config file, which win. Types and ranges are checked by pydantic against the dataclasses
of :mod:`.schema` in strict mode: ``{"optimize": {"steps": "7"}}`` is refused, not read as 7.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields, is_dataclass
from typing import TypeVar, get_type_hints

import pydantic

T = TypeVar("T")


def to_dict(config) -> dict:
    """A JSON-ready dict of a (nested) config dataclass."""
    return asdict(config)


def _class_at(cls: type, path: tuple) -> type | None:
    """The settings class holding the field at ``path`` (for naming it in a message)."""
    for key in path[:-1]:
        if not is_dataclass(cls):
            return None
        hint = get_type_hints(cls).get(key) if isinstance(key, str) else None
        if hint is None or not is_dataclass(hint):
            return None
        cls = hint
    return cls if is_dataclass(cls) else None


def _message(cls: type, error: pydantic.ValidationError) -> str:
    """One line per problem: the key, the value given and what was expected."""
    lines = []
    for problem in error.errors():
        path = tuple(problem["loc"])
        key = ".".join(str(p) for p in path)
        if problem["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
            owner = _class_at(cls, path)
            known = ", ".join(f.name for f in fields(owner)) if owner is not None else "?"
            name = f"{owner.__name__}.{path[-1]}" if owner is not None else key
            lines.append(f"unknown setting {name} (at {key}); known: {known}")
        else:
            lines.append(f"setting {key} = {problem['input']!r}: {problem['msg']}")
    return "; ".join(lines)


def from_dict(cls: type[T], values: dict) -> T:
    """The settings class ``cls`` from a (partial) mapping, every key and type checked.

    Missing keys take their defaults; lists are read as the tuples the schema declares. A wrong
    type, a value out of range or an unknown key raises ValueError naming the key, the value and
    what was expected.
    """
    try:
        return pydantic.TypeAdapter(cls).validate_json(json.dumps(values), strict=True)
    except pydantic.ValidationError as error:
        raise ValueError(_message(cls, error)) from None
    except TypeError as error:  # a value JSON cannot hold (a set, an object)
        raise ValueError(f"settings must be plain JSON values: {error}") from None


def check_overrides(overrides: dict, what: str = "settings") -> None:
    """Refuse overrides that would not build a RunConfig (for profiles, checked when defined)."""
    from align4d_core.config.schema import RunConfig

    try:
        from_dict(RunConfig, merge(to_dict(RunConfig()), overrides))
    except ValueError as error:
        raise ValueError(f"{what}: {error}") from None


def merge(base: dict, override: dict) -> dict:
    """``override`` laid over ``base``, recursively for nested dicts."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def build_run_config(device_type: str, values: dict | None = None, preset: str | None = None):
    """The run config: defaults, then the device profile, then the preset, then ``values``.

    ``values`` (e.g. a config file) win over everything, so an explicit setting is never replaced
    by a profile; ``values["profile"]`` picks the profile ("auto" by default).
    """
    from align4d_core.config.profiles import PRESETS, profile_for
    from align4d_core.config.schema import RunConfig

    values = dict(values or {})
    profile = values.pop("profile", "auto")
    merged = merge(to_dict(RunConfig()), profile_for(device_type, profile))
    if preset is not None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
        merged = merge(merged, {"method": to_dict(PRESETS[preset])})
    return from_dict(RunConfig, merge(merged, values))
