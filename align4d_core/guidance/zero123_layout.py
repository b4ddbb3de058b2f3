"""The public Zero123 checkpoints in diffusers form: told apart by their files, loaded whole.

Two layouts are published (facts from the pipelines that load them):

* ``zero123-pipeline`` — ``ashawkey/zero123-xl-diffusers``, ``bennyguo/zero123-xl-diffusers``,
  ``ashawkey/stable-zero123-diffusers`` (DreamGaussian4D's and threestudio's ``zero123.py``):
  ``model_index.json`` names ``clip_camera_projection: ["zero123", "CLIPCameraProjection"]``; its
  config has ``embedding_dim`` (768) and ``additional_embeddings`` (4); one linear layer ``proj``
  (``proj.weight`` 768 × 772, ``proj.bias``).
* ``zero1to3`` — ``kxic/zero123-xl``, ``kxic/stable-zero123`` (diffusers' community
  ``pipeline_zero1to3.py``, class ``Zero1to3StableDiffusionPipeline``): ``cc_projection:
  ["pipeline_zero1to3", "CCProjection"]`` with ``in_channel`` (772) and ``out_channel`` (768); one
  linear layer ``projection``. ``feature_extractor`` is optional there.

Both share ``image_encoder/`` (CLIPVisionModelWithProjection), ``unet/`` (UNet2DConditionModel, 8
input channels), ``vae/`` (AutoencoderKL) and ``scheduler/``. A folder's layout is read from its
``model_index.json`` and the projection's config, never from its name: a copy of a port in any
folder, or our own prior saved in the same layout, loads the same way.

Loading is strict (:mod:`align4d_core.io.weights`): the files first (every component folder, config and
whole weight file), then whether the parts fit together (UNet input = 2 × VAE latent channels,
projection input = CLIP projection size + 4, projection output = UNet cross-attention size), then
each component's weights with nothing missing, unexpected or mis-shaped. The camera projection is
our own one-layer module, filled from the file under the layout's key names and checked key by key.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import torch
from torch import Tensor

from align4d_core.config import GuidanceConfig
from align4d_core.errors import InputError
from align4d_core.guidance.zero123_xl import POSE_DIM
from align4d_core.io.weights import (
    IncompleteModelError,
    check_component_files,
    load_component,
    read_config,
    weight_files,
)

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
DEFAULT_HUB_ID = "ashawkey/zero123-xl-diffusers"
BUNDLED = "align4d:"
"""``guidance.model`` ``align4d:<name>`` is a model shipped inside the package (``guidance/bundled/<name>/``):
the learned prior (docs/method.md, "The learned prior")."""
BUNDLED_ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bundled")


class MissingWeightsError(InputError):
    """The Zero123 weights named by ``guidance.model`` are not on this machine (nothing to load)."""


@dataclass(frozen=True)
class Layout:
    """One published folder layout of Zero123 in diffusers form."""

    name: str
    ports: tuple[str, ...]  # public repositories in this layout (for messages; never matched against)
    pipeline_class: str  # model_index.json "_class_name" as published
    projection: str  # the projection component's folder
    projection_library: str  # its model_index.json entry: [library, class]
    projection_class: str
    projection_layer: str  # state-dict prefix of its linear layer
    projection_fields: tuple[str, str]  # its config fields

    def projection_dims(self, config: dict) -> tuple[int, int]:
        """(input, output) of the projection's linear layer from its config."""
        first, second = (config[f] for f in self.projection_fields)
        if self.name == "zero123-pipeline":  # embedding_dim, additional_embeddings
            return int(first) + int(second), int(first)
        return int(first), int(second)  # in_channel, out_channel


ZERO123_PIPELINE = Layout(
    name="zero123-pipeline",
    ports=("ashawkey/zero123-xl-diffusers", "bennyguo/zero123-xl-diffusers", "ashawkey/stable-zero123-diffusers"),
    pipeline_class="Zero123Pipeline",
    projection="clip_camera_projection",
    projection_library="zero123",
    projection_class="CLIPCameraProjection",
    projection_layer="proj",
    projection_fields=("embedding_dim", "additional_embeddings"),
)
ZERO1TO3 = Layout(
    name="zero1to3",
    ports=("kxic/zero123-xl", "kxic/stable-zero123"),
    pipeline_class="Zero1to3StableDiffusionPipeline",
    projection="cc_projection",
    projection_library="pipeline_zero1to3",
    projection_class="CCProjection",
    projection_layer="projection",
    projection_fields=("in_channel", "out_channel"),
)
LAYOUTS = (ZERO123_PIPELINE, ZERO1TO3)
SHARED = {  # component → (library, class) in both layouts
    "image_encoder": ("transformers", "CLIPVisionModelWithProjection"),
    "unet": ("diffusers", "UNet2DConditionModel"),
    "vae": ("diffusers", "AutoencoderKL"),
}


