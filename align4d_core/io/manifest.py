"""The X4D quadruplet manifest (DESIGN.md §3).

A dataset is a folder or prefix with ``manifest.jsonl``, one item per line::

    {"id": "cat", "source": "image", "image": "cat/input.png", "eval": "cat/eval"}

``source`` says which modality the item starts from and so which field it must give (text ->
``prompt``, image -> ``image``, video -> ``video``, 3d -> ``object``); the pair generation stage
produces the others inside the run, never inside the dataset. Paths are relative to the dataset
root and may not leave it: not with ``..``, and on a local disk not through a symlink either
(``items/x -> /etc`` in a dataset from elsewhere would otherwise make a run read, and copy into its
renders and pages, files the dataset's author pointed at). A symlink to another place inside the
dataset is fine; object stores have no symlinks.

Reading is strict on purpose: in a 500-item benchmark a typo (``"vidoe"``), a duplicate id or a
path outside the dataset must stop the run with a message that names the line, the item and the
field, not silently drop an input or overwrite another item's results. Ids become folder names
under ``items/<id>/``, hence the restricted character set.

:func:`check_files` only checks that the referenced files exist and are of the right kind;
reading and validating their content is the job of the readers (media, ply, mesh).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from align4d_core.errors import InputError
from align4d_core.io import storage

__all__ = [
    "MANIFEST_NAME",
    "PATH_FIELDS",
    "REQUIRED_FIELD",
    "SOURCES",
    "PAIR_FIELDS",
    "Item",
    "check_files",
    "item_uri",
    "read_manifest",
    "write_manifest",
]

MANIFEST_NAME = "manifest.jsonl"
SOURCES = ("text", "image", "video", "3d")
REQUIRED_FIELD = {"text": "prompt", "image": "image", "video": "video", "3d": "object"}
PATH_FIELDS = ("image", "video", "object", "masks", "eval")
PAIR_FIELDS = ("video", "object", "masks", "eval")
OBJECT_SUFFIXES = (".ply", ".glb", ".obj")
_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")
_EVAL_VIEW = re.compile(r"^eval_\d+$")


@dataclass(frozen=True)
class Item:
    """One quadruplet: what an item gives, wherever it is used (DESIGN.md §3).

    Read from a manifest its paths are relative to the dataset root; :meth:`resolved` gives the
    same item with absolute URIs, which is what the pair stage, the optimisation stages and the CLI
    work with; after the pair stage, ``video`` and ``object`` are always set (:attr:`complete`).
    Fields a source modality does not give are None.
    """

    id: str
    source: str
    prompt: str | None = None
    image: str | None = None
    video: str | None = None
    object: str | None = None
    masks: str | None = None
    eval: str | None = None

    def to_json(self) -> dict[str, str]:
        """The manifest line's object: every field that is set, None fields left out."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, obj: Any) -> Item:
        """Build and validate an item from a parsed manifest line (InputError if it is not one)."""
        if not isinstance(obj, dict):
            raise InputError(f"a manifest line must be a JSON object, got {type(obj).__name__}")
        item_id = obj.get("id")
        label = item_id if isinstance(item_id, str) else None
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(obj) - known)
        if unknown:
            raise InputError(
                f"unknown key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(known))}",
                item=label,
                field=unknown[0],
            )
        if "id" not in obj:
            raise InputError("missing 'id'", field="id")
        for key, value in obj.items():
            if value is not None and not isinstance(value, str):
                raise InputError(f"must be a string, got {type(value).__name__}", item=label, field=key)
        item = cls(**obj)
        item.validate()
        return item

    @classmethod
    def of_files(
        cls,
        *,
        video: str | None = None,
        object: str | None = None,
        masks: str | None = None,
        eval: str | None = None,
        image: str | None = None,
        prompt: str | None = None,
        source: str | None = None,
        id: str = "input",
    ) -> Item:
        """An item of files given directly (``align4d search``/``generate``, a notebook), not a manifest
        line: URIs as they are; the source is the first given of video, 3D object, image, prompt."""
        if source is None:
            given = [s for s, v in (("video", video), ("3d", object), ("image", image), ("text", prompt)) if v]
            source = given[0] if given else "video"
        return cls(id, source, prompt=prompt, image=image, video=video, object=object, masks=masks, eval=eval)

    def resolved(self, root: str) -> Item:
        """The same item with each path an absolute URI under the dataset ``root`` (escapes refused)."""
        paths = {name: item_uri(root, self, name) for name in PATH_FIELDS if getattr(self, name) is not None}
        return replace(self, **paths)

    @property
    def complete(self) -> bool:
        """The item gives its video-3D pair: nothing to generate."""
        return self.video is not None and self.object is not None

    def pair_files(self) -> dict[str, str | None]:
        """The files of the video-3D pair the optimisation reads (and the ground-truth views)."""
        return {name: getattr(self, name) for name in PAIR_FIELDS}

    def file_hashes(self) -> dict[str, str]:
        """Content hashes of the pair's files: the optimisation stages' input hashes (a changed file
        invalidates every stage)."""
        return _hash_fields(self, PAIR_FIELDS)

    def source_hashes(self) -> dict[str, str]:
        """What a generated pair is made from: source, prompt and the given image, video, object and
        masks (the pair stage's input hashes; the ground-truth views pass through unchanged)."""
        from align4d_core.io.hashing import hash_json

        out = {"source": hash_json(self.source)}
        if self.prompt is not None:
            out["prompt"] = hash_json(self.prompt)
        return {**out, **_hash_fields(self, ("image", "video", "object", "masks"))}

    def validate(self) -> None:
        """Check the id, source, required field and that every path stays inside the dataset."""
        if not isinstance(self.id, str) or not _ID.match(self.id):
            raise InputError(
                f"id {self.id!r} is not usable as a folder name: use 1-100 letters, digits, "
                "'-', '_' or '.', not starting with '.'",
                field="id",
            )
        if self.source not in SOURCES:
            raise InputError(
                f"unknown source {self.source!r}; expected one of {', '.join(SOURCES)}",
                item=self.id,
                field="source",
            )
        required = REQUIRED_FIELD[self.source]
        value = getattr(self, required)
        if not (isinstance(value, str) and value.strip()):
            raise InputError(f"source {self.source!r} needs a non-empty {required!r}", item=self.id, field=required)
        for name in PATH_FIELDS:
            if getattr(self, name) is not None:
                _lexical_uri(".", self, name)  # refuses ``..`` escapes; symlinks need the real root


