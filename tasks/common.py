"""What every align4d task shares: the task options, retries on transient storage errors, the gpu slot.

* Retries: a task is retried (with backoff) only when it failed on a transient error — a network or
  storage hiccup (``OSError``, ``ConnectionError``, ``TimeoutError``, botocore's connection and
  throttling errors). Bad input (:class:`~align4d_core.errors.InputError`) is never retried: it would
  fail the same way.
* One cache layer: the stages' own markers (``done.json``, keyed on the stage's settings, the
  content hashes of its inputs and the hash of its code; ``align4d_core.io.markers``). Prefect's
  task cache is off (``NO_CACHE``) and results are not persisted: a second layer keyed on less would
  only be a way to be wrong, and the markers live with the artifacts, so any worker, any server and
  ``align4d generate`` see the same ones. A re-run calls each task, which finds its marker and returns
  its recorded small JSON at once.
"""

from __future__ import annotations

import contextlib
import functools

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency

from align4d_core.errors import InputError

RETRY_DELAYS = [2, 8, 30]  # seconds, between the attempts of a task failing on a transient error

_TRANSIENT_BOTOCORE = (
    "EndpointConnectionError",
    "ConnectionClosedError",
    "ReadTimeoutError",
    "ConnectTimeoutError",
    "SlowDown",
    "ServiceUnavailable",
    "RequestTimeout",
    "InternalError",
    "ThrottlingException",
)


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


def stage_task(name: str):
    """The decorator of every align4d task: its name, retries on transient errors only, no cache."""
    return task(
        name=name,
        retries=len(RETRY_DELAYS),
        retry_delay_seconds=RETRY_DELAYS,
        retry_condition_fn=retry_transient,
        cache_policy=NO_CACHE,
        persist_result=False,
    )


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


GPU_LEASE_SECONDS = 60.0
"""How long a gpu slot outlives a holder that stopped renewing it (the server's minimum lease).

Prefect 3.9's ``concurrency`` holds slots as a lease that a thread of the holder renews every 3/4 of
its duration, and releases on leaving the block, also when the block is left by SIGTERM (a cancelled
item run). A holder that cannot get there — SIGKILLed, out of memory, its machine gone, or
terminated while its acquisition was being granted (seen when an item run is cancelled at the
moment it takes the slot) — holds the slot until the lease expires and the server's repossessor
(a 15 s loop) revokes it: with Prefect's default of 300 s, a GPU of the fleet idled five minutes per
such death; with 60 s it is about a minute, for one renewal request every 45 s.
"""


@contextlib.contextmanager
def gpu_slot():
    """Hold one slot of the ``gpu`` limit when the server has one; run freely when it has none."""
    if not _gpu_limit_exists():
        yield
        return
    with concurrency(GPU_LIMIT, occupy=1, lease_duration=GPU_LEASE_SECONDS):
        yield
