"""What every align4d task shares: retries on transient storage errors, cache keys, result storage.

* Retries: a task is retried (with backoff) only when it failed on a transient error — a network or
  storage hiccup (``OSError``, ``ConnectionError``, ``TimeoutError``, botocore's connection and
  throttling errors). Bad input (:class:`~align4d_core.errors.InputError`) is never retried: it would
  fail the same way.
* Cache keys: the stage, the object folder, the resolved settings, the content hashes of the pair's
  files and the code version — exactly what determines a stage's result — so that a re-run of the
  flow skips finished stages even before the stage's own ``done.json`` would.
* Results are persisted under the run folder (``<run>/.prefect-results``), never in the Prefect
  server's database: large data stays in storage and results hold only URIs and small JSON.
"""

from __future__ import annotations

import contextlib
import functools

from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.filesystems import LocalFileSystem, RemoteFileSystem

from align4d_core import storage
from align4d_core.done import code_version
from align4d_core.errors import InputError
from align4d_core.hashing import hash_json

RETRY_DELAYS = [2, 8, 30]  # seconds, between the attempts of a task failing on a transient error

_TRANSIENT_BOTOCORE = ("EndpointConnectionError", "ConnectionClosedError", "ReadTimeoutError",
                       "ConnectTimeoutError", "SlowDown", "ServiceUnavailable", "RequestTimeout",
                       "InternalError", "ThrottlingException")  # fmt: skip


def is_transient(error: BaseException) -> bool:
    """A storage or network hiccup that a retry may get past (bad input never is)."""
    if isinstance(error, InputError):
        return False
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    names = {type(e).__name__ for e in (error, error.__cause__, error.__context__) if e is not None}
    if names & set(_TRANSIENT_BOTOCORE):
        return True
    code = getattr(getattr(error, "response", None), "get", lambda *_: None)("Error") or {}
    if isinstance(code, dict) and code.get("Code") in _TRANSIENT_BOTOCORE:
        return True
    return isinstance(error, OSError) and not isinstance(error, (FileNotFoundError, PermissionError))


def retry_transient(task, task_run, state) -> bool:
    """Prefect's ``retry_condition_fn``: retry only what :func:`is_transient` says."""
    try:
        state.result()
    except BaseException as error:  # noqa: BLE001 - classify whatever the task raised
        return is_transient(error)
    return False


def stage_cache_key(context, parameters: dict) -> str:
    """stage · folder · settings · input content hashes · code version."""
    stage = context.task.name
    return "-".join([
        stage,
        hash_json({"out": parameters["out"], "settings": parameters["settings"], "method": parameters["method"]})[:16],
        hash_json(parameters["pair"].get("hashes", {}))[:16],
        code_version(),
    ])  # fmt: skip


def result_storage(run_root: str):
    """Where task results of the run are persisted: inside the run folder, on any fsspec URI.

    Prefect needs the storage block saved server-side; it is saved under a name derived from the
    folder, so every worker of the run resolves the same block.
    """
    folder = storage.join(run_root, ".prefect-results")
    if storage.is_local(folder):
        block = LocalFileSystem(basepath=storage.filesystem(folder)[1])
    else:
        block = RemoteFileSystem(basepath=folder)
    block.save(f"align4d-results-{hash_json(folder)[:16]}", overwrite=True)
    return block


GPU_LIMIT = "gpu"
"""The global concurrency limit GPU stages hold a slot of (created by the operator, see infra/)."""


@functools.lru_cache(maxsize=1)
def _gpu_limit_exists() -> bool:
    try:
        with get_client(sync_client=True) as client:
            client.read_global_concurrency_limit_by_name(GPU_LIMIT)
        return True
    except Exception:  # noqa: BLE001 - absent (the embedded default) or unreadable: run unlimited
        return False


@contextlib.contextmanager
def gpu_slot():
    """Hold one slot of the ``gpu`` limit when the server has one; run freely when it has none."""
    if not _gpu_limit_exists():
        yield
        return
    with concurrency(GPU_LIMIT, occupy=1):
        yield
