"""One video-3D pair to one 4D object: the stages of :mod:`.stages` in a row (``align4d generate``).

:func:`generate_from` starts from any input (a prompt, an image, a video, a 3D object): the pair
stage (:mod:`align4d_core.pairs`) first writes the missing modalities into ``<out>/pair/``, then
:func:`generate` runs on the pair.

The output folder has the layout of DESIGN.md §9 and ends with ``done.json``, the marker of the
whole object (:func:`~align4d_core.io.markers.run_stage`, like every stage). Run again on the
same folder, it skips what is done: finished stages return their recorded results and an
interrupted optimisation resumes from its last checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from align4d_core.config import RunConfig, to_dict
from align4d_core.guidance.bundled import guidance_label
from align4d_core.io import storage
from align4d_core.io.hashing import hash_json
from align4d_core.io.manifest import Item
from align4d_core.io.markers import Outcome, code_hash, read_done, run_stage
from align4d_core.method.optimize import ProgressCallback
from align4d_core.pipeline.devices import resolve_backend
from align4d_core.pipeline.stages import (
    STAGE_CODE,
    evaluate_stage,
    optimize_stage,
    render_stage,
    search_stage,
    stage_records,
)
from align4d_core.runtime import device_of

StageCallback = Callable[[str], None]
"""``stage(name)`` when a stage starts: "pairs", "search", "optimize", "render", "evaluate"."""


def pair_inputs(video: str, object: str, masks: str | None = None, eval: str | None = None) -> Item:
    """The item of a video-3D pair given as files (what ``align4d generate --video --object`` gives)."""
    return Item.of_files(video=video, object=object, masks=masks, eval=eval)


def generate(
    inputs: Item,
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
    dev = device_of(device)
    config = resolve_backend(config, dev)
    notify = stage or (lambda name: None)

    def body() -> Outcome:
        started = time.perf_counter()
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
        timings = {name: record["timings"][name] for name, record in stage_records(out).items()}
        timings.update({f"search_{k}": v for k, v in found["seconds"].items()})
        timings["total"] = time.perf_counter() - started
        extra = {
            "vaod": found["vaod"],
            "maod": found["maod"],
            "maod_rule": found["maod_rule"],
            "maod_fallback": found.get("maod_fallback", False),
            "guidance": guidance_label(config.guidance),
            "method": to_dict(config.method),
            "gaussians": optimized["gaussians"],
            "final_loss": optimized["final_loss"],
            "resumed_from": optimized["resumed_from"],
            "artifacts": rendered,
            "metrics": metrics,
            "config": to_dict(config),
        }
        return Outcome(extra, timings)

    code = code_hash(*sorted({module for modules in STAGE_CODE.values() for module in modules}))
    run_stage(
        out, "generate", config_hash=hash_json(to_dict(config)), inputs=inputs.file_hashes(), code=code, body=body
    )
    return read_done(out)


def generate_from(
    inputs: Item,
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
    into ``<out>/pair/`` (resumable, see :mod:`align4d_core.pairs.stage`) and the 4D object is made
    from it.
    """
    from align4d_core.pairs import pairs_stage

    if not inputs.complete and stage is not None:
        stage("pairs")
    pair = pairs_stage(inputs, storage.join(out, "pair"), config.pairs, device_of(device), fovy_deg=config.fovy_deg)
    return generate(pair, out, config, device=device, progress=progress, stage=stage, eval_size=eval_size)
