"""Loading a diffusers pipeline for pair generation, one at a time, and letting it go.

A model setting (``pairs.text_to_image.model`` and the like) is a hub id, a local folder in the
diffusers layout (``model_index.json`` at its root), or a folder in object storage that is synced
to a local cache first (:mod:`.model_cache`). Everything goes through ``from_pretrained``, so the
hub's own cache, ``HF_HUB_OFFLINE`` and ``HF_HOME`` behave as every diffusers user expects.

Why one at a time: SDXL, SVD and Shap-E together need more than 40 GB in float32; the pair stage
loads a model, runs it, drops every reference and empties the CUDA cache before the next one
(:func:`run_pipeline`), so the peak is the largest single model. ``cpu_offload`` (SDXL and SVD)
moves each sub-model to the GPU only while it runs (``enable_model_cpu_offload``), for GPUs too
small for SVD in float16.

A model that cannot be found is a :class:`ModelMissingError` (an :class:`InputError`: retrying
will not help) naming the setting, the model and how to provide it; one that is there but does not
load whole (a truncated file, a renamed or missing weight) is an
:class:`~align4d_core.io.weights.IncompleteModelError` naming the component and the keys: every torch
module of a pipeline is loaded strictly (:func:`~align4d_core.io.weights.load_pipeline_strict`).
"""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from align4d_core.errors import InputError
from align4d_core.io.weights import load_pipeline_strict
from align4d_core.pairs.model_cache import is_remote, sync_model

__all__ = [
    "ModelMissingError",
    "free_memory",
    "how_to_provide",
    "load_pipeline",
    "model_location",
    "resolve_dtype",
    "run_pipeline",
]

T = TypeVar("T")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_DTYPES = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}


class ModelMissingError(InputError):
    """The weights a pair-generation setting names cannot be loaded on this machine."""


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """``"auto"``: float16 on CUDA (how SDXL, SVD and Shap-E are published to run), float32 elsewhere."""
    if name == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if name not in _DTYPES:
        raise InputError(f"unknown dtype {name!r}; choose 'auto' or one of {', '.join(_DTYPES)}", field="dtype")
    return _DTYPES[name]


def how_to_provide(setting: str, model: str) -> str:
    hub_id = model if _HUB_ID.match(model) else "<hub id>"
    return (
        f"Provide it one of three ways: on a machine with internet run `hf download {hub_id} --local-dir DIR` "
        f"(`huggingface-cli download` in older huggingface_hub) and set {setting} to DIR; copy DIR to object "
        f"storage and set {setting} to its s3:// URI (synced once per worker into $ALIGN4D_MODEL_CACHE); or "
        "allow hub downloads (unset HF_HUB_OFFLINE) to fill the hub cache."
    )


def model_location(setting: str, model: str, marker: str = "model_index.json") -> str:
    """What ``from_pretrained`` gets for a model setting: a local folder or a hub id.

    A remote URI is synced to the local cache; ``file://`` becomes a path. A folder without
    ``marker`` (``model_index.json`` for a diffusers pipeline, ``config.json`` for a transformers
    model) or a string that is neither a folder nor a hub id is refused here, with
    the fix, before diffusers' less specific messages.
    """
    if is_remote(model):
        try:
            location = sync_model(model)
        except FileNotFoundError:
            raise ModelMissingError(
                f"{setting}: no model folder at {model!r}. {how_to_provide(setting, model)}", uri=model
            ) from None
    elif model.startswith("file://"):
        location = model[len("file://") :]
    else:
        location = model
    if os.path.isdir(location):
        if not os.path.isfile(os.path.join(location, marker)):
            raise ModelMissingError(
                f"{setting}: the folder {model!r} holds no {marker}, so it is not the "
                f"model's folder. {how_to_provide(setting, model)}",
                uri=model,
            )
        return location
    if os.path.isabs(location) or location.startswith(".") or not _HUB_ID.match(location):
        raise ModelMissingError(
            f"{setting}: {model!r} is neither an existing folder nor a hub id. {how_to_provide(setting, model)}",
            uri=model,
        )
    return location


def load_pipeline(pipeline_class: type, setting: str, config: Any, device: torch.device):
    """``pipeline_class.from_pretrained`` for a generator's config (model, revision, variant, dtype),
    placed on ``device`` or, with ``cpu_offload`` on CUDA, offloaded sub-model by sub-model."""
    from huggingface_hub import constants as hub_constants

    location = model_location(setting, config.model)
    dtype = resolve_dtype(config.dtype, device)
    try:
        folder = (
            location
            if os.path.isdir(location)
            else pipeline_class.download(location, revision=config.revision, variant=config.variant)
        )  # the hub cache's snapshot
    except (OSError, ValueError) as error:  # how diffusers reports missing repos, files and variants
        offline = (
            " (HF_HUB_OFFLINE is set: only the local hub cache was searched)" if hub_constants.HF_HUB_OFFLINE else ""
        )
        revision = f" at revision {config.revision!r}" if config.revision else ""
        variant = f" (variant {config.variant!r})" if config.variant else ""
        reason = str(error).strip().splitlines()[0].rstrip(".") if str(error).strip() else type(error).__name__
        raise ModelMissingError(
            f"{setting}: {pipeline_class.__name__} {config.model!r}{revision}{variant} cannot be "
            f"loaded{offline}: {reason}. {how_to_provide(setting, config.model)}",
            uri=config.model,
        ) from error
    # every torch module of the pipeline loads whole or the item fails (IncompleteModelError)
    pipe = load_pipeline_strict(
        pipeline_class, folder, what=f"{setting} {config.model!r}", variant=config.variant, dtype=dtype
    )
    pipe.set_progress_bar_config(disable=True)
    if getattr(config, "cpu_offload", False) and device.type == "cuda":
        try:
            pipe.enable_model_cpu_offload(device=device)
        except ImportError as error:
            raise InputError(
                f"{setting.rsplit('.', 1)[0]}.cpu_offload needs the accelerate package "
                f"(pip install accelerate): {error}"
            ) from None
    else:
        pipe.to(device)
    return pipe


def free_memory(device: torch.device) -> None:
    """Collect what was dropped and hand cached CUDA blocks back, so the next model has the room."""
    gc.collect()
    if device.type == "cuda" and torch.cuda.is_available():
        torch.cuda.empty_cache()


def run_pipeline(pipeline_class: type, setting: str, config: Any, device: torch.device, call: Callable[[Any], T]) -> T:
    """Load a pipeline, ``call(pipe)``, release it; the only place a pair-generation model lives.

    ``call`` must return plain tensors (moved to the CPU), never the pipeline or its modules, so
    that nothing outlives this function.
    """
    pipe = load_pipeline(pipeline_class, setting, config, device)
    try:
        with torch.inference_mode():
            return call(pipe)
    finally:
        if getattr(pipe, "_offload_gpu_id", None) is not None or getattr(config, "cpu_offload", False):
            remove = getattr(pipe, "remove_all_hooks", None)
            if remove is not None:
                remove()
        del pipe
        free_memory(device)