class CameraProjection(torch.nn.Module):
    """Zero123's projection of [CLIP image embedding; 4-d pose] to the UNet's cross-attention token."""

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(in_features, out_features)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


@dataclass
class Zero123Parts:
    """A loaded Zero123: everything the guidance needs, whatever layout it came from."""

    layout: Layout
    image_encoder: torch.nn.Module
    unet: torch.nn.Module
    vae: torch.nn.Module
    projection: CameraProjection
    scheduler: object  # a diffusers scheduler; only its alphas_cumprod is used
    feature_extractor: object | None  # CLIP image processor; None: CLIP's own preprocessing in torch
    folder: str


# --- where the files are ---------------------------------------------------------------------------


def how_to_provide(model: str) -> str:
    hub_id = model if _HUB_ID.match(model) and not os.path.isabs(model) else DEFAULT_HUB_ID
    return (
        f"On a machine with internet run `huggingface-cli download {hub_id} --local-dir DIR` "
        "(`hf download` in recent huggingface_hub), copy DIR here and set guidance.model to DIR; "
        "or use guidance.backend='anchor', which needs no weights."
    )


def model_folder(config: GuidanceConfig) -> str:
    """The local folder of ``guidance.model``: the folder itself, or the hub cache's snapshot of a hub id.

    A hub id is fetched only when downloads are allowed (never under ``local_files_only`` or
    ``HF_HUB_OFFLINE``), and only the files a layout can need.
    """
    from huggingface_hub import constants as hub_constants
    from huggingface_hub import snapshot_download

    model = config.model[len("file://") :] if config.model.startswith("file://") else config.model
    if model.startswith(BUNDLED):
        folder = os.path.join(BUNDLED_ROOT, model[len(BUNDLED) :])
        if not os.path.isdir(folder):
            raise MissingWeightsError(
                f"guidance.model {model!r}: this install has no bundled model of that name (looked in {BUNDLED_ROOT})",
                uri=model,
            )
        return folder
    if os.path.isdir(model):
        return model
    if os.path.isabs(model) or model.startswith(".") or not _HUB_ID.match(model):
        raise MissingWeightsError(
            f"guidance.model {config.model!r} is neither an existing folder nor a hub id. "
            f"{how_to_provide(config.model)}",
            uri=config.model,
        )
    suffix = f".{config.variant}" if config.variant else ""
    patterns = ["model_index.json", "*/*.json", f"*/*{suffix}.safetensors", f"*/*{suffix}.bin"]
    offline = bool(hub_constants.HF_HUB_OFFLINE) or config.local_files_only
    try:
        return snapshot_download(model, revision=config.revision, local_files_only=offline, allow_patterns=patterns)
    except Exception as error:  # not cached (offline), unknown repo, no network: nothing to load here
        revision = f" at revision {config.revision!r}" if config.revision else ""
        where = " (HF_HUB_OFFLINE is set: only the local cache was searched)" if offline else ""
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise MissingWeightsError(
            f"Zero123 model (hub id) {config.model!r}{revision} is not available{where}: "
            f"{reason}. {how_to_provide(config.model)}",
            uri=config.model,
        ) from error


# --- which layout ----------------------------------------------------------------------------------


def detect_layout(folder: str) -> Layout:
    """The layout of a Zero123 folder, from ``model_index.json`` and the projection's config."""
    what = "Zero123"
    index = read_config(folder, None, what=what, name="model_index.json")
    found = [layout for layout in LAYOUTS if layout.projection in index]
    if len(found) != 1:
        listed = ", ".join(sorted(k for k in index if not k.startswith("_"))) or "nothing"
        known = "; ".join(f"{layout.projection}/ ({', '.join(layout.ports)})" for layout in LAYOUTS)
        problem = "both" if len(found) > 1 else "neither"
        raise IncompleteModelError(
            f"{what}: {folder} is not in a known Zero123 layout: its model_index.json lists "
            f"{listed}, {problem} of the camera projections {known}",
            uri=folder,
        )
    layout = found[0]
    entry = index[layout.projection]
    if not isinstance(entry, list) or len(entry) != 2 or entry[1] != layout.projection_class:
        raise IncompleteModelError(
            f"{what}: {folder}/model_index.json gives {layout.projection} as {entry!r}; the "
            f"{layout.name} layout ({layout.ports[0]}) has "
            f"[{layout.projection_library!r}, {layout.projection_class!r}]",
            uri=folder,
        )
    config = read_config(folder, layout.projection, what=what)
    absent = [f for f in layout.projection_fields if not isinstance(config.get(f), int)]
    if absent:
        raise IncompleteModelError(
            f"{what}: {layout.projection}/config.json in {folder} lacks the integer field(s) "
            f"{', '.join(absent)} of {layout.projection_class} ({layout.ports[0]})",
            uri=os.path.join(folder, layout.projection),
        )
    for component, (_, cls) in SHARED.items():
        if component not in index:
            raise IncompleteModelError(
                f"{what}: {folder}/model_index.json lists no {component} (a {cls} in every Zero123 port)", uri=folder
            )
    if "scheduler" not in index:
        raise IncompleteModelError(f"{what}: {folder}/model_index.json lists no scheduler", uri=folder)
    return layout


