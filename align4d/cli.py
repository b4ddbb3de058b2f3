"""The ``align4d`` command line (DESIGN.md §9).

Commands:

* ``align4d sample DIR [--seed N] [--frames T] [--size PX] [--gaussians N] [--items a,b]``:
  write the bundled synthetic X4D sample to DIR (any URI: a path, ``file://``, ``s3://``, ...).
* ``align4d validate DIR``: read every item of the dataset at DIR and report its problems.
* ``align4d search --video V --object O [--masks M] [--plot PNG]``: VAOD, MAOD and curves as JSON.
* ``align4d generate --text T | --image I | --video V | --object O --out URI [--preset P] [--config FILE]``:
  a 4D object; the modalities an input lacks are generated first (pair generation).
* ``align4d import consistent4d SRC DEST``: a Consistent4D folder as an X4D dataset of video items.
* ``align4d evaluate --pred DIR [--pred DIR ...] --gt DIR [--protocol consistent4d|clean] [--json OUT]``: the metrics of DESIGN.md §7
  for views in the Consistent4D layout (``OBJ/eval_<k>/<frame>.png``, or a folder of OBJ folders).
* ``align4d run [--dataset URI] [--out URI] [--config FILE] [--limit N] [--methods a,b]``: the
  dataset-wide benchmark (flow ``align4d``) in this process, with Prefect's ephemeral API.
* ``align4d tables RUN_URI``: rebuild a run's tables (CSV, Markdown, LaTeX), figures and
  ``report.html`` from its row files.
* ``align4d view PATH [--no-open] [--max-gaussians N] [--rewrite]``: the interactive 4D viewer
  (``viewer.html``) of a generated object folder, or of every item of a run, and open it.

Exit codes: 0 success; 1 ``validate`` found invalid items (each problem printed as
``item 'x' field 'y' (uri): reason``); 2 bad input (a missing folder, an unusable location, a bad
option value), reported as one line, without a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from align4d_core.config import SampleConfig
from align4d_core.errors import InputError
from align4d_core.runtime import tune_allocator

if TYPE_CHECKING:
    from align4d_core.pipeline.runs import RunProgress

__all__ = ["app", "main"]

app = typer.Typer(
    name="align4d",
    help="Align4D: X-to-4D generation with video-3D pairs aligned into animated 3D Gaussians.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable)


def _clean_errors(fn: F) -> F:
    """Bad input ends the command with one red line and exit code 2, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except InputError as exc:
            err.print(f"[bold red]error:[/] {escape(str(exc))}")
            raise typer.Exit(code=2) from None
        except OSError as exc:  # e.g. permission denied, disk full, read-only filesystem
            err.print(f"[bold red]error:[/] {escape(str(exc))}")
            raise typer.Exit(code=2) from None

    return wrapper  # type: ignore[return-value]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


@app.command()
@_clean_errors
def sample(
    root: Annotated[
        str, typer.Argument(metavar="DIR", help="Where to write the sample: a path or URI (file://, s3://).")
    ],
    seed: Annotated[int, typer.Option(help="Seed of every random draw.")] = SampleConfig.seed,
    frames: Annotated[int, typer.Option(help="Frames per video.")] = SampleConfig.frames,
    size: Annotated[int, typer.Option(help="Image size in pixels (square).")] = SampleConfig.size,
    gaussians: Annotated[
        int, typer.Option(help="Gaussians per procedural object (mesh objects are sampled as a run loads them).")
    ] = SampleConfig.gaussians,
    items: Annotated[str, typer.Option(help="Comma-separated item ids (default: all).")] = "",
) -> None:
    """Write the bundled synthetic X4D sample: animated objects at known distances, with true views."""
    from align4d_core.sample import write_sample

    config = replace(
        SampleConfig(),
        seed=seed,
        frames=frames,
        size=size,
        gaussians=gaussians,
        items=tuple(i.strip() for i in items.split(",") if i.strip()),
    )
    with _progress() as progress:
        report = _reporter(progress, "sample")
        written = write_sample(
            root, config, progress=lambda item, step, done, total: report(f"{item}: {step}", done, total)
        )
    out.print(f"wrote {len(written)} items to {escape(root)}")


