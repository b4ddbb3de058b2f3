"""Pair generation (X -> video-3D pair): tiny random SDXL, SVD, Shap-E and BLIP built from configs,
saved to a temp dir and loaded through the real code with the hub offline; routing for every source
modality, the cache, the mask rule, the weights' locations (hub, folder, s3:// cache) and bad input.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import weakref
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tiny_pairs
import torch

from align4d_core.config import (
    CaptionConfig,
    ImageTo3DConfig,
    ImageToVideoConfig,
    MaskConfig,
    PairsConfig,
    RunConfig,
    TextToImageConfig,
    build_run_config,
    from_dict,
)
from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.io.hashing import hash_uri
from align4d_core.io.manifest import Item, write_manifest
from align4d_core.io.media import read_image, read_masks, read_video, write_frames, write_image
from align4d_core.io.objects import load_object
from align4d_core.pairs import ROUTES, ModelMissingError, pairs_stage
from align4d_core.pairs import weights as weights_module
from align4d_core.pairs.caption import caption
from align4d_core.pairs.image_to_3d import image_to_3d
from align4d_core.pairs.image_to_video import ImageToVideo
from align4d_core.pairs.masks import composite, foreground_masks, mask_backend, white_background_masks
from align4d_core.pairs.model_cache import CACHE_ENV
from align4d_core.pairs.text_to_image import TextToImage
from align4d_core.pairs.views import canonical_distance, front_view
from align4d_core.pipeline.stages import stage_config_hash

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # diffusers' schedulers

CPU = torch.device("cpu")
FOVY = RunConfig().fovy_deg


@pytest.fixture(scope="module", autouse=True)
def model_cache(tmp_path_factory, one_thread, offline_hub):
    """A private model cache for s3:// model folders, with the hub offline and one thread."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("model-cache")))
        yield


@pytest.fixture(scope="module")
def models(tmp_path_factory, offline_hub) -> dict:
    """Every tiny model, built once for the module."""
    return tiny_pairs.save_all(tmp_path_factory.mktemp("tiny-pairs"))


@pytest.fixture(scope="module")
def config(models) -> PairsConfig:
    return from_dict(PairsConfig, tiny_pairs.tiny_pairs_settings(models))


@pytest.fixture(scope="module")
def square_image() -> torch.Tensor:
    """A 32 px orange square on white."""
    rgb = torch.ones(32, 32, 3)
    rgb[8:24, 10:22] = torch.tensor([0.9, 0.5, 0.1])
    return rgb


# --- the generators, one at a time ----------------------------------------------------------------


def test_text_to_image_shape_range_and_seed(config):
    generate = TextToImage(config.text_to_image, CPU)
    image = generate("a red toy")
    assert image.shape == (32, 32, 3) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert torch.equal(image, generate("a red toy"))  # fixed seed: identical
    other = TextToImage(from_dict(TextToImageConfig, {**vars(config.text_to_image), "seed": 1}), CPU)("a red toy")
    assert not torch.equal(image, other)


def test_image_to_video_frame_count_shape_and_seed(config, square_image):
    video = ImageToVideo(config.image_to_video, CPU)(square_image)
    assert video.shape == (4, 32, 32, 3)
    assert torch.equal(video, ImageToVideo(config.image_to_video, CPU)(square_image))
    longer = from_dict(ImageToVideoConfig, {**vars(config.image_to_video), "frames": 6, "seed": 3})
    assert ImageToVideo(longer, CPU)(square_image).shape[0] == 6