# --- do the parts fit ------------------------------------------------------------------------------


def check_parts_fit(folder: str, layout: Layout) -> None:
    """The sizes that must agree between components, read from their configs before any weight loads."""
    what = "Zero123"
    unet = read_config(folder, "unet", what=what)
    vae = read_config(folder, "vae", what=what)
    encoder = read_config(folder, "image_encoder", what=what)
    projection_in, projection_out = layout.projection_dims(read_config(folder, layout.projection, what=what))
    encoder = encoder.get("vision_config", encoder)  # a full CLIP config nests the vision tower
    problems = []
    latent = vae.get("latent_channels")
    if unet.get("in_channels") != 2 * (latent or 0):
        problems.append(
            f"unet/config.json in_channels is {unet.get('in_channels')}, but Zero123 concatenates the "
            f"noisy latent and the conditioning latent: 2 × vae/config.json latent_channels "
            f"({latent}) = {2 * (latent or 0)}"
        )
    if unet.get("out_channels") != latent:
        problems.append(
            f"unet/config.json out_channels is {unet.get('out_channels')}, expected vae/config.json "
            f"latent_channels ({latent})"
        )
    embedding = encoder.get("projection_dim")
    if projection_in != (embedding or 0) + POSE_DIM:
        fields = " + ".join(layout.projection_fields) if layout is ZERO123_PIPELINE else layout.projection_fields[0]
        problems.append(
            f"{layout.projection}/config.json gives an input of {projection_in} ({fields}), expected "
            f"image_encoder/config.json projection_dim ({embedding}) + {POSE_DIM} pose values"
        )
    cross = unet.get("cross_attention_dim")
    if projection_out != cross:
        field = layout.projection_fields[0] if layout is ZERO123_PIPELINE else layout.projection_fields[1]
        problems.append(
            f"{layout.projection}/config.json {field} gives an output of {projection_out}, expected "
            f"unet/config.json cross_attention_dim ({cross})"
        )
    if problems:
        raise IncompleteModelError(
            f"{what}: the parts in {folder} do not fit together: {'; '.join(problems)}", uri=folder
        )


# --- loading ------------------------------------------------------------------------------------


def load_projection(folder: str, layout: Layout, variant: str | None, dtype: torch.dtype) -> CameraProjection:
    """The camera projection, filled from its file under the layout's key names, nothing else accepted."""
    what = "Zero123"
    component = os.path.join(folder, layout.projection)
    in_features, out_features = layout.projection_dims(read_config(folder, layout.projection, what=what))
    files = weight_files(component, "diffusers", variant)
    if not files:
        raise IncompleteModelError(
            f"{what}: component {layout.projection}/ in {folder} has no weight file", uri=component
        )
    tensors = _read_tensors(files[0])
    prefix = layout.projection_layer
    expected = {f"{prefix}.weight": (out_features, in_features), f"{prefix}.bias": (out_features,)}
    problems = []
    missing = [k for k in expected if k not in tensors]
    unexpected = [k for k in tensors if k not in expected]
    if missing:
        problems.append(f"missing {', '.join(missing)}")
    if unexpected:
        problems.append(f"unexpected {', '.join(sorted(unexpected))}")
    for key, shape in expected.items():
        if key in tensors and tuple(tensors[key].shape) != shape:
            problems.append(f"{key} has shape {tuple(tensors[key].shape)}, its config says {shape}")
    if problems:
        raise IncompleteModelError(
            f"{what}: component {layout.projection}/ in {folder} does not load whole as "
            f"{layout.projection_class} (layer {prefix!r}): {'; '.join(problems)}",
            uri=component,
        )
    projection = CameraProjection(in_features, out_features)
    projection.linear.load_state_dict({"weight": tensors[f"{prefix}.weight"], "bias": tensors[f"{prefix}.bias"]})
    return projection.to(dtype)


def _read_tensors(path: str) -> dict[str, Tensor]:
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(path)
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a damaged file: safetensors' and torch's own error types
        raise IncompleteModelError(f"Zero123: {path} cannot be read: {error}", uri=path) from error
    if not isinstance(state, dict):
        raise IncompleteModelError(f"Zero123: {path} does not hold a state dict", uri=path)
    return state


