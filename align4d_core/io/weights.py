"""Pretrained models load whole or not at all.

diffusers and transformers load a checkpoint whose keys do not match the model with only a log line:
the weights they could not find keep their random initialisation, and the model runs. For a
multiview prior that means a garbage conditioning token and an SDS gradient that is noise; for a
benchmark it means numbers that look real. Every pretrained model of align4d (Zero123, SDXL, SVD,
Shap-E, BLIP; the metric networks have their own strict loaders in ``metrics/weights.py``) is
therefore loaded in two passes:

1. **The files** (:func:`check_component_files`): the component's folder, its config and its
   weight file(s) exist, and each safetensors file is whole (its header is read and the tensors it
   declares must exactly cover the file: a truncated download fails here, in milliseconds, before
   gigabytes are read).
2. **The weights** (:func:`load_component`): ``from_pretrained(..., output_loading_info=True)``;
   any missing, unexpected or mis-shaped weight is an :class:`IncompleteModelError` naming the
   component, the folder and the keys. Buffers a library itself declares ignorable on load (CLIP's
   ``position_ids``) never reach the report; a caller may allow unexpected keys by prefix where a
   checkpoint knowingly holds more than the model (a full CLIP checkpoint read as its vision tower).

A model that is simply absent (no folder, a hub id not in the cache) is the caller's business
(:class:`~align4d_core.guidance.zero123.MissingWeightsError`, ``pairs.weights.ModelMissingError``):
it may fall back or say how to download it. A model that is present but not whole is always an
error: falling back would hide a broken download.
"""

from __future__ import annotations

import importlib
import json
import os
import struct
import warnings
import zipfile
from collections.abc import Iterable
from typing import Any

import torch

from align4d_core.errors import InputError

LIBRARIES = ("diffusers", "transformers")
WEIGHT_STEMS = {"diffusers": ("diffusion_pytorch_model",), "transformers": ("model", "pytorch_model")}
"""File stems of a component's weights: ``<stem>[.<variant>].safetensors`` or ``.bin``, or their
sharded ``.index.json`` (the names ``save_pretrained`` writes in each library)."""
CONFIG_NAMES = ("config.json",)
_LISTED = 5  # keys named in a message; the rest are counted


class IncompleteModelError(InputError):
    """A model is on this machine but not whole: a file is missing or truncated, weights are missing,
    unexpected or of the wrong shape, or its parts do not fit together."""


def reason_of(error: BaseException, lines: int = 3) -> str:
    """The first lines of a library's error, on one line (size mismatches put the key on line 2)."""
    text = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return " ".join(text[:lines]) if text else type(error).__name__


def _keys(keys: Iterable[str]) -> str:
    keys = sorted(str(k) for k in keys)
    shown = ", ".join(keys[:_LISTED])
    return shown + (f" and {len(keys) - _LISTED} more" if len(keys) > _LISTED else "")


# --- pass 1: the files -------------------------------------------------------------------------------


def safetensors_header(path: str) -> dict[str, dict]:
    """The tensors a safetensors file declares (name → dtype, shape, offsets), checked to cover the file.

    The format is an 8-byte little-endian header length, a JSON header, then the tensor bytes; a file
    cut short (a half-finished download) declares more bytes than it holds.
    """
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) < 8:
            raise ValueError(f"{size} bytes: too short to be a safetensors file")
        (length,) = struct.unpack("<Q", head)
        if length > size - 8:
            raise ValueError(f"its header claims {length} bytes but the file has {size}: it is truncated")
        try:
            header = json.loads(handle.read(length))
        except ValueError as error:
            raise ValueError(f"its header is not valid JSON ({error}): the file is damaged") from None
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    end = max((int(v["data_offsets"][1]) for v in tensors.values()), default=0)
    if 8 + length + end != size:
        raise ValueError(f"its tensors need {8 + length + end} bytes but the file has {size}: it is truncated")
    return tensors


def weight_files(folder: str, library: str, variant: str | None = None) -> list[str]:
    """The weight files of a component folder, following a sharded index; [] when there are none."""
    suffix = f".{variant}" if variant else ""
    for stem in WEIGHT_STEMS[library]:
        for extension in ("safetensors", "bin"):
            single = os.path.join(folder, f"{stem}{suffix}.{extension}")
            if os.path.isfile(single):
                return [single]
            index = f"{single}.index.json"
            if os.path.isfile(index):
                with open(index) as handle:
                    shards = sorted(set(json.load(handle).get("weight_map", {}).values()))
                return [os.path.join(folder, shard) for shard in shards]
    return []