def test_image_to_video_pads_to_the_model_aspect_and_crops_back(config, square_image):
    """A square image on a 48x32 (3:2) model: generated at 48x32, returned as the 32x32 square."""
    wide = from_dict(ImageToVideoConfig, {**vars(config.image_to_video), "width": 48, "height": 32})
    seen = {}
    real = weights_module.load_pipeline

    def spy(*args, **kwargs):
        pipe = real(*args, **kwargs)
        original = pipe.__call__

        def call(image, **kw):
            seen["image"], seen["size"] = image.size, (kw["width"], kw["height"])
            return original(image, **kw)

        pipe.__call__ = call
        return _Calling(pipe, call)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(weights_module, "load_pipeline", spy)
        video = ImageToVideo(wide, CPU)(square_image)
    assert seen == {"image": (48, 32), "size": (48, 32)}
    assert video.shape == (4, 32, 32, 3)


class _Calling:
    """A pipeline whose call is replaced (instances' __call__ is not looked up by Python)."""

    def __init__(self, pipe, call):
        self._pipe, self._call = pipe, call

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._pipe, name)


def test_image_to_3d_mesh_is_normalised_sampled_and_seeded(config, square_image, tmp_path):
    generate = image_to_3d(config.image_to_3d, CPU)
    made = generate(square_image)
    mesh = made.mesh
    assert mesh is not None and len(mesh.faces) > 0
    radius = np.linalg.norm(mesh.vertices, axis=1).max()
    assert radius == pytest.approx(config.image_to_3d.radius, rel=1e-6)
    centre = (mesh.vertices.min(axis=0) + mesh.vertices.max(axis=0)) / 2
    assert np.abs(centre).max() < 1e-6
    uri = made.write(str(tmp_path))
    assert uri.endswith("object.glb")
    gaussians = load_object(uri, n_from_mesh=300)  # the mesh sampler, as the pipeline loads the object
    assert len(gaussians) == 300 and float(gaussians.means.norm(dim=-1).max()) <= 0.5 + 1e-5
    again = image_to_3d(config.image_to_3d, CPU)(square_image).mesh
    assert np.array_equal(mesh.vertices, again.vertices) and np.array_equal(mesh.faces, again.faces)
    assert storage.read_bytes(uri) == storage.read_bytes(made.write(str(tmp_path / "again")))


def test_unknown_image_to_3d_backend_names_the_choices():
    with pytest.raises(InputError, match="shap-e"):
        image_to_3d(ImageTo3DConfig(backend="lgm"), CPU)


def test_blip_caption_is_deterministic(models, square_image):
    blip = CaptionConfig(backend="blip", model=str(models["blip"]), max_tokens=5)
    text = caption(square_image, blip, CPU)
    assert isinstance(text, str) and text == caption(square_image, blip, CPU)
    assert caption(square_image, CaptionConfig(), CPU) is None


def test_each_model_is_released_after_it_ran(config):
    """Models load one at a time: nothing of a pipeline survives its generator's call."""
    alive = []
    real = weights_module.load_pipeline

    def spy(*args, **kwargs):
        pipe = real(*args, **kwargs)
        alive.append(weakref.ref(pipe.unet))
        return pipe

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(weights_module, "load_pipeline", spy)
        TextToImage(config.text_to_image, CPU)("a toy")
    import gc

    gc.collect()
    assert len(alive) == 1 and alive[0]() is None


# --- masks and views ------------------------------------------------------------------------------


def test_white_background_rule_keeps_enclosed_white():
    """Border-connected near-white is background; a white hole inside the object stays foreground."""
    rgb = torch.ones(1, 20, 20, 3) * 0.97  # near-white background (within 0.08)
    rgb[0, 4:16, 4:16] = torch.tensor([0.2, 0.4, 0.8])
    rgb[0, 8:12, 8:12] = 1.0  # a white patch enclosed by the object
    masks = white_background_masks(rgb, 0.08)
    assert masks.shape == (1, 20, 20, 1)
    assert masks[0, 4:16, 4:16].min() == 1.0 and masks[0, :4].max() == 0.0 and masks[0, :, 16:].max() == 0.0
    on_white = composite(rgb, masks)
    assert on_white[0, 0, 0].tolist() == [1.0, 1.0, 1.0]  # the almost-white background becomes white
    assert torch.equal(on_white[0, 5, 5], rgb[0, 5, 5])


