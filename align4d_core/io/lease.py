"""Leases in storage: one worker at a time does a piece of work that others would only duplicate.

Why: the methods of an item run as separate subflows, possibly on several machines, and share one
generated pair (``<run>/items/<id>/pair/``). Two of them reaching the pair at once would both
generate it and write its files over each other, file by file, so that a reader could find a mixture
of two different generations. A lease makes one of them the generator; the others wait for its
``done.json`` and reuse the pair through the ordinary marker path (:mod:`.markers`).

How: the lease named ``uri`` is a series of small JSON files ``<uri>.0``, ``<uri>.1``, ...
(generations), each recording its owner, a random token and a heartbeat time. The newest generation
is the lease. It is taken by creating a generation that does not exist yet, atomically:

* local files: a finished temporary file is hard-linked to the name (``link`` fails if the name
  exists, and a reader never sees a half-written record); without hard links, ``O_CREAT|O_EXCL``;
* S3: one ``PUT`` with ``If-None-Match: *`` (conditional writes, on AWS S3 since 2024, and moto);
* ``memory://`` (tests): a process lock around check-then-write.

A free name is taken as generation 0. A holder refreshes its heartbeat (:meth:`Lease.start_heartbeat`,
a thread, every third of ``lease_s``); a holder that was killed stops refreshing, and once its
heartbeat is older than its ``lease_s`` the lease is stale: a contender takes it over by creating the
next generation, which only one contender can do. :meth:`Lease.release` removes the holder's
generation and every older one, so a finished lease leaves nothing behind. :func:`exclusive` waits
for a lease with back-off, bounded by ``wait_s`` (then :class:`LeaseTimeout` names the holder), and
stops waiting early when ``settle()`` says the work is done.

Guaranteed: while holders keep their heartbeats, at most one holds the lease; a killed holder's lease
is taken over after ``lease_s``, by exactly one contender; a holder finds out that it lost the lease
(:meth:`Lease.ensure`, :attr:`Lease.lost`).

Not guaranteed: exclusion when a live holder misses its heartbeat for longer than ``lease_s``
(a frozen process, storage unreachable): it is then taken over while the old holder may still write,
which the old holder only learns at its next refresh or ``ensure()`` (storage offers no fencing of
the writes themselves). Staleness compares the holder's wall clock with the contender's: clocks must
agree to well within ``lease_s``. On other fsspec backends (``gs://``, ``az://``...) no atomic create is
used: the process lock excludes within one process only, and a warning says so.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import random
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from fsspec.implementations.local import LocalFileSystem

from align4d_core.errors import InputError
from align4d_core.io import storage

__all__ = ["LEASE_S", "WAIT_S", "Lease", "LeaseLost", "LeaseTimeout", "exclusive", "holder", "try_acquire"]

LEASE_S = 600.0
"""How long a lease outlives its last heartbeat (a killed worker's lease is taken over after this)."""
WAIT_S = 3600.0
"""How long :func:`exclusive` waits for a lease held by a live worker before it gives up."""

_log = logging.getLogger(__name__)
_PROCESS_LOCK = threading.Lock()
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK}


class LeaseTimeout(TimeoutError):
    """Waited ``wait_s`` for a lease that another live worker kept holding."""


class LeaseLost(RuntimeError):
    """The lease was taken over while held (this worker missed its heartbeat for longer than the lease)."""


