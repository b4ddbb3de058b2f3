"""Deep dataset validation: every kind of broken item is reported with its item and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from align4d_core.errors import InputError
from align4d_core.io.dataset import load_item, validate_dataset
from align4d_core.io.manifest import read_manifest

N_MESH = 600  # Gaussians sampled from mesh objects while validating (speed)


@pytest.fixture
def dataset(small_sample, tmp_path) -> Path:
    """A private copy of the small sample, free to break."""
    return Path(shutil.copytree(small_sample, tmp_path / "dataset"))


def problems(report) -> dict[str, list[tuple[str | None, str]]]:
    return {r.id: [(e.field, e.reason) for e in r.errors] for r in report.items}


def test_a_good_dataset_is_valid(dataset):
    report = validate_dataset(str(dataset), n_from_mesh=N_MESH)
    assert report.ok and report.errors == []
    assert [r.id for r in report.items] == [i.id for i in read_manifest(str(dataset))]
    for r in report.items:
        assert r.ok and r.frames == 4 and r.size == (48, 48) and r.eval_views == 4 and r.gaussians == 600


def truncate_mp4(root: Path) -> None:
    path = root / "items/hopping_torus/video.mp4"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


def remove_object(root: Path) -> None:
    (root / "items/arm_swing/object.ply").unlink()


def drop_a_mask(root: Path) -> None:
    (root / "items/twist_column/masks/3.png").unlink()


def drop_an_eval_frame(root: Path) -> None:
    (root / "items/waving_flag/eval/eval_2/3.png").unlink()


def resize_a_frame(root: Path) -> None:
    Image.fromarray(np.full((40, 40, 3), 200, np.uint8)).save(root / "items/arm_swing/video/2.png")


def obj_without_faces(root: Path) -> None:
    (root / "items/waving_flag/object.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")  # no faces


@pytest.mark.parametrize(
    ("corrupt", "item", "field", "reason"),
    [
        (truncate_mp4, "hopping_torus", "video", "mp4"),
        (remove_object, "arm_swing", "object", "not found"),
        (drop_a_mask, "twist_column", "masks", "3 masks for a video of 4 frames"),
        (drop_an_eval_frame, "waving_flag", "eval", "eval_2 has 3 frames, the video 4"),
        (resize_a_frame, "arm_swing", "video", "different sizes"),
        (obj_without_faces, "waving_flag", "object", "triangle"),
    ],
    ids=["truncated-mp4", "missing-object", "fewer-masks", "short-eval-view", "frame-size", "faceless-mesh"],
)
def test_each_broken_item_is_reported_and_the_others_stay_ok(dataset, corrupt, item, field, reason):
    corrupt(dataset)
    report = validate_dataset(str(dataset), n_from_mesh=N_MESH)
    assert not report.ok and report.errors == []
    found = problems(report)
    assert [f for f, _ in found[item]] == [field], found[item]
    assert reason in found[item][0][1]
    error = next(r for r in report.items if r.id == item).errors[0]
    assert error.item == item and f"item {item!r} field {field!r}" in str(error)
    assert all(not errors for other, errors in found.items() if other != item)


def test_a_manifest_line_that_is_not_json_is_a_dataset_error(dataset):
    manifest = dataset / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    lines.insert(2, '{"id": "broken", "source": "video",')
    manifest.write_text("\n".join(lines) + "\n")
    report = validate_dataset(str(dataset), n_from_mesh=N_MESH)
    assert not report.ok
    assert len(report.errors) == 1 and "line 3: not valid JSON" in report.errors[0].reason
    assert len(report.items) == 5 and all(r.ok for r in report.items)


def test_manifest_item_errors_and_duplicates_are_dataset_errors(dataset):
    manifest = dataset / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    lines += [lines[0], '{"id": "escape", "source": "video", "video": "../outside"}']
    manifest.write_text("\n".join(lines) + "\n")
    report = validate_dataset(str(dataset), n_from_mesh=N_MESH)
    assert [(e.item, e.field) for e in report.errors] == [("twist_column", "id"), ("escape", "video")]
    assert "duplicate id" in report.errors[0].reason and "escapes" in report.errors[1].reason
    assert all(r.ok for r in report.items)


def test_a_missing_dataset_raises(tmp_path):
    with pytest.raises(InputError, match="dataset folder not found"):
        validate_dataset(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no manifest.jsonl"):
        validate_dataset(str(tmp_path / "empty"))


def test_eval_views_must_be_numbered_without_gaps(dataset):
    shutil.move(dataset / "items/pulsing_blob/eval/eval_1", dataset / "items/pulsing_blob/eval/eval_7")
    report = validate_dataset(str(dataset), n_from_mesh=N_MESH)
    assert problems(report)["pulsing_blob"] == [
        ("eval", "views are eval_0 .. eval_7 without gaps; missing eval_1, eval_4, eval_5, eval_6")
    ]


def test_load_item_gives_the_pair(dataset):
    items = {i.id: i for i in read_manifest(str(dataset))}
    loaded = load_item(str(dataset), items["pulsing_blob"], n_from_mesh=N_MESH, seed=1)
    assert loaded.video.frames.shape == (4, 48, 48, 3) and loaded.video.fps == 8.0
    assert loaded.masks is not None and loaded.masks.shape == (4, 48, 48, 1)
    assert len(loaded.gaussians) == N_MESH
    drop_a_mask(dataset)
    with pytest.raises(InputError) as info:
        load_item(str(dataset), items["twist_column"])
    assert (info.value.item, info.value.field) == ("twist_column", "masks")