@app.command()
@_clean_errors
def validate(
    root: Annotated[str, typer.Argument(metavar="DIR", help="The dataset: a folder or URI with manifest.jsonl")],
) -> None:
    """Read every item of a dataset and report its problems (exit code 1 if any item is invalid)."""
    from align4d_core.io.dataset import validate_dataset

    with _progress() as progress:
        task = None

        def report(item_id: str, done: int, total: int) -> None:
            nonlocal task
            if task is None:
                task = progress.add_task("validate", total=total)
            progress.update(task, completed=done, description=f"validated {item_id}")

        result = validate_dataset(root, progress=report)

    table = Table(title=f"dataset {escape(root)}")
    for column in ("item", "status", "frames", "size", "gaussians", "problems"):
        table.add_column(column)
    if result.errors:
        problems = "\n".join(escape(e.reason) for e in result.errors)
        table.add_row("(manifest)", "[red]invalid[/]", "", "", "", problems)
    for item in result.items:
        status = "[green]ok[/]" if item.ok else "[red]invalid[/]"
        size = f"{item.size[0]}x{item.size[1]}" if item.size else ""
        problems = "\n".join(f"{e.field}: {escape(e.reason)}" for e in item.errors)
        counts = (str(item.frames or ""), size, str(item.gaussians or ""))
        table.add_row(escape(item.id), status, *counts, problems)
    out.print(table)
    bad = sum(not item.ok for item in result.items)
    if result.ok:
        out.print(f"[green]all {len(result.items)} items are valid[/]")
        return
    for error in result.all_errors:
        out.print(escape(str(error)), highlight=False)
    summary = f"{bad} of {len(result.items)} items are invalid"
    if result.errors:
        summary += f"; the manifest has {len(result.errors)} problem(s)"
    out.print(f"[red]{summary}[/]")
    raise typer.Exit(code=1)


def _run_config(config_file: str | None, preset: str | None, device: str | None, **fixed):
    """Defaults, device profile, preset, then the config file (JSON or YAML), which wins."""
    from align4d_core.io.settings import run_config_from
    from align4d_core.runtime import device_of

    return run_config_from(config_file, device_of(device).type, preset, **fixed)


def _reporter(progress: Progress, label: str) -> Callable[[str, int, int], None]:
    """``report(description, done, total)`` for a long job: a bar added on the first report, so that
    an early error shows no empty bar."""
    task = None

    def report(description: str, done: int, total: int) -> None:
        nonlocal task
        if task is None:
            task = progress.add_task(label, total=total)
        progress.update(task, completed=done, description=description)

    return report


ConfigOption = Annotated[
    str | None, typer.Option("--config", help="JSON or YAML file of settings (see align4d_core/config/schema.py).")
]
PresetOption = Annotated[str | None, typer.Option(help="align4d (default), no-oda, no-mgja or no-ao.")]
DeviceOption = Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda when available).")]


@app.command()
@_clean_errors
def search(
    video: Annotated[str, typer.Option(help="The video: an mp4 or a folder of PNG frames.")],
    object: Annotated[str, typer.Option("--object", help="The 3D input: a 3DGS .ply or a mesh.")],
    masks: Annotated[str | None, typer.Option(help="Masks (PNG folder or mp4); default: the video's alpha.")] = None,
    plot: Annotated[str | None, typer.Option(help="Also write the curves as a PNG here.")] = None,
    config_file: ConfigOption = None,
    device: DeviceOption = None,
) -> None:
    """Object Distance Alignment: print VAOD, MAOD and their curves as JSON."""
    import json

    from align4d_core.guidance.bundled import guidance_label
    from align4d_core.io.manifest import Item
    from align4d_core.pipeline.devices import resolve_backend
    from align4d_core.pipeline.pair import load_pair
    from align4d_core.pipeline.plots import plot_search
    from align4d_core.pipeline.stages import find_distances
    from align4d_core.runtime import device_of

    dev = device_of(device)
    config = resolve_backend(_run_config(config_file, None, device), dev)
    result = find_distances(load_pair(Item.of_files(video=video, object=object, masks=masks), config, dev), config, dev)
    if plot is not None:
        plot_search(result, plot)
    out.print_json(json.dumps({**result.to_json(), "guidance": guidance_label(config.guidance)}))


