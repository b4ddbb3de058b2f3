"""manifest.py: the X4D quadruplet schema, strict reading, safe paths and cheap file checks."""

from __future__ import annotations

import json

import pytest
import torch

from align4d_core.errors import InputError
from align4d_core.io import media, storage
from align4d_core.io.manifest import (
    MANIFEST_NAME,
    SOURCES,
    Item,
    check_files,
    item_uri,
    read_manifest,
    write_manifest,
)

ITEMS = [
    Item(id="txt-1", source="text", prompt="a corgi running"),
    Item(id="img_2", source="image", image="img_2/input.png", eval="img_2/eval"),
    Item(id="vid.3", source="video", video="vid3/frames", masks="vid3/masks.mp4"),
    Item(id="obj4", source="3d", object="obj4/model.ply", prompt="a ✓ robot"),
]


def write_lines(root: str, *lines: str) -> None:
    storage.write_text(storage.join(root, MANIFEST_NAME), "\n".join(lines) + "\n")


def read_error(root: str, *lines: str) -> InputError:
    write_lines(root, *lines)
    with pytest.raises(InputError) as exc:
        read_manifest(root)
    return exc.value


def test_round_trip(any_root: str) -> None:
    uri = write_manifest(any_root, ITEMS)
    assert uri == storage.join(any_root, MANIFEST_NAME)
    assert read_manifest(any_root) == ITEMS
    lines = storage.read_text(uri).splitlines()
    assert len(lines) == 4
    first = json.loads(lines[0])
    assert first == {"id": "txt-1", "source": "text", "prompt": "a corgi running"}  # None omitted
    assert list(first) == sorted(first)  # sorted keys: equal items give equal bytes
    assert SOURCES == ("text", "image", "video", "3d")


def test_blank_lines_are_skipped(tmp_path) -> None:
    write_lines(str(tmp_path), "", '{"id": "a", "source": "text", "prompt": "p"}', "   ", "")
    assert read_manifest(str(tmp_path)) == [Item(id="a", source="text", prompt="p")]


def test_not_json_names_the_line(tmp_path) -> None:
    err = read_error(str(tmp_path), '{"id": "a", "source": "text", "prompt": "p"}', "", "{oops")
    assert "line 3" in str(err) and "not valid JSON" in str(err)
    assert MANIFEST_NAME in str(err)


def test_not_an_object(tmp_path) -> None:
    err = read_error(str(tmp_path), '["id", "a"]')
    assert "line 1" in str(err) and "JSON object" in str(err)


@pytest.mark.parametrize(
    ("line", "item", "field", "words"),
    [
        ({"id": "a", "source": "txt", "prompt": "p"}, "a", "source", "unknown source 'txt'"),
        ({"id": "a", "source": "video"}, "a", "video", "needs a non-empty 'video'"),
        ({"id": "a", "source": "text", "prompt": "  "}, "a", "prompt", "needs a non-empty 'prompt'"),
        ({"id": "a", "source": "3d", "image": "x.png"}, "a", "object", "needs a non-empty 'object'"),
        ({"id": "a", "source": "video", "vidoe": "v.mp4"}, "a", "vidoe", "unknown key"),
        ({"id": "a", "source": "image", "image": "../x.png"}, "a", "image", "dataset root ('../x.png')"),
        ({"id": "a", "source": "image", "image": "a/../../x.png"}, "a", "image", "escapes"),
        ({"id": "a", "source": "image", "image": "/etc/x.png"}, "a", "image", "relative"),
        ({"id": "a", "source": "video", "video": "s3://other/v.mp4"}, "a", "video", "relative"),
        ({"id": "a", "source": "image", "image": "x.png", "eval": ""}, "a", "eval", "empty path"),
        ({"id": "a", "source": "image", "image": 5}, "a", "image", "must be a string"),
        ({"source": "text", "prompt": "p"}, None, "id", "missing 'id'"),
        ({"id": "../evil", "source": "text", "prompt": "p"}, None, "id", "folder name"),
        ({"id": ".hidden", "source": "text", "prompt": "p"}, None, "id", "folder name"),
        ({"id": "a b", "source": "text", "prompt": "p"}, None, "id", "folder name"),
        ({"id": "x" * 101, "source": "text", "prompt": "p"}, None, "id", "folder name"),
    ],
)
def test_bad_items(tmp_path, line: dict, item: str | None, field: str, words: str) -> None:
    good = json.dumps({"id": "ok", "source": "text", "prompt": "p"})
    err = read_error(str(tmp_path), good, json.dumps(line))
    assert err.field == field and err.item == item
    message = str(err)
    assert "line 2" in message and words in message, message
    assert f"field {field!r}" in message
    if item is not None:
        assert f"item {item!r}" in message