def load_zero123(config: GuidanceConfig, dtype: torch.dtype) -> Zero123Parts:
    """Every part of the Zero123 that ``guidance.model`` names, whole, or an error before anything runs.

    :class:`MissingWeightsError` when there is nothing to load; :class:`IncompleteModelError` when
    something is there but not whole (a file missing or truncated, a key renamed, parts that do not fit).
    """
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import AutoImageProcessor, CLIPVisionModelWithProjection

    folder = model_folder(config)
    layout = detect_layout(folder)
    what = "Zero123"
    for component, (library, _) in SHARED.items():
        check_component_files(folder, component, library, what=what, variant=config.variant)
    check_component_files(folder, layout.projection, "diffusers", what=what, variant=config.variant)
    read_config(folder, "scheduler", what=what, name="scheduler_config.json")
    check_parts_fit(folder, layout)

    load = dict(what=what, variant=config.variant, dtype=dtype)
    image_encoder = load_component(CLIPVisionModelWithProjection, folder, "image_encoder", **load)
    unet = load_component(UNet2DConditionModel, folder, "unet", **load)
    vae = load_component(AutoencoderKL, folder, "vae", **load)
    projection = load_projection(folder, layout, config.variant, dtype)
    scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")  # DDIM or DDPM config: ᾱ only
    feature_extractor = None
    if os.path.isdir(os.path.join(folder, "feature_extractor")):
        try:
            feature_extractor = AutoImageProcessor.from_pretrained(folder, subfolder="feature_extractor")
        except (OSError, ValueError) as error:
            raise IncompleteModelError(
                f"{what}: component feature_extractor/ in {folder} cannot be read: {error}",
                uri=os.path.join(folder, "feature_extractor"),
            ) from error
    return Zero123Parts(layout, image_encoder, unet, vae, projection, scheduler, feature_extractor, folder)


# --- writing a folder in the public layout ---------------------------------------------------------


def save_zero123(out: str, parts: Zero123Parts) -> None:
    """Write ``parts`` to ``out`` (any URI) in the ``zero123-pipeline`` layout of ashawkey's port.

    What the learned prior ships as: the folder names, ``model_index.json``, the component classes
    and config fields and the ``proj.*`` keys of ``clip_camera_projection/`` are those of the public
    checkpoint, so :func:`load_zero123` loads it through the same strict path as the real model.
    Weights are safetensors only.
    """
    import tempfile

    import diffusers
    from safetensors.torch import save_file

    from align4d_core.io import storage

    layout = ZERO123_PIPELINE
    in_features, out_features = parts.projection.linear.in_features, parts.projection.linear.out_features
    with tempfile.TemporaryDirectory() as tmp:
        index = {
            "_class_name": layout.pipeline_class,
            "_diffusers_version": diffusers.__version__,
            layout.projection: [layout.projection_library, layout.projection_class],
            "feature_extractor": ["transformers", "CLIPImageProcessor"],
            "image_encoder": list(SHARED["image_encoder"]),
            "requires_safety_checker": False,
            "safety_checker": [None, None],
            "scheduler": ["diffusers", type(parts.scheduler).__name__],
            "unet": list(SHARED["unet"]),
            "vae": list(SHARED["vae"]),
        }
        with open(os.path.join(tmp, "model_index.json"), "w") as handle:
            json.dump(index, handle, indent=2, sort_keys=True)
        parts.unet.save_pretrained(os.path.join(tmp, "unet"), safe_serialization=True)
        parts.vae.save_pretrained(os.path.join(tmp, "vae"), safe_serialization=True)
        parts.image_encoder.save_pretrained(os.path.join(tmp, "image_encoder"), safe_serialization=True)
        parts.scheduler.save_pretrained(os.path.join(tmp, "scheduler"))
        parts.feature_extractor.save_pretrained(os.path.join(tmp, "feature_extractor"))
        projection = os.path.join(tmp, layout.projection)
        os.makedirs(projection)
        config = {
            "_class_name": layout.projection_class,
            "_diffusers_version": diffusers.__version__,
            "embedding_dim": out_features,
            "additional_embeddings": in_features - out_features,
        }
        with open(os.path.join(projection, "config.json"), "w") as handle:
            json.dump(config, handle, indent=2, sort_keys=True)
        linear = parts.projection.linear
        save_file(
            {
                f"{layout.projection_layer}.weight": linear.weight.detach().float().contiguous(),
                f"{layout.projection_layer}.bias": linear.bias.detach().float().contiguous(),
            },
            os.path.join(projection, "diffusion_pytorch_model.safetensors"),
        )
        for root, _, names in os.walk(tmp):
            for name in names:
                path = os.path.join(root, name)
                relative = os.path.relpath(path, tmp).replace(os.sep, "/")
                with open(path, "rb") as handle:
                    storage.write_bytes(storage.join(out, relative), handle.read())