@app.command()
@_clean_errors
def generate(
    out_uri: Annotated[str, typer.Option("--out", help="Output folder (path or URI) for the 4D object.")],
    text: Annotated[
        str | None,
        typer.Option(
            "--text", help="A prompt: SDXL makes the image, then the pair (the prompt of the other inputs otherwise)."
        ),
    ] = None,
    image: Annotated[
        str | None,
        typer.Option(help="An image (PNG; alpha used as the mask): SVD makes the video, Shap-E the 3D object."),
    ] = None,
    video: Annotated[str | None, typer.Option(help="The video: an mp4 or a folder of PNG frames.")] = None,
    object: Annotated[str | None, typer.Option("--object", help="The 3D input: a 3DGS .ply or a mesh.")] = None,
    masks: Annotated[str | None, typer.Option(help="Masks (PNG folder or mp4); default: the video's alpha.")] = None,
    eval_gt: Annotated[
        str | None, typer.Option("--eval", help="Ground-truth views (eval_<k>/<t>.png) to score.")
    ] = None,
    eval_size: Annotated[
        int | None, typer.Option(help="Size of the evaluation views (default: the ground truth's, else 512).")
    ] = None,
    config_file: ConfigOption = None,
    preset: PresetOption = None,
    device: DeviceOption = None,
) -> None:
    """Make a 4D object from text, an image, a video, a 3D object or a video-3D pair.

    Missing modalities are generated first, into OUT/pair/ (README, "Pair generation"); an
    unfinished OUT resumes."""
    from align4d_core.io.manifest import Item
    from align4d_core.pipeline.generate import generate_from as run

    if all(value is None for value in (video, object, image, text)):
        raise InputError("give an input: --text, --image, --video and/or --object")
    inputs = Item.of_files(prompt=text, image=image, video=video, object=object, masks=masks, eval=eval_gt)
    config = _run_config(config_file, preset, device)
    with _progress() as progress:
        task = progress.add_task("loading", total=None)

        def on_stage(name: str) -> None:
            progress.update(task, description=name, completed=0, total=None)

        def on_step(step: int, steps: int, record: dict) -> None:
            losses = " ".join(f"{k} {v:.3g}" for k, v in record.items() if k in ("loss", "ksva_rgb", "mot", "geo"))
            progress.update(task, description=f"optimize [{record['phase']}] {losses}", completed=step, total=steps)

        done = run(inputs, out_uri, config, device=device, progress=on_step, stage=on_stage, eval_size=eval_size)
    extra = done.get("extra", {})
    out.print(
        f"VAOD {extra.get('vaod', float('nan')):.3f}, MAOD {extra.get('maod', float('nan')):.3f} "
        f"({extra.get('guidance')} guidance); 4D object in {escape(out_uri)}"
    )
    if not inputs.complete:
        out.print(f"generated pair (video, 3D object, masks) in {escape(out_uri.rstrip('/'))}/pair")
    metrics = extra.get("metrics") or {}
    if "psnr" in metrics:
        out.print(f"eval views: PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.4f}")
    artifacts = extra.get("artifacts") or {}
    if artifacts.get("viewer"):
        out.print(f"viewer: {escape(artifacts['viewer'])} (align4d view {escape(out_uri)} opens it)")
    if artifacts.get("animated_mesh"):
        out.print(f"animated mesh: {escape(artifacts['animated_mesh'])}")
    elif artifacts.get("animated_mesh_note"):
        out.print(f"animated mesh: none ({escape(artifacts['animated_mesh_note'])})")