def flood_from_the_border(frame) -> set:
    """The border-connected pixels of one bool frame, by a plain breadth-first flood fill."""
    h, w = len(frame), len(frame[0])
    todo = [(y, x) for y in range(h) for x in range(w) if (y in (0, h - 1) or x in (0, w - 1)) and frame[y][x]]
    seen = set(todo)
    while todo:
        y, x = todo.pop()
        for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if 0 <= ny < h and 0 <= nx < w and frame[ny][nx] and (ny, nx) not in seen:
                seen.add((ny, nx))
                todo.append((ny, nx))
    return seen


def test_border_connectivity_matches_a_flood_fill():
    """scipy's labelling, as the mask rule uses it, against a flood fill on a maze of random obstacles."""
    from align4d_core.pairs.masks import border_connected

    region = torch.rand(3, 40, 40, generator=torch.Generator().manual_seed(0)) < 0.55
    expected = border_connected(region)
    for t in range(3):
        assert {tuple(p) for p in expected[t].nonzero().tolist()} == flood_from_the_border(region[t].tolist())
    assert 0 < int(expected.sum()) < int(region.sum())  # some near-white pixels are enclosed


def test_mask_backend_falls_back_to_the_threshold_without_rembg(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rembg" else real(name, *a))
    assert mask_backend(MaskConfig()) == "threshold"
    with pytest.raises(InputError, match="rembg package is not installed"):
        mask_backend(MaskConfig(backend="rembg"))
    masks, used = foreground_masks(torch.ones(2, 8, 8, 3), MaskConfig())
    assert used == "threshold" and float(masks.max()) == 0.0


def test_front_view_at_the_canonical_distance_fills_the_view():
    """A sphere of radius 0.4 seen from the canonical distance spans `fill` of the image height."""
    import trimesh

    from align4d_core.config import FrontViewConfig
    from align4d_core.io.mesh import gaussians_from_mesh

    sphere = gaussians_from_mesh(trimesh.creation.icosphere(subdivisions=3, radius=0.4), 3000, seed=0)
    distance = canonical_distance(sphere, 0.8, FOVY)
    picture, used = front_view(sphere, FrontViewConfig(size=64, fill=0.8), FOVY)
    assert used == pytest.approx(distance)
    rows = (picture.alpha[..., 0] > 0.5).any(dim=1).nonzero()
    span = (int(rows.max()) - int(rows.min()) + 1) / 64
    assert span == pytest.approx(0.8, abs=0.06)
    assert picture.rgb.shape == (64, 64, 3) and float(picture.rgb[0, 0].min()) == 1.0  # on white


# --- routing, the stage and its cache ------------------------------------------------------------


def test_routing_by_source_modality():
    assert ROUTES == {
        "text": {"image": "text_to_image", "video": "image_to_video", "object": "image_to_3d"},
        "image": {"image": "given", "video": "image_to_video", "object": "image_to_3d"},
        "video": {"image": "first_frame", "video": "given", "object": "image_to_3d"},
        "3d": {"image": "front_view", "video": "image_to_video", "object": "given"},
    }


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, square_image):
    """One item per source modality, each giving only its own modality (an RGBA image, a PNG video
    with alpha, an mp4 without, a mesh), plus a complete item."""
    root = str(tmp_path_factory.mktemp("x4d"))
    alpha = torch.zeros(32, 32, 1)
    alpha[8:24, 10:22] = 1.0
    write_image(storage.join(root, "cat/image.png"), square_image, alpha)
    frames = square_image.expand(3, 32, 32, 3).clone()
    frames[1:, 8:24, 12:24] = torch.tensor([0.2, 0.6, 0.3])
    write_frames(storage.join(root, "walk/video"), frames, alpha.expand(3, 32, 32, 1))
    from align4d_core.io.media import write_video

    write_video(storage.join(root, "spin/video.mp4"), frames, fps=8.0)
    import trimesh

    box = trimesh.creation.box(extents=(0.5, 0.7, 0.4))
    box.visual.vertex_colors = [200, 60, 30, 255]
    storage.write_bytes(storage.join(root, "box/object.glb"), box.export(file_type="glb"))
    write_frames(storage.join(root, "pair/video"), frames)
    storage.copy_file(storage.join(root, "box/object.glb"), storage.join(root, "pair/object.glb"))
    items = [
        Item(id="toy", source="text", prompt="a red toy"),
        Item(id="cat", source="image", image="cat/image.png", prompt="an orange box"),
        Item(id="walk", source="video", video="walk/video"),
        Item(id="spin", source="video", video="spin/video.mp4"),
        Item(id="box", source="3d", object="box/object.glb"),
        Item(id="pair", source="video", video="pair/video", object="pair/object.glb"),
    ]
    write_manifest(root, items)
    return root


