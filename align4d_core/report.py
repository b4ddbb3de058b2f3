"""``<run>/report.html``: the run on one self-contained page — tables, figures and every item's videos.

The page is a single file that opens the same from a disk, a download or an object store (one S3
object, no neighbours to resolve): the figures are PNG data URIs and the videos MP4 data URIs
(the sample's are tens of kB, a 512 px run's well under a megabyte each). A video above
``max_embed_bytes`` is linked by its path relative to the run folder instead, and the page says so,
because a page of hundreds of megabytes helps nobody. There is no script, no external stylesheet
and no font to fetch; every string that comes from the data (item ids, methods, errors, notes) is
HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import logging

import pandas as pd

from . import storage
from .errors import InputError
from .export import ARTIFACTS
from .rows import METRICS
from .tables import Table
from .tables.context import METRIC_LABELS, method_order
from .tables.inputs import item_dir

log = logging.getLogger(__name__)

MAX_EMBED_BYTES = 16 * 2**20
VIDEOS = (("turntable", "turntable: a 360° orbit while the object moves"),
          ("front_vs_input", "input frame | front render"))  # fmt: skip
ITEM_PLOTS = (("plots/search.png", "ODA curves"), ("plots/losses.png", "optimisation loss"))

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:1.5rem auto;max-width:1200px;
color:#1d1d1f;padding:0 1rem;line-height:1.4}
h1{font-size:1.6rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:1rem 0 .3rem;font-size:.85rem}
caption{text-align:left;font-weight:600;padding:.3rem 0}
th,td{border-bottom:1px solid #e3e3e3;padding:.2rem .55rem}th{background:#f4f4f6;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums}td.missing{color:#999;text-align:center}
ul.notes{font-size:.8rem;color:#555;margin-top:.2rem}
figure{display:inline-block;margin:.4rem .8rem .8rem 0;vertical-align:top}
figcaption{font-size:.8rem;color:#555}img{max-width:100%}video{max-width:480px;background:#fff}
.run img{max-width:540px}#plots img{max-width:1100px}
.run{border:1px solid #e3e3e3;border-radius:6px;padding:.5rem .9rem;margin:.7rem 0}
.failed{border-color:#e5a0a0;background:#fff7f7}.error{color:#a00;white-space:pre-wrap}
.meta{color:#555;font-size:.9rem}
"""


def _data_uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _read(uri: str) -> bytes | None:
    try:
        return storage.read_bytes(uri) if storage.exists(uri) else None
    except InputError as exc:
        log.warning("report: cannot read %s", exc)
        return None


def _figure(uri: str, caption: str) -> str:
    data = _read(uri)
    if data is None:
        return ""
    return (f'<figure><img src="{_data_uri(data, "image/png")}" alt="{html.escape(caption)}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")  # fmt: skip


def _video(run_root: str, relative: str, caption: str, max_embed_bytes: int) -> str:
    data = _read(storage.join(run_root, relative))
    if data is None:
        return ""
    if len(data) > max_embed_bytes:
        src, note = relative, f" (linked, {len(data) / 2**20:.1f} MiB: open the report beside the run folder)"
    else:
        src, note = _data_uri(data, "video/mp4"), ""
    return (f'<figure><video controls muted loop playsinline preload="auto" src="{html.escape(src)}"></video>'
            f"<figcaption>{html.escape(caption + note)}</figcaption></figure>")  # fmt: skip


def _summary_line(row: pd.Series) -> str:
    parts = [f"{METRIC_LABELS[m]} {row[m]:.4g}" for m in METRICS if m in row and pd.notna(row[m])]
    parts += [f"{k.upper()} {row[k]:.3f}" for k in ("vaod", "maod") if pd.notna(row.get(k))]
    parts += [f"guidance {row['guidance']}"] if pd.notna(row.get("guidance")) else []
    return html.escape(", ".join(parts))


def _item_run(run_root: str, row: pd.Series, max_embed_bytes: int) -> str:
    item, method, status = str(row["item"]), str(row["method"]), str(row["status"])
    ok = status == "completed"
    parts = [f'<div class="run{"" if ok else " failed"}" data-method="{html.escape(method)}">',
             f"<h4>{html.escape(method)}: {html.escape(status)}</h4>"]  # fmt: skip
    if not ok:
        parts.append(f'<p class="error">{html.escape(str(row.get("error") or "no error recorded"))}</p>')
    folder = item_dir(run_root, item, method)
    if folder is not None and ok:
        parts.append(f'<p class="meta">{_summary_line(row)}</p>')
        prefix = folder[len(run_root.rstrip("/")) + 1 :]
        parts += [_video(run_root, f"{prefix}/{ARTIFACTS[name]}", caption, max_embed_bytes) for name, caption in VIDEOS]
        parts += [_figure(storage.join(folder, path), caption) for path, caption in ITEM_PLOTS]
    parts.append("</div>")
    return "".join(parts)


def render_report(run_root: str, tables: list[Table], results: pd.DataFrame, plots: dict[str, str],
                  run: dict | None = None, max_embed_bytes: int = MAX_EMBED_BYTES) -> str:  # fmt: skip
    """The page's HTML: header, every table, the run-level figures, then one section per item."""
    run = run or {}
    run_id = str(run.get("run_id") or run_root.rstrip("/").rsplit("/", 1)[-1])
    meta = [("dataset", run.get("dataset")), ("methods", ", ".join(map(str, run.get("methods") or [])) or None),
            ("started", run.get("started_at")), ("code version", run.get("code_version"))]  # fmt: skip
    meta_html = " · ".join(f"{k}: {html.escape(str(v))}" for k, v in meta if v)
    body = [f"<h1>align4d run {html.escape(run_id)}</h1>", f'<p class="meta">{meta_html}</p>',
            '<nav><a href="#tables">tables</a> · <a href="#plots">figures</a> · <a href="#items">items</a></nav>',
            '<section id="tables"><h2>Tables</h2>', *(t.to_html() for t in tables), "</section>",
            '<section id="plots"><h2>Figures</h2>']  # fmt: skip
    captions = {"search": "ODA: VAOD (MSE) and MAOD (SDS) against the object distance, per item",
                "ao_vs_jo": "AO against JO: mean loss over items"}  # fmt: skip
    figures = [_figure(plots[name], caption) for name, caption in captions.items() if name in plots]
    body += figures or ['<p class="meta">No run-level figures: no item swept the distances, and AO and JO did not '
                        "both run.</p>"]  # fmt: skip
    body.append("</section>")
    body.append('<section id="items"><h2>Items</h2>')
    for index, item in enumerate(sorted(set(results["item"].astype(str))) if len(results) else []):
        body.append(f'<article id="item-{index}" data-item="{html.escape(item)}"><h3>{html.escape(item)}</h3>')
        rows = results[results["item"].astype(str) == item]
        for method in method_order(rows["method"].astype(str)):
            for _, row in rows[rows["method"].astype(str) == method].iterrows():
                body.append(_item_run(run_root, row, max_embed_bytes))
        if f"ao_vs_jo/{item}" in plots:
            body.append(_figure(plots[f"ao_vs_jo/{item}"], f"AO against JO on {item}"))
        body.append("</article>")
    body.append("</section>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="data:,">'  # no favicon request: beside an S3 object there is none
        f"<title>align4d run {html.escape(run_id)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def write_report(run_root: str, tables: list[Table], results: pd.DataFrame, plots: dict[str, str],
                 run: dict | None = None, max_embed_bytes: int = MAX_EMBED_BYTES) -> str:  # fmt: skip
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