import_app = typer.Typer(name="import", help="Turn a dataset from the field into an X4D dataset.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("consistent4d")
@_clean_errors
def import_consistent4d(
    src: Annotated[
        str,
        typer.Argument(
            metavar="SRC", help="Consistent4D folder: <name>/<t>.png videos (RGBA) and eval_gt/<name>/eval_<k>/<t>.png."
        ),
    ],
    dest: Annotated[str, typer.Argument(metavar="DEST", help="Where to write the X4D dataset (path or URI).")],
    videos: Annotated[
        str | None, typer.Option(help="Subfolder of SRC holding the input videos (default: SRC).")
    ] = None,
) -> None:
    """Copy a Consistent4D folder into an X4D dataset of video items with ground-truth views."""
    from align4d_core.io.consistent4d import import_consistent4d as run_import

    with _progress() as progress:
        report = _reporter(progress, "import")
        items = run_import(
            src, dest, videos=videos, progress=lambda name, done, total: report(f"copied {name}", done, total)
        )
    with_eval = sum(item.eval is not None for item in items)
    out.print(f"wrote {len(items)} video items ({with_eval} with ground-truth views) to {escape(dest)}")


@app.command()
@_clean_errors
def evaluate(
    pred: Annotated[
        list[str],
        typer.Option(
            help="Predicted views: OBJ/eval_<k>/<frame>.png, or a folder of such OBJ folders. Repeat it to "
            "score several methods against one ground truth (read and featurised once)."
        ),
    ],
    gt: Annotated[str, typer.Option(help="Ground-truth views in the same layout (Consistent4D).")],
    config_file: ConfigOption = None,
    json_out: Annotated[str | None, typer.Option("--json", help="Also write every score as JSON here.")] = None,
    device: DeviceOption = None,
    protocol: Annotated[
        str | None,
        typer.Option(help="consistent4d (default: Consistent4D's scripts' arithmetic) or clean (data range 1)."),
    ] = None,
) -> None:
    """Score predicted views against ground truth: PSNR, SSIM, LPIPS, CLIP, CLIP-F, FVD (Consistent4D)."""
    from align4d_core.io import storage
    from align4d_core.metrics.protocol import PROTOCOLS, evaluate_methods

    metrics = _run_config(config_file, None, "cpu", profile="paper").metrics  # the protocol's 512 px anywhere
    if device is not None:
        metrics = replace(metrics, device=device)
    if protocol is not None:
        if protocol not in PROTOCOLS:
            raise InputError(f"unknown protocol {protocol!r}; expected one of {', '.join(PROTOCOLS)}")
        metrics = replace(metrics, protocol=protocol)
    if len(set(pred)) != len(pred):
        raise InputError("the same --pred folder is given twice")
    results = evaluate_methods({p: p for p in pred}, gt, metrics)
    for path, result in results.items():
        prefix = f"{escape(path)}: " if len(pred) > 1 else ""
        for name, scores in result["objects"].items():
            rows = [(view, values) for view, values in scores["views"].items()] + [("mean", scores)]
            out.print(_scores_table(f"{prefix}object {escape(name)}", "view", rows))
        if len(result["objects"]) > 1:
            rows = list(result["objects"].items()) + [(f"mean of {len(result['objects'])}", result["mean"])]
            out.print(_scores_table(f"{prefix}objects", "object", rows))
        size = f"{result['size']} px" if result["size"] else "the files' own size"
        pooled = result["fvd_pooled"]
        out.print(
            f"{prefix}protocol {result['protocol']} at {size}, {result['frames']} frames per video"
            + (f"; FVD pooled over every view and object: {pooled:.2f}" if pooled is not None else "")
        )
        for metric, reason in result["missing"].items():
            out.print(f"[yellow]{metric} missing:[/] {escape(reason)}")
    if json_out is not None:
        storage.write_json(json_out, results[pred[0]] if len(pred) == 1 else results)
        out.print(f"scores written to {escape(json_out)}")


def _scores_table(title: str, first: str, rows: list[tuple[str, dict]]) -> Table:
    """One row per view or object; a missing metric is an em dash, never a number."""
    from align4d_core.config import METRICS

    digits = {"psnr": 2, "fvd": 2}
    table = Table(title=title)
    for column in (first, *METRICS):
        table.add_column(column.upper().replace("_", "-") if column in METRICS else column, justify="right")
    for label, values in rows:
        cells = [("—" if values.get(m) is None else f"{values[m]:.{digits.get(m, 4)}f}") for m in METRICS]
        table.add_row(escape(label), *cells)
    return table


@app.command()
@_clean_errors
def run(
    dataset: Annotated[
        str | None,
        typer.Option(
            help="Dataset folder/URI with manifest.jsonl (default: the bundled sample, written to OUT/sample)."
        ),
    ] = None,
    out_root: Annotated[str, typer.Option("--out", help="Where runs go: OUT/<run_id>/ (a path or URI).")] = "runs",
    config_file: ConfigOption = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N items.")] = None,
    methods: Annotated[str, typer.Option(help="Comma-separated presets: align4d, no-oda, no-mgja, no-ao.")] = "align4d",
    items: Annotated[str, typer.Option(help="Comma-separated item ids (default: all).")] = "",
) -> None:
    """The main job: flow `align4d` over a dataset, here, with Prefect's ephemeral API (no server)."""
    import os
    import threading

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # the ephemeral API server gets 20 s to start by default; a loaded 2-core machine can need more
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    from align4d_core.config import PRESETS
    from align4d_core.io import storage
    from align4d_core.pipeline.runs import RunSpec, ensure_dataset, select_items, watch_progress

    chosen = tuple(m.strip() for m in methods.split(",") if m.strip())
    unknown = [m for m in chosen if m not in PRESETS]
    if unknown:
        raise InputError(f"unknown method {', '.join(unknown)}; expected {', '.join(PRESETS)}", field="methods")
    from align4d_core.io.settings import read_settings

    settings = read_settings(config_file)
    _run_config(config_file, None, None)  # refuse bad settings before any work
    wanted = tuple(i.strip() for i in items.split(",") if i.strip())
    dataset = ensure_dataset(dataset, out_root)
    spec = RunSpec(dataset, out_root, settings, chosen, wanted, limit)
    total = len(select_items(dataset, wanted, limit)[0]) * len(chosen)
    out.print(f"run {spec.run_id}: {total} item runs of {escape(dataset)} into {escape(spec.root)}")

    from flows.align4d import align4d

    finished = threading.Event()
    with _progress() as progress, watch_progress(spec.root) as ended:
        task = progress.add_task("starting Prefect", total=total)

        def count() -> None:
            progress.update(task, completed=poll_progress(ended), description="item runs")

        def watch() -> None:
            while not finished.wait(2.0):
                count()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            state = align4d(
                dataset=dataset,
                out=out_root,
                settings=settings,
                methods=list(chosen),
                items=list(wanted) or None,
                limit=limit,
                return_state=True,
            )
        finally:
            finished.set()
            watcher.join()
            count()
    summary = storage.join(spec.root, "tables", "summary.md")
    if storage.exists(summary):
        out.print(storage.read_text(summary), markup=False, highlight=False)
    out.print(
        f"tables: {escape(storage.join(spec.root, 'tables'))}; report: {escape(storage.join(spec.root, 'report.html'))}"
    )
    if not state.is_completed():
        out.print(f"[red]{escape(state.message or 'the run failed')}[/]")
        raise typer.Exit(code=1)


def poll_progress(progress: RunProgress) -> int:
    """How many item runs of the run ``progress`` follows have ended: one poll of ``align4d run``'s display.

    It reads the counter the flow updates in this process and makes no storage request: listing the
    run folder instead cost one request or two per item folder and poll on S3 (issue 15; see
    :class:`~align4d_core.pipeline.runs.RunProgress` for why the counter is exact here).
    """
    return progress.count


@app.command()
@_clean_errors
def tables(
    run_uri: Annotated[str, typer.Argument(metavar="RUN_URI", help="A run folder: <out>/<run_id> (a path or URI).")],
) -> None:
    """Rebuild a run's tables, figures and report.html from its row files (items/*/*/row.json)."""
    from align4d_core.io import storage
    from align4d_core.reporting.publish import publish_run

    if not (storage.exists(storage.join(run_uri, "run.json")) or storage.isdir(storage.join(run_uri, "items"))):
        raise InputError("not a run folder: it has neither run.json nor items/", uri=run_uri)
    published = publish_run(run_uri)
    out.print(published.summary_markdown, markup=False, highlight=False)
    out.print(
        f"tables: {escape(storage.join(run_uri, 'tables'))} ({len(published.tables)} tables as CSV, Markdown, "
        f"LaTeX); report: {escape(published.uris['report'])}"
    )


@app.command()
@_clean_errors
def view(
    path: Annotated[str, typer.Argument(metavar="PATH", help="A 4D object folder (align4d generate) or a run folder.")],
    open_page: Annotated[bool, typer.Option("--open/--no-open", help="Open the page in the browser.")] = True,
    max_gaussians: Annotated[
        int, typer.Option(min=1, help="Gaussians a page holds at most; larger objects show their most prominent.")
    ] = 200_000,
    rewrite: Annotated[bool, typer.Option(help="Rewrite pages a run's items already have.")] = False,
) -> None:
    """Write viewer.html (orbit, zoom, pan, time slider, the input video beside it) and open it."""
    import webbrowser

    from align4d_core.io import storage
    from align4d_core.pipeline.viewer import VIEWER, check_object_folder, write_viewer_of

    is_run = storage.exists(storage.join(path, "run.json")) or storage.isdir(storage.join(path, "items"))
    if not is_run:
        check_object_folder(path)
        pages = [write_viewer_of(path, max_gaussians=max_gaussians)]
    else:
        pages = []
        items = storage.join(path, "items")
        folders = [
            storage.join(items, item, method)
            for item in (storage.listdir(items) if storage.isdir(items) else [])
            for method in storage.listdir(storage.join(items, item))
            if storage.exists(storage.join(items, item, method, "object", "deformation.safetensors"))
        ]
        if not folders:
            raise InputError("the run has no finished 4D object yet (items/<id>/<method>/object/)", uri=path)
        for folder in folders:
            if rewrite or not storage.exists(storage.join(folder, VIEWER)):
                pages.append(write_viewer_of(folder, max_gaussians=max_gaussians))
        from align4d_core.reporting.publish import publish_run

        report = publish_run(path).uris["report"]  # links every item's page
    for page in pages:
        shown = (
            f"{page['gaussians']:,} of {page['total']:,}" if page["gaussians"] < page["total"] else f"{page['total']:,}"
        )
        out.print(f"{escape(page['uri'])}: {shown} Gaussians, {page['frames']} frames, {page['bytes'] / 2**20:.1f} MiB")
    first = report if is_run else pages[0]["uri"]
    if is_run:
        out.print(f"report with a viewer link per item: {escape(report)}")
    if open_page and "://" not in first.replace("file://", ""):
        local = first.removeprefix("file://")
        import pathlib

        webbrowser.open(pathlib.Path(local).resolve().as_uri())


prior_app = typer.Typer(
    help="The learned multiview prior: training data and training (docs/method.md).", no_args_is_help=True
)
app.add_typer(prior_app, name="prior")


@prior_app.command("data")
@_clean_errors
def prior_data(
    out_uri: Annotated[str, typer.Option("--out", help="Where to write the shards and manifest.json (path or URI).")],
    config_file: Annotated[
        str | None, typer.Option("--config", help="JSON or YAML of PriorDataConfig settings.")
    ] = None,
    split: Annotated[str, typer.Option(help="train, or heldout (other objects, for benchmarks/prior.py).")] = "train",
    objects: Annotated[int | None, typer.Option(help="Number of objects (default: the config's).")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every draw (default: the config's).")] = None,
) -> None:
    """Render procedural objects as (condition view, target view, relative pose) pairs."""
    from align4d_core.config import PriorDataConfig, from_dict
    from align4d_core.io.settings import read_settings
    from align4d_core.prior.data import write_prior_data

    values = read_settings(config_file)
    values.update({k: v for k, v in (("objects", objects), ("seed", seed)) if v is not None})
    try:
        config = from_dict(PriorDataConfig, values)
    except ValueError as exc:
        raise InputError(str(exc), uri=config_file or "--objects/--seed") from None
    with _progress() as progress:
        report = _reporter(progress, "render")
        manifest = write_prior_data(
            out_uri, config, split, progress=lambda done, total: report(f"objects {done}/{total}", done, total)
        )
    out.print(
        f"wrote {manifest['pairs']} pairs of {config.objects} objects ({split}, d_prior {config.d_prior}) "
        f"to {escape(out_uri)}"
    )


@prior_app.command("train")
@_clean_errors
def prior_train(
    data: Annotated[str, typer.Option(help="A folder written by `align4d prior data` (path or URI).")],
    out_uri: Annotated[str, typer.Option("--out", help="The model folder to write (path or URI); resumes if there.")],
    config_file: Annotated[
        str | None, typer.Option("--config", help="JSON or YAML of PriorTrainConfig settings.")
    ] = None,
) -> None:
    """Train the prior (VAE, then UNet + CLIP + projection) into a Zero123 folder; resumes after a kill."""
    from align4d_core.config import PriorTrainConfig, from_dict
    from align4d_core.io.settings import read_settings
    from align4d_core.prior.train import train_prior

    try:
        config = from_dict(PriorTrainConfig, read_settings(config_file))
    except ValueError as exc:
        raise InputError(str(exc), uri=config_file or "--config") from None
    with _progress() as progress:
        task = progress.add_task("loading the data", total=config.vae_steps + config.unet_steps)

        def on_step(phase: str, step: int, total: int, loss: float) -> None:
            progress.update(task, completed=step, description=f"{phase} loss {loss:.4g}")

        record = train_prior(data, out_uri, config, progress=on_step)
    out.print(
        f"prior written to {escape(out_uri)} in {record['seconds'] / 60:.1f} min "
        f"(final losses: vae {record['final_loss']['vae']}, denoiser {record['final_loss']['denoiser']})"
    )


def main() -> None:
    """Console-script entry point (``align4d``)."""
    tune_allocator()
    app(prog_name="align4d")


if __name__ == "__main__":
    main()