def run_pairs_task(dataset: str, item_id: str, run_root: str, settings: dict) -> dict:
    """The Prefect task's function, as flow align4d-item calls it (without a Prefect server: the
    ``gpu`` concurrency slot is a no-op here)."""
    import contextlib
    import importlib

    from align4d_core.io.manifest import read_manifest

    module = importlib.import_module("tasks.pairs")  # the module; ``tasks.pairs`` is the task itself
    item = next(i for i in read_manifest(dataset) if i.id == item_id)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(module, "gpu_slot", contextlib.nullcontext)
        return module.pairs.fn(dataset, item.to_json(), run_root, settings)


@pytest.mark.parametrize("item_id", ["toy", "cat", "walk", "spin", "box"])
def test_every_source_gives_a_complete_quadruplet_and_a_rerun_is_a_cache_hit(
    item_id, dataset, models, tmp_path, monkeypatch
):
    before = hash_uri(dataset)
    settings = {"pairs": tiny_pairs.tiny_pairs_settings(models)}
    result = run_pairs_task(dataset, item_id, str(tmp_path / "run"), settings)
    uris = result["uris"]
    folder = storage.join(str(tmp_path / "run"), "items", item_id, "pair")
    record = storage.read_json(storage.join(folder, "pair.json"))
    assert record["steps"] == ROUTES[{"toy": "text", "cat": "image", "box": "3d"}.get(item_id, "video")]
    quadruplet = record["quadruplet"]
    assert all(quadruplet[k] for k in ("image", "video", "object"))
    video = read_video(uris["video"])
    masks = read_masks(uris["masks"]) if uris["masks"] else video.alpha  # PNG frames with alpha need no masks
    assert video.num_frames >= 2 and masks is not None and masks.shape[:3] == video.frames.shape[:3]
    assert float(video.frames.max()) <= 1.0 and len(load_object(uris["object"], n_from_mesh=200)) == 200
    rgb, alpha = read_image(quadruplet["image"])
    assert rgb.shape[-1] == 3 and alpha is not None
    assert set(result["hashes"]) >= {"video", "object"}
    assert hash_uri(dataset) == before  # nothing written into the input dataset
    if record["steps"]["video"] == "image_to_video":
        assert video.num_frames == 4 and str(uris["video"]).startswith(folder)
    if record["steps"]["object"] == "image_to_3d":
        assert uris["object"] == storage.join(folder, "object.glb")

    def no_model(*args, **kwargs):
        raise AssertionError("a cached pair loaded a model")

    monkeypatch.setattr(weights_module, "load_pipeline", no_model)
    marker = storage.read_text(storage.join(folder, "done.json"))
    again = run_pairs_task(dataset, item_id, str(tmp_path / "run"), settings)
    assert again == result and storage.read_text(storage.join(folder, "done.json")) == marker


