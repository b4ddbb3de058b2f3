"""Flow ``align4d``: the dataset-wide benchmark (deployment ``x4d``; DESIGN.md §8).

For every (item, method) it starts one ``align4d-item`` flow run — in-process in the embedded
default (``dispatch="inline"``), or as a run of the GPU deployment (``dispatch="deployment"``), so
that every GPU worker pulls one item's job — then aggregates the rows into ``tables/`` and Prefect
artifacts. One failing item is a failed row, never a stopped run; the flow's final state says how
many failed. Nothing large passes through Prefect: rows travel as ``row.json`` files in storage.
"""

from __future__ import annotations

import time

from prefect import flow, get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.deployments import run_deployment
from prefect.logging import get_logger
from prefect.states import Cancelling, Completed, Failed

from align4d_core.io import storage
from align4d_core.pipeline.runs import (
    RunSpec,
    ensure_dataset,
    error_item_id,
    item_folder,
    item_run_ended,
    select_items,
    write_run_json,
)
from flows.item import align4d_item, failed_row
from tasks import aggregate

ITEM_DEPLOYMENT = "align4d-item/x4d-item"
POLL_SECONDS = 5.0
"""How often the orchestrating flow reads its item runs' states (:func:`wait_for_runs`)."""
PAGE = 200
"""Runs per state request: the most Prefect's API answers in one."""

# Item runs that still have to be cancelled: not final, and not already being cancelled.
_LIVE = [StateType.SCHEDULED, StateType.PENDING, StateType.RUNNING, StateType.PAUSED]


def cancel_item_runs(flow, flow_run, state) -> None:
    """``on_cancellation`` hook of ``align4d``: cancel every item run this run started, at once.

    The item runs are separate flow runs on the gpu pool (``run_deployment``), not subflows in this
    process, so killing this process leaves them running or queued. Prefect's server only catches up
    through its cancellation-cleanup service, and only after this run has reached ``Cancelled``
    (a loop of 20 s, ``PREFECT_SERVER_SERVICES_CANCELLATION_CLEANUP_LOOP_SECONDS``); meanwhile the
    queued item runs can still be picked up by a worker and take the gpu slot. The hook runs where
    Prefect runs cancellation hooks for a deployed run: in the worker, right after it killed this
    run's process and before it marks the run ``Cancelled``, so nothing of this run is alive to
    start more item runs.

    Each item run (a flow run whose parent task run belongs to this run) is proposed ``Cancelling``,
    which is what ``prefect flow-run cancel`` does: the server turns a scheduled run without a process
    into ``Cancelled`` directly, and the gpu worker kills a pending or running one (SIGTERM; the
    engine unwinds, so the ``concurrency`` block of ``tasks.common.gpu_slot`` releases its slot) and
    marks it ``Cancelled``. A holder that dies without unwinding loses its slot when the lease it holds
    expires (see ``gpu_slot``).
    """
    logger = get_logger("align4d.cancel")
    live = FlowRunFilter(
        parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[flow_run.id]),
        state=FlowRunFilterState(type=FlowRunFilterStateType(any_=_LIVE)),
    )
    tried: set = set()
    with get_client(sync_client=True) as client:
        while runs := [r for r in client.read_flow_runs(flow_run_filter=live, limit=200) if r.id not in tried]:
            for run in runs:
                tried.add(run.id)
                try:
                    result = client.set_flow_run_state(
                        run.id, Cancelling(message=f"The run {flow_run.name!r} that started it was cancelled.")
                    )
                    logger.info("item run %s (%s): %s", run.name, run.state_name, result.status.value)
                except Exception:  # noqa: BLE001 - one run that cannot be cancelled must not keep the others alive
                    logger.exception("could not cancel item run %s", run.name)


