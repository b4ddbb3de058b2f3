"""One video-3D pair to one 4D object: the stages of :mod:`.stages` in a row (``align4d generate``).

:func:`generate_from` starts from any input (a prompt, an image, a video, a 3D object): the pair
stage (:mod:`.pairs`) first writes the missing modalities into ``<out>/pair/``, then
:func:`generate` runs on the pair.

The output folder has the layout of DESIGN.md §9 and ends with ``done.json``. Run again on the same
folder, it skips what is done: finished stages return their recorded results and an interrupted
optimisation resumes from its last checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import storage
from .config import RunConfig, to_dict
from .done import is_done, measure_peak_memory, read_done, write_done
from .hashing import hash_json
from .optimize import ProgressCallback
from .stages import (
    PairURIs,
    device_of,
    evaluate_stage,
    optimize_stage,
    render_stage,
    resolve_backend,
    search_stage,
    stage_records,
)

if TYPE_CHECKING:
    from .pairs import PairInputs

StageCallback = Callable[[str], None]
"""``stage(name)`` when a stage starts: "pairs", "search", "optimize", "render", "evaluate"."""

Inputs = PairURIs  # the name the CLI and the README use


def generate(
    inputs: PairURIs,
    out: str,
    config: RunConfig,
    *,
    device: str | None = None,
    progress: ProgressCallback | None = None,
    stage: StageCallback | None = None,
    eval_size: int | None = None,
) -> dict:
    """Search, optimise, render (and evaluate, given ground truth) one pair into ``out``.

    Returns the contents of ``done.json``: timings per stage, peak memory, the distances, the
    guidance backend that ran and the resolved config.
    """
    started = time.perf_counter()
    dev = device_of(device)
    config = resolve_backend(config, dev)
    config_hash, hashes = hash_json(to_dict(config)), inputs.hashes()
    if is_done(out, config_hash=config_hash, input_hashes=hashes):
        return read_done(out)
    notify = stage or (lambda name: None)

    notify("search")
    found = search_stage(inputs, out, config, dev)
    notify("optimize")
    optimized = optimize_stage(inputs, out, config, dev, found, progress)
    notify("render")
    rendered = render_stage(inputs, out, config, found, eval_size)
    metrics = None
    if inputs.eval is not None:
        notify("evaluate")
        metrics = evaluate_stage(inputs, out, config)

    records = stage_records(out)
    timings = {name: record["timings"][name] for name, record in records.items()}
    timings.update({f"search_{k}": v for k, v in found["seconds"].items()})
    timings["total"] = time.perf_counter() - started
    extra = {"vaod": found["vaod"], "maod": found["maod"], "maod_rule": found["maod_rule"],
             "guidance": config.guidance.backend, "method": to_dict(config.method),
             "gaussians": optimized["gaussians"], "final_loss": optimized["final_loss"],
             "resumed_from": optimized["resumed_from"], "artifacts": rendered, "metrics": metrics,
             "config": to_dict(config)}  # fmt: skip
    write_done(out, config_hash=config_hash, input_hashes=hashes, timings=timings,
               peak_memory_bytes=measure_peak_memory(), extra=extra)  # fmt: skip
    return read_done(out)


def generate_from(
    inputs: "PairInputs",
    out: str,
    config: RunConfig,
    *,
    device: str | None = None,
    progress: ProgressCallback | None = None,
    stage: StageCallback | None = None,
    eval_size: int | None = None,
) -> dict:
    """Pairs, then search, optimise, render (and evaluate): ``align4d generate`` for any input.

    Inputs that are already a video-3D pair are used as they are; otherwise the pair is generated
    into ``<out>/pair/`` (resumable, see :mod:`.pairs.stage`) and the 4D object is made from it.
    """
    from .pairs import pairs_stage

    if not inputs.complete and stage is not None:
        stage("pairs")
    pair = pairs_stage(inputs, storage.join(out, "pair"), config.pairs, device_of(device), fovy_deg=config.fovy_deg)
    return generate(pair, out, config, device=device, progress=progress, stage=stage, eval_size=eval_size)