def test_a_cached_pair_points_at_the_given_files_where_they_are_now(dataset, config, tmp_path, monkeypatch):
    """The same content at a new place (a moved dataset) is a cache hit that names the new place."""
    import shutil

    moved = tmp_path / "moved"
    shutil.copytree(dataset, moved)
    out = str(tmp_path / "pair")
    first = pairs_stage(Item.of_files(video=storage.join(dataset, "walk/video")), out, config, CPU, fovy_deg=FOVY)
    monkeypatch.setattr(weights_module, "load_pipeline", lambda *a, **k: pytest.fail("a cached pair loaded a model"))
    again = pairs_stage(Item.of_files(video=str(moved / "walk/video")), out, config, CPU, fovy_deg=FOVY)
    assert first.video == storage.join(dataset, "walk/video") and again.video == str(moved / "walk/video")
    assert again.object == first.object == storage.join(out, "object.glb")


def test_a_complete_item_passes_through_untouched(dataset, tmp_path):
    result = run_pairs_task(dataset, "pair", str(tmp_path / "run"), {})
    assert result["uris"]["video"] == storage.join(dataset, "pair/video")
    assert not storage.exists(str(tmp_path / "run"))


def test_other_pair_settings_regenerate_and_other_stages_ignore_them(dataset, models, tmp_path):
    settings = {"pairs": tiny_pairs.tiny_pairs_settings(models)}
    first = run_pairs_task(dataset, "cat", str(tmp_path / "run"), settings)
    settings["pairs"]["image_to_video"]["frames"] = 3
    second = run_pairs_task(dataset, "cat", str(tmp_path / "run"), settings)
    assert read_video(second["uris"]["video"]).num_frames == 3 and first["hashes"] != second["hashes"]
    a, b = build_run_config("cpu", {}), build_run_config("cpu", settings)
    assert all(stage_config_hash(a, s) == stage_config_hash(b, s) for s in ("search", "optimize", "render", "evaluate"))


def test_pair_settings_defaults_name_the_paper_models():
    pairs = RunConfig().pairs
    assert pairs.text_to_image.model == "stabilityai/stable-diffusion-xl-base-1.0"
    assert pairs.image_to_video.model == "stabilityai/stable-video-diffusion-img2vid"
    assert pairs.image_to_video.frames == 14 and pairs.image_to_3d.model == "openai/shap-e-img2img"


# --- bad input: a clear error naming the item, nothing written -------------------------------------