def test_duplicate_id(tmp_path) -> None:
    line = json.dumps({"id": "dup", "source": "text", "prompt": "p"})
    err = read_error(str(tmp_path), line, line)
    assert err.item == "dup" and err.field == "id"
    assert "line 2" in str(err) and "duplicate id, first used on line 1" in str(err)


def test_empty_and_missing_manifest(tmp_path) -> None:
    err = read_error(str(tmp_path), "", "  ")
    assert "no items" in str(err)
    with pytest.raises(InputError, match="file not found"):
        read_manifest(str(tmp_path / "nowhere"))


def test_write_manifest_validates(tmp_path) -> None:
    with pytest.raises(InputError, match="duplicate id"):
        write_manifest(str(tmp_path), [ITEMS[0], ITEMS[0]])
    with pytest.raises(InputError, match="escapes"):
        write_manifest(str(tmp_path), [Item(id="a", source="image", image="../a.png")])
    with pytest.raises(InputError, match="at least one item"):
        write_manifest(str(tmp_path), [])
    assert not (tmp_path / MANIFEST_NAME).exists()


def test_item_uri(s3_bucket: str) -> None:
    item = ITEMS[1]
    assert item_uri(s3_bucket, item, "image") == f"{s3_bucket}/img_2/input.png"
    with pytest.raises(InputError) as exc:
        item_uri(s3_bucket, item, "video")
    assert exc.value.item == "img_2" and exc.value.field == "video"
    with pytest.raises(ValueError):
        item_uri(s3_bucket, item, "prompt")  # not a path field: a caller's bug
    escaping = Item(id="e", source="image", image="x/../../y.png")
    with pytest.raises(InputError) as exc:
        item_uri(s3_bucket, escaping, "image")
    assert (exc.value.item, exc.value.field) == ("e", "image")


def make_dataset(root: str) -> None:
    """Real files for ITEMS: a PNG, eval views, PNG frames, an mp4 of masks and a PLY."""
    media.write_image(storage.join(root, "img_2/input.png"), torch.rand(4, 4, 3))
    for k in range(4):
        media.write_frames(storage.join(root, f"img_2/eval/eval_{k}"), torch.rand(2, 4, 4, 3))
    media.write_frames(storage.join(root, "vid3/frames"), torch.rand(2, 4, 4, 3))
    media.write_video(storage.join(root, "vid3/masks.mp4"), torch.rand(2, 4, 4, 3), fps=8)
    storage.write_bytes(storage.join(root, "obj4/model.ply"), b"ply\nformat ascii 1.0\nend_header\n")


def test_check_files_accepts_a_complete_dataset(any_root: str) -> None:
    make_dataset(any_root)
    write_manifest(any_root, ITEMS)
    for item in read_manifest(any_root):
        check_files(any_root, item)  # raises on any problem


@pytest.mark.parametrize(
    ("item", "field", "words"),
    [
        (Item(id="m", source="image", image="nope.png"), "image", "not found"),
        (Item(id="m", source="image", image="vid3/frames"), "image", "expected a .png file"),
        (Item(id="m", source="video", video="missing/frames"), "video", "not found"),
        (Item(id="m", source="video", video="obj4/model.ply"), "video", "mp4"),
        (Item(id="m", source="video", video="empty"), "video", "no PNG frames"),
        (Item(id="m", source="3d", object="img_2/input.png"), "object", ".ply/.glb/.obj"),
        (Item(id="m", source="3d", object="obj4/missing.glb"), "object", "not found"),
        (Item(id="m", source="text", prompt="p", eval="vid3/frames"), "eval", "eval_<k>"),
        (Item(id="m", source="text", prompt="p", masks="nope.mp4"), "masks", "not found"),
    ],
)
def test_check_files_refuses(tmp_path, item: Item, field: str, words: str) -> None:
    root = str(tmp_path)
    make_dataset(root)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no frames here")
    with pytest.raises(InputError) as exc:
        check_files(root, item)
    assert (exc.value.item, exc.value.field) == ("m", field)
    message = str(exc.value)
    assert words in message and "item 'm'" in message and f"field {field!r}" in message, message


def test_explicit_null_fields_are_absent_fields() -> None:
    item = Item.from_json({"id": "a", "source": "text", "prompt": "p", "eval": None})
    assert item == Item(id="a", source="text", prompt="p")
    assert item.to_json() == {"id": "a", "source": "text", "prompt": "p"}
