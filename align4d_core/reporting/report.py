"""``<run>/report.html``: the run on one self-contained page — tables, figures and every item's videos.

The page is a single file that opens the same from a disk, a download or an object store (one S3
object, no neighbours to resolve): the figures are PNG data URIs and the videos MP4 data URIs
(the sample's are tens of kB, a 512 px run's well under a megabyte each). A video above
``max_embed_bytes`` is linked by its path relative to the run folder instead, and the page says so,
because a page of hundreds of megabytes helps nobody. There is no script, no external stylesheet
and no font to fetch. The page is the jinja2 template ``templates/report.html.j2`` with autoescaping,
so every string that comes from the data (item ids, methods, errors, notes) is HTML-escaped.
"""

from __future__ import annotations

import base64
import functools
import logging

import jinja2
import markupsafe
import pandas as pd

from align4d_core.config import METRICS
from align4d_core.errors import InputError
from align4d_core.io import storage
from align4d_core.pipeline.export import ARTIFACTS
from align4d_core.reporting.tables import Table
from align4d_core.reporting.tables.context import METRIC_LABELS, method_order
from align4d_core.reporting.tables.inputs import item_dir

log = logging.getLogger(__name__)

MAX_EMBED_BYTES = 16 * 2**20
VIDEOS = (
    ("turntable", "turntable: a 360° orbit while the object moves"),
    ("front_vs_input", "input frame | front render"),
)
ITEM_PLOTS = (("plots/search.png", "ODA curves"), ("plots/losses.png", "optimisation loss"))


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _read(uri: str) -> bytes | None:
    try:
        return storage.read_bytes(uri) if storage.exists(uri) else None
    except InputError as exc:
        log.warning("report: cannot read %s", exc)
        return None


def _figure(uri: str, caption: str) -> dict | None:
    data = _read(uri)
    return None if data is None else {"src": _data_uri(data, "image/png"), "caption": caption}


def _video(run_root: str, relative: str, caption: str, max_embed_bytes: int) -> dict | None:
    data = _read(storage.join(run_root, relative))
    if data is None:
        return None
    if len(data) > max_embed_bytes:
        note = f" (linked, {len(data) / 2**20:.1f} MiB: open the report beside the run folder)"
        return {"src": relative, "caption": caption + note}
    return {"src": _data_uri(data, "video/mp4"), "caption": caption}


def _summary_line(row: pd.Series) -> str:
    parts = [f"{METRIC_LABELS[m]} {row[m]:.4g}" for m in METRICS if m in row and pd.notna(row[m])]
    parts += [f"{k.upper()} {row[k]:.3f}" for k in ("vaod", "maod") if pd.notna(row.get(k))]
    parts += [f"guidance {row['guidance']}"] if pd.notna(row.get("guidance")) else []
    return ", ".join(parts)


def _item_run(run_root: str, row: pd.Series, max_embed_bytes: int) -> dict:
    item, method, status = str(row["item"]), str(row["method"]), str(row["status"])
    run = {
        "method": method,
        "status": status,
        "ok": status == "completed",
        "summary": None,
        "videos": [],
        "figures": [],
        "error": str(row.get("error") or "no error recorded"),
        "viewer": None,
    }
    folder = item_dir(run_root, item, method)
    if folder is not None and run["ok"]:
        run["summary"] = _summary_line(row)
        prefix = folder[len(run_root.rstrip("/")) + 1 :]
        videos = [_video(run_root, f"{prefix}/{ARTIFACTS[name]}", caption, max_embed_bytes) for name, caption in VIDEOS]
        run["videos"] = [v for v in videos if v is not None]
        figures = [_figure(storage.join(folder, path), caption) for path, caption in ITEM_PLOTS]
        run["figures"] = [f for f in figures if f is not None]
        if storage.exists(storage.join(folder, ARTIFACTS["viewer"])):  # relative: opens beside the run folder
            run["viewer"] = f"{prefix}/{ARTIFACTS['viewer']}"
    return run


@functools.lru_cache(maxsize=1)
def _template():
    """The page template, with autoescaping: every string from the data is HTML-escaped by jinja2."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("align4d_core.reporting", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )
    return environment.get_template("report.html.j2")


def render_report(
    run_root: str,
    tables: list[Table],
    results: pd.DataFrame,
    plots: dict[str, str],
    run: dict | None = None,
    max_embed_bytes: int = MAX_EMBED_BYTES,
) -> str:
    """The page's HTML: header, every table, the run-level figures, then one section per item."""
    run = run or {}
    run_id = str(run.get("run_id") or run_root.rstrip("/").rsplit("/", 1)[-1])
    meta = [
        ("dataset", run.get("dataset")),
        ("methods", ", ".join(map(str, run.get("methods") or [])) or None),
        ("started", run.get("started_at")),
        ("code version", run.get("code_version")),
    ]
    captions = {
        "search": "ODA: VAOD (MSE) and MAOD (SDS) against the object distance, per item",
        "ao_vs_jo": "AO against JO: mean loss over items",
    }
    figures = [_figure(plots[name], caption) for name, caption in captions.items() if name in plots]
    items = []
    for item in sorted(set(results["item"].astype(str))) if len(results) else []:
        rows = results[results["item"].astype(str) == item]
        runs = [
            _item_run(run_root, row, max_embed_bytes)
            for method in method_order(rows["method"].astype(str))
            for _, row in rows[rows["method"].astype(str) == method].iterrows()
        ]
        ao_vs_jo = (
            _figure(plots[f"ao_vs_jo/{item}"], f"AO against JO on {item}") if f"ao_vs_jo/{item}" in plots else None
        )
        items.append({"name": item, "runs": runs, "ao_vs_jo": ao_vs_jo})
    return _template().render(
        run_id=run_id,
        meta=[(k, str(v)) for k, v in meta if v],
        shared_notes=tables[0].shared_notes if tables else [],  # once on the page, not under each table
        tables=[markupsafe.Markup(t.to_html(shared=False)) for t in tables],  # to_html escapes its cells
        figures=[f for f in figures if f is not None],
        items=items,
    )


def write_report(
    run_root: str,
    tables: list[Table],
    results: pd.DataFrame,
    plots: dict[str, str],
    run: dict | None = None,
    max_embed_bytes: int = MAX_EMBED_BYTES,
) -> str:
    """Write ``<run>/report.html``; returns its URI.

    The local file is named ``*.html`` before it is uploaded, so that an object store records it as
    ``text/html`` (s3fs guesses the content type from the name) and a browser shows the object.
    """
    uri = storage.join(run_root, "report.html")
    page = render_report(run_root, tables, results, plots, run, max_embed_bytes)
    with storage.atomic_local_path(uri, suffix=".html") as tmp:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(page)
    return uri