@dataclass
class Lease:
    """A held lease: generation ``generation`` of the lease named ``uri``, identified by ``token``."""

    uri: str
    generation: int
    token: str
    owner: str
    lease_s: float
    lost: bool = False
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def path(self) -> str:
        return _generation_uri(self.uri, self.generation)

    def _still_ours(self) -> bool:
        record = _read(self.path)
        newer = any(g > self.generation for g in _generations(self.uri))
        return isinstance(record, dict) and record.get("token") == self.token and not newer

    def refresh(self) -> bool:
        """Renew the heartbeat; False (and :attr:`lost` set) when the lease was taken over."""
        if self.lost or not self._still_ours():
            self.lost = True
            return False
        storage.write_bytes(self.path, _record(self.owner, self.token, self.generation, self.lease_s))
        return True

    def ensure(self) -> None:
        """Raise :class:`LeaseLost` unless this worker still holds the lease (checked in storage now)."""
        if self.lost or not self._still_ours():
            self.lost = True
            holding = holder(self.uri)
            raise LeaseLost(
                f"the lease {self.uri} was taken over by {(holding or {}).get('owner', 'another worker')} "
                f"while {self.owner} held it (no heartbeat for over {self.lease_s:g} s)"
            )

    def start_heartbeat(self, interval_s: float | None = None) -> None:
        """Refresh in a daemon thread every ``interval_s`` (a third of the lease) until released."""
        if self._thread is not None:
            return
        interval = interval_s if interval_s is not None else self.lease_s / 3

        def beat() -> None:
            while not self._stop.wait(interval):
                try:
                    if not self.refresh():
                        _log.warning("lost the lease %s (taken over by another worker)", self.uri)
                        return
                except Exception as exc:  # storage hiccup: try again at the next beat
                    _log.warning("could not refresh the lease %s: %s", self.uri, exc)

        self._thread = threading.Thread(target=beat, name=f"lease {self.uri}", daemon=True)
        self._thread.start()

    def release(self) -> None:
        """Stop the heartbeat and remove this generation (if still ours) and every older one."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        record = _read(self.path)
        if isinstance(record, dict) and record.get("token") == self.token:
            storage.remove(self.path)
        if not self.lost:
            for generation in _generations(self.uri):
                if generation < self.generation:
                    storage.remove(_generation_uri(self.uri, generation))


def try_acquire(uri: str, *, lease_s: float = LEASE_S, owner: str | None = None) -> Lease | None:
    """Take the lease named ``uri`` if it is free or stale; None while another worker holds it."""
    if not lease_s > 0:
        raise ValueError(f"lease_s must be positive, got {lease_s!r}")
    owner = owner or f"{socket.gethostname()}:{os.getpid()}"
    for _ in range(8):  # the newest generation can vanish under us (released or superseded): look again
        generations = _generations(uri)
        if generations:
            newest = generations[-1]
            record = _read(_generation_uri(uri, newest))
            if record is _MISSING:
                continue
            if not _stale(uri, newest, record, lease_s):
                return None
            generation = newest + 1
        else:
            generation = 0
        token = uuid.uuid4().hex
        if not _create(_generation_uri(uri, generation), _record(owner, token, generation, lease_s)):
            return None  # another contender created it first
        for older in generations:  # a stale holder's generation: dead, superseded by ours
            storage.remove(_generation_uri(uri, older))
        return Lease(uri, generation, token, owner, float(lease_s))
    return None


def holder(uri: str) -> dict | None:
    """The record of the lease's newest generation (owner, heartbeat_at, ...), or None when free."""
    for generation in reversed(_generations(uri)):
        record = _read(_generation_uri(uri, generation))
        if record is not _MISSING:
            return {**(record or {}), "generation": generation}
    return None


@contextlib.contextmanager
def exclusive(
    uri: str,
    *,
    lease_s: float = LEASE_S,
    wait_s: float = WAIT_S,
    settle: Callable[[], bool] | None = None,
    owner: str | None = None,
    poll_s: float = 0.2,
    max_poll_s: float = 10.0,
) -> Iterator[Lease | None]:
    """Hold the lease named ``uri`` for the block (heartbeat running, released at the end).

    While another worker holds it, poll with exponential back-off (``poll_s`` doubling up to
    ``max_poll_s``); yield None without the lease as soon as ``settle()`` is true (the work is done,
    nothing to hold it for), and raise :class:`LeaseTimeout` after ``wait_s``.
    """
    deadline = time.monotonic() + wait_s
    delay = poll_s
    while True:
        lease = try_acquire(uri, lease_s=lease_s, owner=owner)
        if lease is not None:
            break
        if settle is not None and settle():
            yield None
            return
        left = deadline - time.monotonic()
        if left <= 0:
            holding = holder(uri) or {}
            age = time.time() - holding["heartbeat_at"] if _number(holding.get("heartbeat_at")) else None
            raise LeaseTimeout(
                f"waited {wait_s:g} s for the lease {uri}, held by {holding.get('owner', 'an unknown worker')}"
                + (f" (last heartbeat {age:.0f} s ago)" if age is not None else "")
                + "; it is alive and still working: wait longer, or stop that worker"
            )
        time.sleep(min(delay * random.uniform(0.75, 1.25), left))
        delay = min(delay * 2, max_poll_s)
    lease.start_heartbeat()
    try:
        yield lease
    finally:
        lease.release()


