"""Child processes of the local stack (DynamoDB Local, moto, the QPay simulator).

Two guarantees, because an orphaned java or moto keeps its port and breaks the next `make run`:

- Children never outlive the stack. On Linux each child asks the kernel for SIGTERM when its
  parent dies (prctl PR_SET_PDEATHSIG, set in preexec_fn), which also covers `kill -9` of the
  stack. The signal follows the *thread* that forked the child, so start children from the main
  thread (the stack does). Elsewhere (macOS) we rely on explicit stop() and an atexit hook.
- Ctrl-C reaches only the stack. Children run in their own session (start_new_session), so the
  terminal's SIGINT does not kill them behind the stack's back; the stack stops them itself, in
  order, and can tell a child that crashed from one that was told to stop.

Output of each child is read by a thread and sent to `logging` (the last lines are kept for error
messages), so a chatty child can never block on a full pipe.
"""

from __future__ import annotations

import atexit
import collections
import ctypes
import ctypes.util
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_live_processes: set[ManagedProcess] = set()


class ProcessError(Exception):
    """A child process could not be started or did not become ready."""


def _die_with_parent(parent_pid: int) -> Callable[[], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c") or "libc.so.6"

    def preexec() -> None:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        # The parent may have died between fork and prctl: then nobody would signal us.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


class ManagedProcess:
    """A named child process whose output goes to logging and which is stopped with the stack."""

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        *,
        cwd: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        output_level: int = logging.DEBUG,
    ):
        self.name = name
        self.command = list(command)
        self.cwd = cwd
        self.env = dict(os.environ if env is None else env)
        self.output_level = output_level
        self.output_tail: collections.deque[str] = collections.deque(maxlen=40)
        self.stopping = False
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._output_logger = logging.getLogger(f"local.child.{name}")

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    @property
    def returncode(self) -> int | None:
        return self._process.poll() if self._process else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        try:
            self._process = subprocess.Popen(
                self.command,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(os.getpid()),
            )
        except OSError as error:
            raise ProcessError(f"cannot start {self.name} ({self.command[0]}): {error}") from error
        _live_processes.add(self)
        self._reader = threading.Thread(target=self._pump_output, name=f"{self.name}-output", daemon=True)
        self._reader.start()
        logger.info("started %s (pid %s)", self.name, self._process.pid)

    def _pump_output(self) -> None:
        stdout = self._process.stdout if self._process else None
        if stdout is None:
            return
        for raw_line in iter(stdout.readline, b""):
            line = raw_line.decode("utf-8", errors="replace").rstrip()
            self.output_tail.append(line)
            self._output_logger.log(self.output_level, "%s", line)

    def describe_exit(self) -> str:
        tail = "\n".join(f"    {line}" for line in list(self.output_tail)[-15:])
        return f"{self.name} exited with code {self.returncode}" + (f"; last output:\n{tail}" if tail else "")

    def wait_until_ready(
        self,
        probe: Callable[[], bool],
        *,
        timeout_s: float,
        what: str,
        interval_s: float = 0.1,
    ) -> None:
        """Poll `probe` until it returns True; fail early and clearly if the child dies first."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.is_running():
                self._wait_for_output()
                raise ProcessError(f"{what} did not start: {self.describe_exit()}")
            try:
                if probe():
                    return
            except Exception as error:
                logger.debug("%s not ready yet: %s", self.name, error)
            time.sleep(interval_s)
        raise ProcessError(f"{what} did not become ready within {timeout_s:.0f} s")

    def _wait_for_output(self) -> None:
        if self._reader is not None:
            self._reader.join(timeout=1)

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after timeout_s. Safe to call twice."""
        self.stopping = True
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop within %.0f s; killing it", self.name, timeout_s)
                process.kill()
                process.wait(timeout=timeout_s)
            logger.info("stopped %s", self.name)
        self._wait_for_output()
        if process.stdout is not None:
            process.stdout.close()
        _live_processes.discard(self)


@atexit.register
def _stop_leftovers() -> None:
    for process in list(_live_processes):
        process.stop(timeout_s=2)
