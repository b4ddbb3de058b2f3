"""The run config a task works with: settings (a config file's contents) + method, on this machine.

Resolved where the task runs, so a GPU worker gets the paper's schedule and a CPU the CPU profile,
and the guidance backend ``auto`` is decided by the weights that worker has.
"""

from __future__ import annotations

import torch

from align4d_core.config import RunConfig, build_run_config
from align4d_core.pipeline.devices import resolve_backend
from align4d_core.runtime import device_of


def resolved(settings: dict, method: str) -> tuple[RunConfig, torch.device]:
    device = device_of()
    return resolve_backend(build_run_config(device.type, settings, preset=method), device), device
