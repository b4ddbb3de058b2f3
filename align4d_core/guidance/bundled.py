"""Models shipped inside align4d: the learned prior, so that the full method runs on any machine.

``guidance.model: align4d:prior-v1`` names the folder ``guidance/bundled/prior-v1/``: a Zero123 of
our own, trained by ``align4d prior train`` on procedural objects at a recorded distance d_prior,
saved in the public ``ashawkey/zero123-xl-diffusers`` layout and loaded by the same strict loader as
the real model. ``prior.json`` beside it records how it was made (training config, data seed,
d_prior, time, machine). ``guidance.backend: auto`` takes a real Zero123 that loads, else this
prior, else the weight-free anchor; :func:`guidance_label` names which one ran in every output.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace

from align4d_core.config import GuidanceConfig
from align4d_core.guidance.zero123_layout import BUNDLED, BUNDLED_ROOT

PRIOR = "align4d:prior-v1"
PRIOR_JSON = "prior.json"


def bundled_info(model: str = PRIOR) -> dict | None:
    """``prior.json`` of a bundled model, or None when this install does not have it."""
    if not model.startswith(BUNDLED):
        return None
    path = os.path.join(BUNDLED_ROOT, model[len(BUNDLED) :], PRIOR_JSON)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def prior_guidance(base: GuidanceConfig) -> GuidanceConfig | None:
    """``base`` pointed at the bundled prior (its input size from ``prior.json``), or None without it."""
    info = bundled_info(PRIOR)
    if info is None:
        return None
    return replace(
        base,
        backend="zero123",
        model=PRIOR,
        revision=None,
        variant=None,
        local_files_only=True,
        camera_embedding="zero123",
        input_size=int(info["input_size"]),
    )


def guidance_label(config: GuidanceConfig) -> str:
    """How outputs and tables name the guidance that ran: ``anchor``, ``zero123`` or
    ``zero123 (bundled prior v1)``."""
    if config.backend == "zero123" and config.model.startswith(BUNDLED):
        name = config.model[len(BUNDLED) :]
        return f"zero123 (bundled {name.replace('-v', ' v')})"
    return config.backend
