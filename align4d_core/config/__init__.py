"""Every setting of align4d: the typed schema, presets and profiles, and how config files are read.

:mod:`.schema` holds the dataclasses (one per stage, nested in :class:`RunConfig`), :mod:`.profiles`
the ablation presets and device profiles, :mod:`.loading` the typed reading of settings (a config
file's URI is read by :mod:`align4d_core.io.settings`).
"""

from align4d_core.config.loading import build_run_config, from_dict, merge, to_dict
from align4d_core.config.profiles import CPU_PROFILE, PRESETS, PROFILES, Profile, profile_for
from align4d_core.config.schema import *  # noqa: F403 - the schema is this package's public face
from align4d_core.config.schema import __all__ as _schema

__all__ = [
    *_schema,
    "CPU_PROFILE",
    "PRESETS",
    "PROFILES",
    "Profile",
    "build_run_config",
    "from_dict",
    "merge",
    "profile_for",
    "to_dict",
]