def check_component_files(
    root: str, component: str, library: str, *, what: str, variant: str | None = None
) -> dict[str, tuple[int, ...]]:
    """Pass 1 for ``root/component``: config and whole weight files. Returns the declared shapes of
    the safetensors tensors (empty for ``.bin`` files, whose keys are only known once loaded)."""
    folder = os.path.join(root, component)

    def fail(reason: str) -> IncompleteModelError:
        return IncompleteModelError(f"{what}: component {component}/ in {root}: {reason}", uri=folder)

    if not os.path.isdir(folder):
        raise fail("the folder is missing")
    if not any(os.path.isfile(os.path.join(folder, name)) for name in CONFIG_NAMES):
        raise fail("config.json is missing")
    files = weight_files(folder, library, variant)
    if not files:
        stems = " or ".join(f"{s}{'.' + variant if variant else ''}.safetensors/.bin" for s in WEIGHT_STEMS[library])
        raise fail(f"no weight file ({stems}); the download is incomplete")
    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        name = os.path.basename(path)
        if not os.path.isfile(path):
            raise fail(f"the shard {name} named by its index is missing; the download is incomplete")
        if path.endswith(".safetensors"):
            try:
                shapes.update({k: tuple(v["shape"]) for k, v in safetensors_header(path).items()})
            except (OSError, ValueError) as error:
                raise fail(f"{name} cannot be read: {error}") from None
        elif not zipfile.is_zipfile(path) and os.path.getsize(path) < 1024:
            raise fail(f"{name} is {os.path.getsize(path)} bytes: not a weight file (a Git LFS pointer?)")
    return shapes


def read_config(root: str, component: str | None, *, what: str, name: str = "config.json") -> dict:
    """A component's JSON config (``model_index.json`` at the root when ``component`` is None)."""
    path = os.path.join(root, component, name) if component else os.path.join(root, name)
    try:
        with open(path) as handle:
            config = json.load(handle)
    except FileNotFoundError:
        where = f"component {component}/" if component else "the model folder"
        raise IncompleteModelError(f"{what}: {where} in {root} has no {name}", uri=path) from None
    except ValueError as error:
        raise IncompleteModelError(f"{what}: {path} is not valid JSON ({error})", uri=path) from None
    if not isinstance(config, dict):
        raise IncompleteModelError(f"{what}: {path} does not hold a JSON object", uri=path)
    return config


# --- pass 2: the weights ---------------------------------------------------------------------------


def loading_problems(info: dict, allow_unexpected: tuple[str, ...] = ()) -> list[str]:
    """What ``output_loading_info`` reports that makes a model incomplete, in words."""
    problems = []
    missing = list(info.get("missing_keys") or [])
    unexpected = [k for k in info.get("unexpected_keys") or [] if not str(k).startswith(allow_unexpected or ("\0",))]
    mismatched = list(info.get("mismatched_keys") or [])
    errors = [str(e) for e in info.get("error_msgs") or []]
    if missing:
        problems.append(
            f"{len(missing)} weight(s) missing from the files, which would run randomly initialised: {_keys(missing)}"
        )
    if unexpected:
        problems.append(
            f"{len(unexpected)} unexpected weight(s) in the files, which the model does not use: {_keys(unexpected)}"
        )
    if mismatched:
        shown = [m[0] if isinstance(m, (tuple, list)) else m for m in mismatched]
        problems.append(f"{len(mismatched)} weight(s) of the wrong shape: {_keys(shown)}")
    if errors:
        problems.append("; ".join(errors))
    return problems


