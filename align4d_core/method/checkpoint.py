"""Checkpoints of an optimisation, in storage, so that a killed run resumes where it stopped.

A checkpoint is one safetensors file of named tensors (parameters, Adam moments, densification
statistics) with its metadata (step, config hash, loss history) as JSON in the safetensors header:
no pickle, readable anywhere. ``latest.json`` names the newest complete checkpoint and is written
after it, so a kill during a write leaves the previous checkpoint in charge.
"""

from __future__ import annotations

import json

import safetensors.torch
from torch import Tensor

from align4d_core.errors import InputError
from align4d_core.io import storage

LATEST = "latest.json"


def save_checkpoint(folder: str, step: int, tensors: dict[str, Tensor], metadata: dict) -> str:
    """Write ``step_<step>.safetensors`` then point ``latest.json`` at it; returns its URI."""
    name = f"step_{step:06d}.safetensors"
    header = {"align4d": json.dumps({**metadata, "step": step}, sort_keys=True)}
    data = safetensors.torch.save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=header)
    uri = storage.join(folder, name)
    storage.write_bytes(uri, data)
    storage.write_json(storage.join(folder, LATEST), {"step": step, "file": name})
    return uri


def load_latest(folder: str) -> tuple[int, dict[str, Tensor], dict] | None:
    """The newest checkpoint under ``folder`` as (step, tensors, metadata), or None if there is none."""
    pointer = storage.join(folder, LATEST)
    if not storage.exists(pointer):
        return None
    latest = storage.read_json(pointer)
    uri = storage.join(folder, str(latest["file"]))
    data = storage.read_bytes(uri)
    try:
        tensors = safetensors.torch.load(data)
        with_header = json.loads(data[8 : 8 + int.from_bytes(data[:8], "little")])
        metadata = json.loads(with_header["__metadata__"]["align4d"])
    except Exception as exc:  # noqa: BLE001 - any corruption is reported the same way
        raise InputError(f"unreadable checkpoint ({type(exc).__name__}: {exc})", uri=uri) from None
    return int(metadata["step"]), tensors, metadata