def _hash_fields(item: Item, names: tuple[str, ...]) -> dict[str, str]:
    from align4d_core.io.hashing import hash_uri

    hashes = {}
    for name in names:
        uri = getattr(item, name)
        if uri is not None:
            try:
                hashes[name] = hash_uri(uri)
            except InputError as exc:
                raise exc.within(field=name) from None
    return hashes


def parse_manifest(root: str) -> tuple[list[Item], list[InputError]]:
    """The usable items of ``<root>/manifest.jsonl`` and one error per unusable line.

    A line that is not JSON, not a valid item (a path out of the root included, by ``..`` or, on a
    local disk, through a symlink), or repeats an id is reported (with its line number) and skipped;
    blank lines are ignored. An empty manifest is one error. A missing or unreadable manifest raises
    :class:`InputError`.
    """
    uri = storage.join(root, MANIFEST_NAME)
    items: list[Item] = []
    errors: list[InputError] = []
    line_of: dict[str, int] = {}
    for number, line in enumerate(storage.read_text(uri).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = Item.from_json(json.loads(line))
            for name in PATH_FIELDS:  # a local symlink out of the root is refused like ``..``
                if getattr(item, name) is not None:
                    item_uri(root, item, name)
        except json.JSONDecodeError as exc:
            errors.append(InputError(f"line {number}: not valid JSON ({exc.msg})", uri=uri))
            continue
        except InputError as exc:
            value = f" ({exc.uri!r})" if exc.uri else ""  # the offending path, e.g. '../x.png'
            errors.append(InputError(f"line {number}: {exc.reason}{value}", uri=uri, item=exc.item, field=exc.field))
            continue
        if item.id in line_of:
            reason = f"line {number}: duplicate id, first used on line {line_of[item.id]}"
            errors.append(InputError(reason, uri=uri, item=item.id, field="id"))
            continue
        line_of[item.id] = number
        items.append(item)
    if not items and not errors:
        errors.append(InputError("the manifest has no items", uri=uri))
    return items, errors


def read_manifest(root: str) -> list[Item]:
    """The items of ``<root>/manifest.jsonl``; the first bad line raises (see the module notes)."""
    items, errors = parse_manifest(root)
    if errors:
        raise errors[0]
    return items


def write_manifest(root: str, items: Iterable[Item]) -> str:
    """Validate ``items`` and write ``<root>/manifest.jsonl`` atomically; return its URI.

    One JSON object per line with sorted keys and None fields left out, so equal items give equal
    bytes.
    """
    items = list(items)
    seen: set[str] = set()
    for item in items:
        item.validate()
        if item.id in seen:
            raise InputError("duplicate id", item=item.id, field="id")
        seen.add(item.id)
    if not items:
        raise InputError("a manifest needs at least one item")
    text = "".join(json.dumps(i.to_json(), sort_keys=True, ensure_ascii=False) + "\n" for i in items)
    uri = storage.join(root, MANIFEST_NAME)
    storage.write_text(uri, text)
    return uri


def item_uri(root: str, item: Item, field: str) -> str:
    """The URI of one path field of ``item`` under the dataset ``root``, refusing escapes.

    ``..`` that climbs out is refused by its spelling; on a local disk the path is also resolved
    (:func:`os.path.realpath`) and refused when it, or anything inside the folder it names, lands
    outside the dataset's own real path through a symlink. Every reader of an item's files gets its
    URI here, so no stage can read, and copy into a run, a file outside the dataset.
    """
    uri = _lexical_uri(root, item, field)
    try:
        _refuse_escaping_links(root, uri, getattr(item, field))
    except InputError as exc:
        raise exc.within(item=item.id, field=field) from None
    return uri


def _lexical_uri(root: str, item: Item, field: str) -> str:
    if field not in PATH_FIELDS:
        raise ValueError(f"{field!r} is not a path field; path fields are {PATH_FIELDS}")
    relative = getattr(item, field)
    if relative is None:
        raise InputError("not set for this item", item=item.id, field=field)
    try:
        return storage.safe_child(root, relative)
    except InputError as exc:
        raise exc.within(item=item.id, field=field) from None


def _refuse_escaping_links(root: str, uri: str, relative: str) -> None:
    """InputError naming the dataset-relative path when ``uri`` (a local path under ``root``), or a
    file or folder inside it, resolves outside ``root``'s real path through a symlink.

    A folder field (PNG frames, eval views) is walked, because its readers open every file in it; a
    symlinked folder inside the dataset is walked once (cycles end). Missing paths are not an error
    here: the readers report them.
    """
    if not storage.is_local(root):
        return  # object stores (s3://, memory://) have no symlinks
    real_root = os.path.realpath(storage.filesystem(root)[1])

    def inside(path: str, shown: str) -> str:
        real = os.path.realpath(path)
        if os.path.commonpath([real_root, real]) != real_root:
            raise InputError(f"resolves outside the dataset root through a symlink (to {real})", uri=shown)
        return real

    top = inside(storage.filesystem(uri)[1], posixpath.normpath(relative))
    pending = [(top, posixpath.normpath(relative))] if os.path.isdir(top) else []
    seen = {top}
    while pending:
        folder, shown = pending.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue  # unreadable: its reader will say so
        for entry in entries:
            name = posixpath.join(shown, entry.name)
            if entry.is_symlink():
                real = inside(entry.path, name)
                if os.path.isdir(real) and real not in seen:
                    seen.add(real)
                    pending.append((real, name))
            elif entry.is_dir(follow_symlinks=False):
                pending.append((entry.path, name))


def check_files(root: str, item: Item) -> None:
    """Check that every file ``item`` names exists and is of the right kind (cheap: no decoding).

    ``image`` a PNG file; ``video`` and ``masks`` an mp4 file or a folder holding PNG files;
    ``object`` a .ply/.glb/.obj file; ``eval`` a folder holding ``eval_<k>`` folders.
    """
    for field in PATH_FIELDS:
        if getattr(item, field) is None:
            continue
        uri = item_uri(root, item, field)
        try:
            _check_kind(uri, field)
        except InputError as exc:
            raise exc.within(item=item.id, field=field) from None


def _check_kind(uri: str, field: str) -> None:
    is_dir = storage.isdir(uri)
    if not is_dir and not storage.exists(uri):
        raise InputError("not found", uri=uri)
    suffix = posixpath.splitext(uri.rstrip("/"))[1].lower()
    if field == "image":
        if is_dir or suffix != ".png":
            raise InputError("expected a .png file", uri=uri)
    elif field == "object":
        if is_dir or suffix not in OBJECT_SUFFIXES:
            raise InputError(f"expected a {'/'.join(OBJECT_SUFFIXES)} file", uri=uri)
    elif field in ("video", "masks"):
        if is_dir:
            if not any(n.lower().endswith(".png") for n in storage.listdir(uri) if not n.startswith(".")):
                raise InputError("folder holds no PNG frames", uri=uri)
        elif suffix != ".mp4":
            raise InputError("expected an .mp4 file or a folder of PNG frames", uri=uri)
    elif field == "eval":
        if not is_dir:
            raise InputError("expected a folder of eval_<k> view folders", uri=uri)
        views = [n for n in storage.listdir(uri) if _EVAL_VIEW.match(n)]
        if not views or not all(storage.isdir(storage.join(uri, v)) for v in views):
            raise InputError("expected a folder of eval_<k> view folders (eval_0, eval_1, ...)", uri=uri)