def _corrupt_png(path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return str(path)


def _one_frame_video(folder) -> str:
    write_frames(str(folder), torch.ones(1, 16, 16, 3))
    return str(folder)


@pytest.mark.parametrize(
    "make, field, reason",
    [
        (lambda tmp: Item.of_files(prompt="   "), "prompt", "empty prompt"),
        (lambda tmp: Item.of_files(image=_corrupt_png(tmp / "bad.png")), "image", "truncated or corrupt|not an image"),
        (lambda tmp: Item.of_files(video=_one_frame_video(tmp / "short")), "video", "at least 2 frames"),
        (lambda tmp: Item.of_files(object=str((tmp / "thing.xyz").resolve())), "object", "unknown 3D format"),
    ],
    ids=["empty-prompt", "unreadable-image", "one-frame-video", "unknown-object-format"],
)
def test_bad_input_names_the_item_and_writes_nothing(make, field, reason, config, tmp_path):
    (tmp_path / "thing.xyz").write_text("0 0 0\n")
    out = str(tmp_path / "pair")
    with pytest.raises(InputError, match=reason) as caught:
        pairs_stage(make(tmp_path), out, config, CPU, fovy_deg=FOVY, item="item-7")
    assert caught.value.item == "item-7" and caught.value.field == field
    assert "item 'item-7'" in str(caught.value)
    assert not os.path.exists(out)


def test_a_failure_while_generating_leaves_no_half_made_pair(config, dataset, tmp_path, monkeypatch):
    from align4d_core.pairs import route

    def broken(self, rgb):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(route.ImageToVideo, "__call__", broken)
    out = str(tmp_path / "pair")
    with pytest.raises(RuntimeError, match="simulated"):
        pairs_stage(Item.of_files(prompt="a toy"), out, config, CPU, fovy_deg=FOVY, item="toy")
    assert not os.path.exists(out)


def test_an_item_without_a_pair_needs_an_output_folder(dataset):
    from align4d_core.io.manifest import read_manifest
    from align4d_core.pairs import item_pair

    item = next(i for i in read_manifest(dataset) if i.id == "cat")
    with pytest.raises(InputError, match="needs an output folder"):
        item_pair(dataset, item)


# --- weights: hub id, folder, object-storage cache -------------------------------------------------


def test_missing_hub_weights_name_the_model_and_how_to_provide_them(offline_hub):
    config = TextToImageConfig(model="align4d-test/no-such-sdxl")
    with pytest.raises(ModelMissingError) as caught:
        TextToImage(config, CPU)("a toy")
    message = str(caught.value)
    assert "pairs.text_to_image.model" in message and "align4d-test/no-such-sdxl" in message
    assert "HF_HUB_OFFLINE" in message and "hf download align4d-test/no-such-sdxl --local-dir DIR" in message


def test_a_folder_that_is_no_pipeline_is_refused_with_the_fix(tmp_path):
    with pytest.raises(ModelMissingError, match="no model_index.json"):
        ImageToVideo(ImageToVideoConfig(model=str(tmp_path), frames=4), CPU)(torch.ones(8, 8, 3))


def _break_component(folder: Path, component: str, how: str) -> str:
    """Drop the first weight of ``component``'s file, or cut the file in half; returns the key dropped."""
    from safetensors.torch import load_file, save_file

    (path,) = [p for p in (folder / component if component else folder).iterdir() if p.suffix == ".safetensors"]
    if how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        return ""
    tensors = load_file(str(path))
    key = sorted(tensors)[0]
    del tensors[key]
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return key


@pytest.mark.parametrize(
    "model,component,how",
    [
        ("sdxl", "text_encoder_2", "drop"),
        ("svd", "unet", "drop"),
        ("shap_e", "prior", "truncate"),
        ("shap_e", "shap_e_renderer", "drop"),
    ],
)
def test_a_pipeline_that_does_not_load_whole_fails_naming_the_component(
    models, config, square_image, tmp_path, model, component, how
):
    """diffusers would run these with randomly initialised weights; the pair stage refuses them."""
    from align4d_core.io.weights import IncompleteModelError

    folder = tmp_path / model
    shutil.copytree(models[model], folder)
    key = _break_component(folder, component, how)
    with pytest.raises(IncompleteModelError) as caught:
        if model == "sdxl":
            TextToImage(replace(config.text_to_image, model=str(folder)), CPU)("a toy")
        elif model == "svd":
            ImageToVideo(replace(config.image_to_video, model=str(folder)), CPU)(square_image)
        else:
            image_to_3d(replace(config.image_to_3d, model=str(folder)), CPU)(square_image)
    message = str(caught.value)
    assert f"component {component}/" in message and str(folder) in message
    assert (key in message and "missing" in message) if how == "drop" else "truncated" in message


def test_a_blip_checkpoint_with_a_missing_weight_is_refused(models, square_image, tmp_path):
    from align4d_core.io.weights import IncompleteModelError

    folder = tmp_path / "blip"
    shutil.copytree(models["blip"], folder)
    key = _break_component(folder, "", "drop")
    with pytest.raises(IncompleteModelError, match=rf"pairs.caption.model.*missing.*{re.escape(key)}"):
        caption(square_image, CaptionConfig(backend="blip", model=str(folder), max_tokens=5), CPU)


def test_weights_from_an_s3_model_cache_are_synced_once(models, config, square_image, s3_bucket, tmp_path, monkeypatch):
    from align4d_core.pairs import model_cache

    fs, _ = storage.filesystem(s3_bucket)
    remote = f"{s3_bucket}/models/shap-e"
    for path in sorted(p for p in models["shap_e"].rglob("*") if p.is_file()):
        storage.copy_file(str(path), f"{remote}/{path.relative_to(models['shap_e']).as_posix()}")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    s3_config = from_dict(ImageTo3DConfig, {**vars(config.image_to_3d), "model": remote})
    mesh = image_to_3d(s3_config, CPU)(square_image).mesh
    local = image_to_3d(config.image_to_3d, CPU)(square_image).mesh
    assert np.array_equal(mesh.vertices, local.vertices)

    copies = []
    real_get = type(fs).get_file
    monkeypatch.setattr(type(fs), "get_file", lambda self, *a, **k: copies.append(a[0]) or real_get(self, *a, **k))
    model_cache._sync.cache_clear()  # a new process on the same worker: only the listing is read
    image_to_3d(s3_config, CPU)(square_image)
    assert copies == []
    with pytest.raises(ModelMissingError, match="no model folder"):
        image_to_3d(from_dict(ImageTo3DConfig, {**vars(s3_config), "model": f"{s3_bucket}/nothing"}), CPU)(square_image)


# --- the flow, align4d generate from any input, Consistent4D import --------------------------------

FAST = {
    "optimize": {"steps": 2, "frames_per_step": 2, "resolution_schedule": [[1.0, 32]], "checkpoint_every": 2},
    "search": {"d_step": 0.25},
    "export": {"turntable_frames": 4, "eval_size": 32},
    "mesh_samples": 400,
}
"""A few optimisation steps at 32 px: these tests check the plumbing, not the 4D quality."""


def test_the_flow_generates_pairs_for_every_item_once(harness, dataset, models, tmp_path):
    """Flow align4d over a text, an image and a complete item, two methods: each item's pair is made
    once (shared by the methods) inside the run, every row completes, and a re-run loads no model."""
    from align4d_core.pipeline.runs import RunSpec
    from flows.align4d import align4d

    settings = {**FAST, "pairs": tiny_pairs.tiny_pairs_settings(models)}
    kwargs = dict(
        dataset=dataset,
        out=str(tmp_path / "runs"),
        settings=settings,
        methods=["align4d", "no-oda"],
        items=["toy", "cat", "pair"],
        return_state=True,
    )
    state = align4d(**kwargs)
    assert state.is_completed(), state.message
    root = RunSpec(dataset, str(tmp_path / "runs"), settings, ("align4d", "no-oda"), ("toy", "cat", "pair")).root
    for item in ("toy", "cat"):
        record = storage.read_json(storage.join(root, "items", item, "pair", "done.json"))
        assert record["extra"]["quadruplet"]["object"].endswith("object.glb")
    assert not storage.exists(storage.join(root, "items", "pair", "pair"))  # a complete item passes through
    rows = {(r["item"], r["method"]): r for r in storage.read_json(storage.join(root, "tables", "rows.json"))}
    assert rows[("toy", "align4d")]["seconds_pairs"] > 0 and rows[("pair", "align4d")]["seconds_pairs"] is None
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(weights_module, "load_pipeline", lambda *a, **k: pytest.fail("a re-run loaded a model"))
        assert align4d(**kwargs).is_completed()


def test_generate_from_a_prompt_runs_pairs_then_the_optimizer(models, tmp_path):
    from typer.testing import CliRunner

    from align4d.cli import app

    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps({**FAST, "pairs": tiny_pairs.tiny_pairs_settings(models)}))
    out = tmp_path / "toy"
    result = CliRunner().invoke(
        app, ["generate", "--text", "a red toy", "--out", str(out), "--config", str(config_file), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    done = storage.read_json(str(out / "done.json"))
    assert done["extra"]["artifacts"] and (out / "object" / "canonical.ply").exists()
    assert storage.read_json(str(out / "pair" / "pair.json"))["steps"]["image"] == "text_to_image"
    assert done["input_hashes"]["video"] == hash_uri(str(out / "pair" / "video"))


def test_generate_with_an_empty_prompt_is_one_line_and_writes_nothing(tmp_path):
    from typer.testing import CliRunner

    from align4d.cli import app

    result = CliRunner().invoke(app, ["generate", "--text", "", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "empty prompt" in result.output
    assert not (tmp_path / "x").exists()


def _consistent4d(root, names=("dance", "jump"), frames=3):
    alpha = torch.zeros(frames, 16, 16, 1)
    alpha[:, 4:12, 4:12] = 1.0
    video = torch.ones(frames, 16, 16, 3) * torch.tensor([0.3, 0.5, 0.9])
    for name in names:
        write_frames(str(root / name), video, alpha)
    for k in range(4):
        write_frames(str(root / "eval_gt" / names[0] / f"eval_{k}"), torch.ones(frames, 16, 16, 3) * 0.5)
    return root


def test_import_consistent4d_makes_video_items_with_eval_views(tmp_path, memory_root):
    from align4d_core.io.consistent4d import import_consistent4d
    from align4d_core.io.dataset import validate_dataset
    from align4d_core.io.manifest import read_manifest

    src = _consistent4d(tmp_path / "c4d")
    items = import_consistent4d(str(src), memory_root)
    assert [(i.id, i.source, i.eval is not None) for i in read_manifest(memory_root)] == [
        ("dance", "video", True),
        ("jump", "video", False),
    ]
    assert items[0].video == "items/dance/video"
    video = read_video(storage.join(memory_root, "items/dance/video"))
    assert video.num_frames == 3 and video.alpha is not None  # RGBA kept: the alpha is the mask
    assert storage.listdir(storage.join(memory_root, "items/dance/eval")) == ["eval_0", "eval_1", "eval_2", "eval_3"]
    assert validate_dataset(memory_root).ok


def test_import_consistent4d_refuses_a_bad_folder_before_copying(tmp_path):
    from align4d_core.io.consistent4d import import_consistent4d

    src = _consistent4d(tmp_path / "c4d")
    write_frames(str(src / "short"), torch.ones(1, 8, 8, 3))
    dest = tmp_path / "x4d"
    with pytest.raises(InputError, match="at least 2 frames") as caught:
        import_consistent4d(str(src), str(dest))
    assert caught.value.item == "short" and not dest.exists()


@pytest.mark.cuda
def test_cpu_offload_on_cuda(config, square_image):
    """enable_model_cpu_offload (accelerate) gives the same frames as the plain CUDA placement."""
    pytest.importorskip("accelerate")
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cuda = torch.device("cuda")
    plain = from_dict(ImageToVideoConfig, {**vars(config.image_to_video), "dtype": "float32"})
    offloaded = from_dict(ImageToVideoConfig, {**vars(plain), "cpu_offload": True})
    a = ImageToVideo(plain, cuda)(square_image)
    b = ImageToVideo(offloaded, cuda)(square_image)
    assert a.shape == b.shape == (4, 32, 32, 3) and torch.allclose(a, b, atol=1e-4)


@pytest.mark.cuda
def test_text_route_on_cuda_in_half_precision(config, tmp_path):
    """The default dtype on CUDA is float16 for SDXL, SVD and Shap-E; the text route still gives a
    complete pair (SDXL's VAE upcasts itself; Shap-E's marching cubes run in float32)."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    cuda = torch.device("cuda")
    uris = pairs_stage(Item.of_files(prompt="a red toy"), str(tmp_path / "pair"), config, cuda, fovy_deg=FOVY)
    record = storage.read_json(str(tmp_path / "pair" / "pair.json"))
    assert record["device"] == "cuda" and record["dtypes"] == {
        "text_to_image": "float16",
        "image_to_video": "float16",
        "image_to_3d": "float16",
    }
    video = read_video(uris.video)
    assert video.num_frames == 4 and torch.isfinite(video.frames).all()
    assert len(load_object(uris.object, n_from_mesh=100)) == 100
