"""Routing: from whatever an item gives to a complete quadruplet (paper Section III-E, Fig. 1).

Every field the item gives is used as given; each missing one is made from the others:

* the **image**: given; else the video's first frame; else the 3D object's front view; else SDXL
  from the prompt;
* the **video**: given; else Stable Video Diffusion from the image;
* the **object**: given; else image-to-3D (Shap-E) from the image;
* the **prompt**: given; else the captioner's, when one is configured.

For an item that gives one modality this is the paper's routing by source (:data:`ROUTES`, which
is computed from :func:`plan` and tested):

    text  -> image (SDXL) -> video (SVD) and 3D (Shap-E)
    image -> video (SVD) and 3D (Shap-E)
    video -> image (first frame) -> 3D (Shap-E)
    3D    -> image (front view at the canonical distance) -> video (SVD)

Every generated or derived picture and video gets a mask by the rule of :mod:`.masks` and is
composited on white. :func:`load_inputs` reads and checks every given file before anything is
generated or written, so bad input fails fast and leaves nothing behind.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor

from align4d_core.config import PairsConfig
from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.manifest import SOURCES, Item
from align4d_core.io.media import read_image, read_masks, read_video, write_frames, write_image, write_masks
from align4d_core.io.objects import load_object
from align4d_core.pairs.caption import caption
from align4d_core.pairs.image_to_3d import image_to_3d
from align4d_core.pairs.image_to_video import ImageToVideo
from align4d_core.pairs.masks import composite, foreground_masks
from align4d_core.pairs.text_to_image import TextToImage
from align4d_core.pairs.views import Picture, first_frame, front_view
from align4d_core.pairs.weights import resolve_dtype
from align4d_core.scene.gaussians import Gaussians

__all__ = ["ROUTES", "Loaded", "PairResult", "load_inputs", "make_pair", "plan"]

MIN_FRAMES = 2  # a video of one frame has no motion to transfer


def plan(inputs: Item) -> dict[str, str]:
    """How each of image, video and object is obtained: ``"given"`` or the step that makes it."""
    if inputs.image is not None:
        image = "given"
    elif inputs.video is not None:
        image = "first_frame"
    elif inputs.object is not None:
        image = "front_view"
    else:
        image = "text_to_image"
    return {
        "image": image,
        "video": "given" if inputs.video is not None else "image_to_video",
        "object": "given" if inputs.object is not None else "image_to_3d",
    }


ROUTES: dict[str, dict[str, str]] = {
    source: plan(Item("x", source, **{{"text": "prompt", "3d": "object"}.get(source, source): "x"}))
    for source in SOURCES
}
"""The routing of an item that gives only its source modality (the table in the module notes)."""


@dataclass
class Loaded:
    """The given inputs, read and checked."""

    image: Picture | None = None
    frames: Tensor | None = None  # (T, H, W, 3) on white
    masks: Tensor | None = None  # (T, H, W, 1): the item's masks, else the video's alpha
    video_has_masks: bool = False  # the pair can use the given video and masks as they are
    gaussians: Gaussians | None = None


def load_inputs(inputs: Item, config: PairsConfig) -> Loaded:
    """Read and check every file the item gives; InputError naming the field for bad input."""
    steps = plan(inputs)
    if steps["image"] == "text_to_image" and not (inputs.prompt or "").strip():
        raise InputError("an empty prompt: a text item needs a prompt to generate its image", field="prompt")
    loaded = Loaded()
    if inputs.image is not None:
        try:
            rgb, alpha = read_image(inputs.image)
        except InputError as exc:
            raise exc.within(field="image") from None
        loaded.image = Picture(rgb, alpha)
    if inputs.video is not None:
        try:
            video = read_video(inputs.video)
        except InputError as exc:
            raise exc.within(field="video") from None
        if video.num_frames < MIN_FRAMES:
            raise InputError(
                f"a video needs at least {MIN_FRAMES} frames, this one has {video.num_frames}",
                uri=inputs.video,
                field="video",
            )
        loaded.frames, loaded.masks = video.frames, video.alpha
        if inputs.masks is not None:
            try:
                loaded.masks = read_masks(inputs.masks)
            except InputError as exc:
                raise exc.within(field="masks") from None
            if loaded.masks.shape[:3] != video.frames.shape[:3]:
                raise InputError(
                    f"{loaded.masks.shape[0]} masks of {tuple(loaded.masks.shape[1:3])} px for "
                    f"{video.num_frames} frames of {tuple(video.frames.shape[1:3])} px",
                    uri=inputs.masks,
                    field="masks",
                )
        loaded.video_has_masks = loaded.masks is not None
    if inputs.object is not None:
        try:
            loaded.gaussians = load_object(inputs.object, n_from_mesh=config.front_view.mesh_samples)
        except InputError as exc:
            raise exc.within(field="object") from None
    return loaded


@dataclass
class PairResult:
    """The completed item (the pair's files, the image and the prompt) and the record of ``pair.json``."""

    item: Item
    record: dict = field(default_factory=dict)


def make_pair(
    inputs: Item, loaded: Loaded, out: str, config: PairsConfig, device: torch.device, fovy_deg: float
) -> PairResult:
    """Generate the missing modalities into the folder ``out`` (see the module notes)."""
    steps = plan(inputs)
    seconds: dict[str, float] = {}
    record: dict = {"source": inputs.source, "steps": steps, "mask_backend": None, "device": device.type}

    def timed(name: str, fn, *args):
        started = time.perf_counter()
        result = fn(*args)
        seconds[name] = round(time.perf_counter() - started, 3)
        return result

    def masked(frames: Tensor) -> tuple[Tensor, Tensor]:
        masks, backend = foreground_masks(frames, config.masks)
        record["mask_backend"] = backend
        return composite(frames, masks), masks

    # the image
    image_uri = inputs.image
    if steps["image"] == "first_frame":
        image = first_frame(loaded.frames, loaded.masks)
    elif steps["image"] == "front_view":
        image, distance = timed("front_view", front_view, loaded.gaussians, config.front_view, fovy_deg)
        record["front_view_distance"] = distance
    elif steps["image"] == "text_to_image":
        image = Picture(timed("text_to_image", TextToImage(config.text_to_image, device), inputs.prompt))
    else:
        image = loaded.image
    if image.alpha is None:
        rgb, alpha = masked(image.rgb[None])
        image = Picture(rgb[0], alpha[0])
    if steps["image"] != "given":
        image_uri = storage.join(out, "image.png")
        write_image(image_uri, image.rgb, image.alpha)

    # the video and its masks
    video_uri, masks_uri = inputs.video, inputs.masks
    if steps["video"] == "image_to_video":
        frames = timed("image_to_video", ImageToVideo(config.image_to_video, device), image.rgb)
        frames, masks = masked(frames)
        video_uri, masks_uri = _write_video(out, frames, masks)
        record["fps"] = config.image_to_video.fps
    elif not loaded.video_has_masks:  # a given video without alpha or masks: masks by the rule
        frames, masks = masked(loaded.frames)
        video_uri, masks_uri = _write_video(out, frames, masks)

    # the object
    object_uri = inputs.object
    if steps["object"] == "image_to_3d":
        generator = image_to_3d(config.image_to_3d, device)
        generated = timed("image_to_3d", generator, image.rgb)
        object_uri = generated.write(out)

    # the prompt
    prompt = inputs.prompt
    if not prompt and config.caption.backend != "none":
        prompt = timed("caption", caption, image.rgb, config.caption, device)
        record["prompt_from"] = config.caption.backend

    made = replace(inputs, prompt=prompt, image=image_uri, video=video_uri, object=object_uri, masks=masks_uri)
    record.update(
        quadruplet={"prompt": prompt, "image": image_uri, **made.pair_files()},
        seconds=seconds,
        models=_models(steps, config, prompt_captioned="prompt_from" in record),
        dtypes=_dtypes(steps, config, device),
    )
    storage.write_json(storage.join(out, "pair.json"), record)
    return PairResult(made, record)


def _write_video(out: str, frames: Tensor, masks: Tensor) -> tuple[str, str]:
    video, masks_uri = storage.join(out, "video"), storage.join(out, "masks")
    write_frames(video, frames)
    write_masks(masks_uri, masks)
    return video, masks_uri


def _dtypes(steps: dict[str, str], config: PairsConfig, device: torch.device) -> dict[str, str]:
    """The precision each model that ran used ("auto" resolved for this device)."""
    made = set(steps.values())
    sections = (
        ("text_to_image", config.text_to_image),
        ("image_to_video", config.image_to_video),
        ("image_to_3d", config.image_to_3d),
    )
    return {
        step: str(resolve_dtype(section.dtype, device)).removeprefix("torch.")
        for step, section in sections
        if step in made
    }


def _models(steps: dict[str, str], config: PairsConfig, prompt_captioned: bool) -> dict[str, str]:
    """Which model made what (provenance for pair.json and the tables)."""
    made = set(steps.values())
    models = {}
    for step, section in (
        ("text_to_image", config.text_to_image),
        ("image_to_video", config.image_to_video),
        ("image_to_3d", config.image_to_3d),
    ):
        if step in made:
            models[step] = section.model
    if prompt_captioned:
        models["caption"] = config.caption.model
    return models
