"""A dataset whose item paths leave the dataset root through a symlink is refused like ``../`` (issue 15).

A dataset from elsewhere may hold ``items/x -> /etc`` or a video that is a link to a file of the
user's; a run must refuse such an item (a failed row naming the item, the field and the path) and
never read it into its outputs. Links that stay inside the dataset keep working. The dataset is a
real sample (``align4d sample``) with links made as a new user would make them.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from align4d.cli import app
from align4d_core.errors import InputError
from align4d_core.io.dataset import load_item, validate_dataset
from align4d_core.io.manifest import MANIFEST_NAME, Item, read_manifest
from align4d_core.pairs import item_pair
from align4d_core.pipeline.runs import error_item_id, pair_folder, select_items
from align4d_core.reporting.rows import failed_row

REASON = "resolves outside the dataset root through a symlink"
ESCAPING = {  # item -> (field, the dataset-relative path named in the error)
    "arm_swing": ("image", "items/arm_swing/image.png"),  # (a) the item folder is a link to /etc
    "hopping_torus": ("video", "items/hopping_torus/video.mp4"),  # (b) the video is a link to a file outside
    "waving_flag": ("video", "items/waving_flag/video/0.png"),  # a frame of a PNG video is a link outside
}
INSIDE = ("twist_column", "pulsing_blob")  # (c) links that stay inside the dataset


@pytest.fixture
def linked(small_sample: str, tmp_path: Path) -> tuple[Path, Path]:
    """The sample with the links of ESCAPING and INSIDE; yields (dataset root, the outside folder)."""
    root = Path(shutil.copytree(small_sample, tmp_path / "dataset"))
    outside = tmp_path / "outside"
    outside.mkdir()
    items = root / "items"

    shutil.rmtree(items / "arm_swing")
    (items / "arm_swing").symlink_to("/etc", target_is_directory=True)

    video = items / "hopping_torus" / "video.mp4"  # a real, readable mp4: only the link is wrong
    shutil.move(video, outside / "video.mp4")
    video.symlink_to(outside / "video.mp4")

    frame = items / "waving_flag" / "video" / "0.png"
    shutil.move(frame, outside / "0.png")
    frame.symlink_to(os.path.relpath(outside / "0.png", frame.parent))  # a relative link climbing out

    (root / "shared").mkdir()
    shutil.move(items / "twist_column" / "eval", root / "shared" / "twist_column-eval")
    (items / "twist_column" / "eval").symlink_to("../../shared/twist_column-eval", target_is_directory=True)
    shutil.move(items / "pulsing_blob", root / "shared" / "pulsing_blob")
    (items / "pulsing_blob").symlink_to(root / "shared" / "pulsing_blob", target_is_directory=True)
    return root, outside


def manifest_items(root: Path) -> dict[str, Item]:
    """The manifest's items as written, read without the dataset root (no symlink check)."""
    lines = (root / MANIFEST_NAME).read_text().splitlines()
    return {item.id: item for item in (Item.from_json(json.loads(line)) for line in lines if line.strip())}


def test_validate_reports_each_escaping_item_and_exits_1(linked):
    root, _ = linked
    result = CliRunner().invoke(app, ["validate", str(root)], terminal_width=400)
    assert result.exit_code == 1, result.output
    for item, (field, path) in ESCAPING.items():
        assert f"item {item!r} field {field!r}" in result.output
        assert path in result.output
    assert result.output.count(REASON) >= len(ESCAPING)
    assert "Traceback" not in result.output

    report = validate_dataset(str(root))
    assert {e.item for e in report.all_errors} == set(ESCAPING)
    assert all(REASON in e.reason for e in report.all_errors)
    assert {r.id: r.ok for r in report.items} == dict.fromkeys(INSIDE, True)
    assert all(r.eval_views == 4 and r.frames == 4 for r in report.items)


def test_the_run_makes_failed_rows_naming_item_field_and_path(linked):
    root, _ = linked
    usable, errors = select_items(str(root))  # what flow `align4d` reads the dataset with
    assert sorted(i.id for i in usable) == sorted(INSIDE)
    rows = {row["item"]: row for k, e in enumerate(errors) for row in [failed_row(error_item_id(e, k), "align4d", e)]}
    assert sorted(rows) == sorted(ESCAPING)
    for item, (field, path) in ESCAPING.items():
        assert rows[item]["status"] == "failed"
        error = rows[item]["error"]
        assert f"item {item!r} field {field!r}" in error and REASON in error and repr(path) in error
    with pytest.raises(InputError, match=REASON):
        read_manifest(str(root))  # the strict reader too


def test_resolving_or_loading_an_escaping_item_is_refused_and_nothing_is_copied(linked, tmp_path):
    root, outside = linked
    run = tmp_path / "run"
    items = manifest_items(root)
    for item_id, (field, path) in ESCAPING.items():
        item = items[item_id]
        with pytest.raises(InputError, match=REASON) as caught:
            item.resolved(str(root))
        assert (caught.value.item, caught.value.field, caught.value.uri) == (item_id, field, path)
        for attempt in (
            functools.partial(item_pair, str(root), item, pair_folder(str(run), item.id)),  # the pair stage's entry
            functools.partial(load_item, str(root), item),  # what the optimisation stages read
        ):
            with pytest.raises(InputError, match=REASON) as caught:
                attempt()
            error = caught.value  # the first field read; the path is the field's or a file in its folder
            assert error.item == item_id and error.uri.startswith(getattr(item, error.field)), error
    for item_id in INSIDE:
        item_pair(str(root), items[item_id], pair_folder(str(run), item_id))
    secrets = {p.read_bytes() for p in outside.iterdir()}
    copied = [p for p in run.rglob("*") if p.is_file() and p.read_bytes() in secrets] if run.exists() else []
    assert copied == []


def test_links_inside_the_dataset_still_resolve_and_load(linked):
    root, _ = linked
    items = manifest_items(root)
    for item_id in INSIDE:
        resolved = items[item_id].resolved(str(root))
        assert resolved.eval == str(root / "items" / item_id / "eval")
        loaded = load_item(str(root), items[item_id])
        assert loaded.video.num_frames == 4 and len(loaded.gaussians) > 0


@pytest.mark.parametrize(
    ("link", "target"),
    [
        ("items/x", "/"),  # a folder link to the filesystem's root
        ("items/x", "/etc"),
        ("items/x/video.mp4", "../../../elsewhere/video.mp4"),  # relative, climbing out
        ("items", "../elsewhere"),  # a link higher up the item's path
    ],
    ids=["folder-to-root", "folder-to-etc", "relative-file", "parent-folder"],
)
def test_every_shape_of_escaping_link_is_refused(tmp_path, link, target):
    root, elsewhere = tmp_path / "dataset", tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "video.mp4").write_bytes(b"not the dataset's")
    (root / link).parent.mkdir(parents=True, exist_ok=True)
    (root / link).symlink_to(target)
    line = {"id": "x", "source": "video", "video": "items/x/video.mp4"}
    (root / MANIFEST_NAME).write_text(json.dumps(line) + "\n")
    with pytest.raises(InputError, match=REASON) as caught:
        read_manifest(str(root))
    assert (caught.value.item, caught.value.field) == ("x", "video")
    with pytest.raises(InputError, match=REASON):
        Item.from_json(line).resolved(root.as_uri())  # file:// URIs as well as plain paths