@flow(name="align4d", on_cancellation=[cancel_item_runs])
def align4d(
    dataset: str | None = None,
    out: str = "runs",
    settings: dict | None = None,
    methods: list[str] | None = None,
    items: list[str] | None = None,
    limit: int | None = None,
    dispatch: str = "inline",
    item_deployment: str = ITEM_DEPLOYMENT,
):
    """Run align4d over ``dataset`` (default: the bundled sample) into ``out/<run_id>``.

    ``settings`` overrides any default of align4d_core/config/schema.py (a config file's contents);
    ``methods`` are presets (``align4d``, ``no-oda``, ``no-mgja``, ``no-ao``; default the full
    method); ``items`` filters by id and ``limit`` keeps the first N.
    """
    logger = get_run_logger()
    dataset = ensure_dataset(dataset, out)
    spec = RunSpec(dataset, out, settings or {}, tuple(methods or ["align4d"]), tuple(items or ()), limit)
    if dispatch not in ("inline", "deployment"):
        raise ValueError(f"dispatch must be 'inline' or 'deployment', got {dispatch!r}")
    selected, bad_lines = select_items(dataset, spec.items, limit)
    write_run_json(spec, [i.id for i in selected])
    jobs = [(item, method) for item in selected for method in spec.methods]
    logger.info("run %s: %d items x %d methods into %s", spec.run_id, len(selected), len(spec.methods), spec.root)
    for error in bad_lines:
        logger.error("manifest: %s", error)

    rows = [failed_row(error_item_id(e, k), method, e) for k, e in enumerate(bad_lines) for method in spec.methods]
    if dispatch == "inline":
        rows += [_inline(dataset, item, method, spec) for item, method in jobs]
    else:
        rows += _deployed(dataset, jobs, spec, item_deployment)

    summary = aggregate(spec.root, rows)
    message = f"{summary['rows'] - summary['failed']} of {summary['rows']} item runs completed; tables in {summary['results']}"
    if summary["failed"]:  # the tables are written; the run's state says that not everything ran
        return Failed(message=message)
    return Completed(message=message, data={**summary, "run_id": spec.run_id, "run": spec.root})


def _row(item_id: str, method: str, spec: RunSpec, state_message: str | None) -> dict:
    uri = storage.join(item_folder(spec.root, item_id, method), "row.json")
    if storage.exists(uri):
        return storage.read_json(uri)
    return failed_row(item_id, method, RuntimeError(state_message or "the item's flow run ended without a result"))


def _inline(dataset: str, item, method: str, spec: RunSpec) -> dict:
    state = align4d_item(dataset, item.to_json(), method, spec.root, spec.settings, return_state=True)
    row = _row(item.id, method, spec, None if state.is_completed() else state.message)
    item_run_ended(spec.root, item.id, method)  # `align4d run`'s display counts it, without listing storage
    return row


def _deployed(dataset: str, jobs: list, spec: RunSpec, deployment: str) -> list[dict]:
    """Queue every item's run on the GPU deployment at once, then wait for all of them to end."""
    runs = []
    for item, method in jobs:
        params = {
            "dataset": dataset,
            "item": item.to_json(),
            "method": method,
            "run_root": spec.root,
            "settings": spec.settings,
        }
        flow_run = run_deployment(
            deployment, parameters=params, timeout=0, as_subflow=True, flow_run_name=f"{item.id}-{method}"
        )
        runs.append((item.id, method, flow_run.id))

    finished = wait_for_runs([run_id for _, _, run_id in runs])
    rows = []
    for item_id, method, run_id in runs:
        state = finished[run_id].state
        rows.append(_row(item_id, method, spec, None if state.is_completed() else state.message))
    return rows


def wait_for_runs(run_ids: list, poll_s: float = POLL_SECONDS) -> dict:
    """The flow runs ``run_ids`` once each is final, their states read in pages every ``poll_s``.

    Not ``prefect.flow_runs.wait_for_flow_run`` per run: that opens one event-stream websocket per
    run, 200 at once for a 200-item dataset, and the local server's handshakes timed out until the
    orchestrating run itself failed (``benchmarks/orchestration.py --deployed``). Reading the states
    costs one request per 200 runs and interval, whatever the number of runs.
    """
    pending = list(dict.fromkeys(run_ids))
    finished: dict = {}
    with get_client(sync_client=True) as client:
        while pending:
            for start in range(0, len(pending), PAGE):
                page = FlowRunFilter(id=FlowRunFilterId(any_=pending[start : start + PAGE]))
                for run in client.read_flow_runs(flow_run_filter=page, limit=PAGE):
                    if run.state is not None and run.state.is_final():
                        finished[run.id] = run
            pending = [run_id for run_id in pending if run_id not in finished]
            if pending:
                time.sleep(poll_s)
    return finished