def load_component(
    cls: type,
    root: str,
    component: str | None,
    *,
    what: str,
    variant: str | None = None,
    dtype: torch.dtype | None = None,
    allow_unexpected: tuple[str, ...] = (),
    **kwargs: Any,
):
    """``cls.from_pretrained(root, subfolder=component)`` that refuses anything but the whole model.

    ``what`` names the model in messages ("Zero123", "pairs.image_to_video ..."). Any failure of the
    libraries (a missing or unreadable file, a size mismatch, which they raise) and any key they
    would only log becomes an :class:`IncompleteModelError` naming the component, the folder and why.
    """
    where = f"component {component}/ in {root}" if component else f"the folder {root}"
    options: dict[str, Any] = dict(kwargs)
    if component:
        options["subfolder"] = component
    if variant:
        options["variant"] = variant
    if dtype is not None:
        options["torch_dtype"] = dtype
    try:
        with warnings.catch_warnings(), _quiet_libraries():
            warnings.filterwarnings("ignore", message=".*torch_dtype.*deprecated", category=FutureWarning)
            model, info = cls.from_pretrained(root, output_loading_info=True, **options)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise IncompleteModelError(
            f"{what}: {where} cannot be loaded as {cls.__name__}: {reason_of(error)}",
            uri=os.path.join(root, component or ""),
        ) from error
    except Exception as error:  # safetensors' own error type (a damaged file) is not an OSError
        if type(error).__module__.startswith("safetensors"):
            raise IncompleteModelError(
                f"{what}: {where}: a weight file is damaged: {error}", uri=os.path.join(root, component or "")
            ) from error
        raise
    problems = loading_problems(info, allow_unexpected)
    if problems:
        raise IncompleteModelError(
            f"{what}: {where} does not load whole as {cls.__name__}: {'; '.join(problems)}",
            uri=os.path.join(root, component or ""),
        )
    return model


class _quiet_libraries:
    """Silence the libraries' own loading reports while we read them: ours is the error."""

    def __enter__(self):
        from diffusers.utils import logging as diffusers_logging
        from transformers.utils import logging as transformers_logging

        self._saved = [(m, m.get_verbosity()) for m in (diffusers_logging, transformers_logging)]
        for module, _ in self._saved:
            module.set_verbosity(50)  # CRITICAL: the .bin fallback's "error occurred" line too
        self._bars = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()
        return self

    def __exit__(self, *exc):
        from transformers.utils import logging as transformers_logging

        for module, level in self._saved:
            module.set_verbosity(level)
        if self._bars:
            transformers_logging.enable_progress_bar()
        return False


# --- pipelines ------------------------------------------------------------------------------------


def component_class(library: str, name: str) -> type | None:
    """The class a ``model_index.json`` entry ``[library, name]`` names, or None if not importable.

    diffusers writes a pipeline-module name as the library of some components (``"stable_diffusion"``
    for the safety checker, ``"shap_e"`` for Shap-E's renderer): those live in ``diffusers.pipelines``.
    """
    for module in (library, f"diffusers.pipelines.{library}"):
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
    return None


def library_of(cls: type) -> str | None:
    """ "diffusers" or "transformers" for a model class (its weight-file names), else None."""
    root = cls.__module__.split(".", 1)[0]
    return root if root in LIBRARIES else None


def load_pipeline_strict(
    pipeline_class: type,
    root: str,
    *,
    what: str,
    variant: str | None = None,
    dtype: torch.dtype | None = None,
    **kwargs: Any,
):
    """A diffusers pipeline from a local folder whose every model component loads whole.

    The torch modules named in ``model_index.json`` are checked (files, then weights) and loaded one
    by one; the pipeline is then assembled by its own ``from_pretrained`` with those modules passed
    in, so schedulers, tokenizers, processors and config values load exactly as diffusers loads them.
    """
    index = read_config(root, None, what=what, name="model_index.json")
    modules = {}
    for component, entry in index.items():
        if component.startswith("_") or not isinstance(entry, list) or len(entry) != 2 or None in entry:
            continue
        cls = component_class(*entry)
        if cls is None or not issubclass(cls, torch.nn.Module):
            continue
        library = library_of(cls)
        if library is None:
            continue
        check_component_files(root, component, library, what=what, variant=variant)
        modules[component] = load_component(cls, root, component, what=what, variant=variant, dtype=dtype)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch_dtype.*deprecated", category=FutureWarning)
            return pipeline_class.from_pretrained(root, **modules, variant=variant, torch_dtype=dtype, **kwargs)
    except (OSError, ValueError) as error:
        raise IncompleteModelError(
            f"{what}: {pipeline_class.__name__} cannot be assembled from {root}: {reason_of(error)}", uri=root
        ) from error