# --- the files ---------------------------------------------------------------------------------

_MISSING = object()


def _generation_uri(uri: str, generation: int) -> str:
    return f"{str(uri).rstrip('/')}.{generation}"


def _generations(uri: str) -> list[int]:
    """The generations of the lease present in storage, oldest first."""
    head, _, name = str(uri).rstrip("/").rpartition("/")
    pattern = re.compile(re.escape(name) + r"\.(\d+)")
    found = (pattern.fullmatch(entry) for entry in storage.listdir(head or "."))
    return sorted(int(match.group(1)) for match in found if match)


def _record(owner: str, token: str, generation: int, lease_s: float) -> bytes:
    now = time.time()
    record = {"owner": owner, "token": token, "generation": generation, "lease_s": lease_s, "heartbeat_at": now}
    return json.dumps(record, sort_keys=True).encode()


def _read(uri: str) -> dict | None | object:
    """The generation's record; None if unreadable (judged by its modification time), _MISSING if gone."""
    try:
        record = storage.read_json(uri)
    except InputError as exc:
        return _MISSING if "not found" in str(exc) else None
    except FileNotFoundError:
        return _MISSING
    return record if isinstance(record, dict) else None


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _stale(uri: str, generation: int, record: dict | None, lease_s: float) -> bool:
    """The holder's heartbeat is older than its lease (its own ``lease_s``, else ours)."""
    beat = (record or {}).get("heartbeat_at")
    if not _number(beat):
        try:
            fs, path = storage.filesystem(_generation_uri(uri, generation))
            beat = storage.patiently(uri, lambda: fs.modified(path)).timestamp()
        except (OSError, NotImplementedError):
            return True  # nothing shows that anyone is alive
    limit = (record or {}).get("lease_s")
    return time.time() - beat > (limit if _number(limit) and limit > 0 else lease_s)


def _create(uri: str, data: bytes) -> bool:
    """Create ``uri`` holding ``data`` unless it exists, atomically; True if this call created it."""
    fs, path = storage.filesystem(uri)
    if isinstance(fs, LocalFileSystem):
        created = _create_local(path, data)
    elif "s3" in fs.protocol:
        try:
            # PUT with If-None-Match: *, waited out through an outage like every storage call; a
            # retry after a lost response reads as "exists", which the token check below settles
            storage.patiently(uri, lambda: fs.pipe_file(path, data, mode="create"))
            created = True
        except FileExistsError:
            created = False
        except OSError as exc:
            if exc.errno != errno.EBUSY:  # 409 ConditionalRequestConflict: a concurrent create won
                raise
            created = False
        if not created:  # a lost response to our own PUT, retried, reads as "exists": check the token
            record = _read(uri)
            created = isinstance(record, dict) and record.get("token") == json.loads(data)["token"]
        fs.invalidate_cache(path)
    else:
        if "memory" not in fs.protocol:
            _log.warning("no atomic create on %s: the lease %s excludes within this process only", fs.protocol, uri)
        with _PROCESS_LOCK:
            fs.invalidate_cache(path)
            created = not fs.exists(path)
            if created:
                fs.pipe_file(path, data)
    return created


def _create_local(path: str, data: bytes) -> bool:
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    try:
        os.link(tmp, path)  # fails if the name exists; the record appears whole
        return True
    except FileExistsError:
        return False
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        try:  # no hard links on this filesystem: exclusive create (a reader may see it empty, briefly)
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
