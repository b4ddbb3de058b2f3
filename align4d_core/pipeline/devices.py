"""Which guidance backend a stage runs with; the loaded guidance, shared per process.

``guidance.backend = "auto"`` is decided here, once per process and config, by what this machine
holds (DESIGN.md §5): a Zero123 that loads whole, else the weight-free ``anchor``. The resolved
config is the one recorded and hashed, so no table can confuse the two.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import replace

import torch

from align4d_core.config import RunConfig
from align4d_core.guidance import Guidance, load_guidance
from align4d_core.guidance.bundled import prior_guidance

log = logging.getLogger(__name__)


def resolve_backend(config: RunConfig, device: torch.device) -> RunConfig:
    """The config with ``guidance.backend`` set to the backend that will actually run.

    ``backend = "auto"`` is Zero123 when its weights are on this machine (a local folder or the hub
    cache; it never downloads), else the learned prior bundled with align4d
    (:mod:`align4d_core.guidance.bundled`), else the weight-free ``anchor``, with a warning.
    Weights that are there but not whole (a truncated file, a renamed key, parts that do not fit:
    :class:`~align4d_core.io.weights.IncompleteModelError`) are an error, never a silent fallback.
    """
    if config.guidance.backend != "auto":
        return config
    local = replace(config.guidance, backend="zero123", local_files_only=True)
    if _weights_available(local, str(device)):
        return replace(config, guidance=local)
    prior = prior_guidance(config.guidance)
    if prior is not None:
        return replace(config, guidance=prior)
    return replace(config, guidance=replace(local, backend="anchor", local_files_only=False))


@functools.lru_cache(maxsize=4)
def _weights_available(config, device: str) -> bool:
    """Whether Zero123 loads from this machine alone; asked (and warned about) once per process."""
    from align4d_core.guidance import MissingWeightsError

    try:
        _guidance(config, device)
        return True
    except MissingWeightsError:
        fallback = "the bundled learned prior" if prior_guidance(config) is not None else "the weight-free 'anchor'"
        log.warning(
            "no local Zero123 weights for %r (guidance.model): using %s guidance; set "
            "guidance.backend='zero123' for the full message",
            config.model,
            fallback,
        )
        return False


@functools.lru_cache(maxsize=2)
def _guidance(config, device: str) -> Guidance:
    """Loaded once per process and config: the search and optimise stages share the weights."""
    return load_guidance(config, device)


def guidance_for(config: RunConfig, device: torch.device) -> Guidance:
    return _guidance(config.guidance, str(device))
