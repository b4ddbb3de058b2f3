"""Killing a child process at a chosen moment, for the resume-after-a-crash tests."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Callable


def sigkill_when(proc: subprocess.Popen, ready: Callable[[], bool], timeout: float, what: str) -> None:
    """SIGKILL ``proc`` as soon as ``ready()``; fail with its output if it dies first or ``what`` never happens."""
    try:
        deadline = time.time() + timeout
        while not ready():
            assert proc.poll() is None, (proc.communicate()[0] or b"").decode()[-3000:]
            assert time.time() < deadline, f"the child never {what}"
            time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
