"""The SARSOP worker process seen from the parent: start it, bound its time, kill it with its children, read it.

:func:`run_worker` runs one child per request (``python -m trim_pomdp.solvers.sarsop.worker REQUEST RESULT``) in
its own process group, killed with everything it started (pomdpsol runs as Julia's child) when it overruns its
time. :class:`KeepAliveWorker` keeps one child (and Julia, with its packages loaded) for many requests.
:func:`read_worker_result` turns what a child left behind into a
:class:`~trim_pomdp.solvers.sarsop.arrays.RawSolution` or an error that says what happened.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
import zipfile
from pathlib import Path
from typing import Any

from trim_pomdp.exceptions import BackendUnavailableError, SolverError
from trim_pomdp.solvers.sarsop.arrays import RawSolution, WorkerError, read_result

__all__ = [
    "WORKER_MODULE",
    "KeepAliveWorker",
    "child_env",
    "describe_exit",
    "kill_tree",
    "read_worker_result",
    "run_worker",
    "tail",
]

WORKER_MODULE = "trim_pomdp.solvers.sarsop.worker"


def run_worker(request: Path, result: Path, log_path: Path, workdir: Path, limit: float) -> int:
    """Run one worker process on ``request`` and return its exit status.

    Its output goes to ``log_path``; it runs in ``workdir`` (a neutral ``sys.path[0]``: juliapkg scans
    ``sys.path`` for ``juliapkg.json`` files).

    Raises
    ------
    TimeoutError
        When it did not finish within ``limit`` seconds; it has been killed, with its children.
    """
    cmd = [sys.executable, "-m", WORKER_MODULE, str(request), str(result)]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env(),
            cwd=workdir,
            start_new_session=(os.name == "posix"),
        )
        try:
            return proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            kill_tree(proc)
            raise TimeoutError(f"the worker did not finish within {limit:.0f} s") from None
        except BaseException:  # e.g. KeyboardInterrupt: never leave Julia running
            kill_tree(proc)
            raise


def read_worker_result(result: Path, rc: int, log_path: Path, backend: str) -> RawSolution:
    """The answer a worker for ``backend`` left in ``result`` (exit status ``rc``), or the error explaining why not.

    Raises
    ------
    BackendUnavailableError
        The worker reported that Julia is not set up.
    SolverError
        The worker crashed, wrote nothing or garbage, or reported another error (Julia's message included).
    """
    who = f"the SARSOP worker ({backend})"
    if rc != 0 and not result.exists():
        raise SolverError(f"{who} {describe_exit(rc)} without a result{tail(log_path)}")
    if not result.exists():
        raise SolverError(f"{who} exited without writing {result.name}{tail(log_path)}")
    try:
        return read_result(result)
    except WorkerError as exc:  # an error the worker reported (Julia's message included)
        if exc.error_type == "BackendUnavailableError":
            raise BackendUnavailableError(exc.message) from None
        raise SolverError(f"SARSOP ({backend}) failed in the worker: {exc}") from None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise SolverError(
            f"{who} wrote an unreadable result ({type(exc).__name__}: {exc}){tail(log_path)}"
        ) from None


class KeepAliveWorker:
    """A ``worker --serve`` child process: one request per stdin line, one answer per stdout line."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="trim-pomdp-sarsop-worker-")
        self.log_path = Path(self._dir) / "worker.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, "--serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=child_env(),
            cwd=self._dir,
            text=True,
            bufsize=1,
            start_new_session=(os.name == "posix"),
        )
        self._answers: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read_answers, daemon=True).start()
        # stop the child when the worker object goes away or the interpreter exits
        self._finalizer = weakref.finalize(self, _stop_worker, self.proc, self._log, self._dir)

    def _read_answers(self) -> None:
        assert self.proc.stdout is not None  # opened with stdout=PIPE
        for line in self.proc.stdout:
            self._answers.put(line)
        self._answers.put(None)

    def alive(self) -> bool:
        """Whether the child process is still running."""
        return self.proc.poll() is None

    def run(self, request: Path, result: Path, limit: float) -> int:
        """Send one request and wait for its answer: the worker's status (0 ok, 1 error reported)."""
        assert self.proc.stdin is not None  # opened with stdin=PIPE
        self.proc.stdin.write(json.dumps({"request": str(request), "result": str(result)}) + "\n")
        self.proc.stdin.flush()
        deadline = time.monotonic() + limit
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            try:
                line = self._answers.get(timeout=remaining)
            except queue.Empty:
                raise TimeoutError from None
            if line is None:
                raise EOFError("the worker closed its output")
            try:
                answer = json.loads(line)
            except ValueError:
                continue
            if answer.get("result") == str(result):
                return int(answer.get("status", 1))

    def close(self) -> None:
        """Stop the child process (and remove its directory)."""
        self._finalizer()


def _stop_worker(proc: subprocess.Popen, log: Any, directory: str) -> None:
    try:
        if proc.poll() is None:
            try:
                if proc.stdin is not None:
                    proc.stdin.close()  # the worker's loop ends at EOF
                proc.wait(timeout=2)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if proc.poll() is None:
            kill_tree(proc)
    finally:
        log.close()
        shutil.rmtree(directory, ignore_errors=True)


def child_env() -> dict[str, str]:
    """The worker's environment: ours, with PYTHONPATH made absolute and the package root appended.

    The worker starts in another directory, so relative entries would point elsewhere; the package root makes a
    source checkout importable there.
    """
    env = os.environ.copy()
    parts = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    root = str(Path(__file__).resolve().parents[3])
    if Path(root).name not in ("site-packages", "dist-packages") and root not in parts:
        parts.append(root)
    if parts:
        env["PYTHONPATH"] = os.pathsep.join(parts)
    return env


def kill_tree(proc: subprocess.Popen) -> None:
    """Kill the worker and everything it started (pomdpsol runs as Julia's child)."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:  # pragma: no cover - Windows
            proc.kill()
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def describe_exit(rc: int) -> str:
    """``"was killed by SIGABRT"`` or ``"exited with status 3"``."""
    if rc < 0:
        try:
            name = signal.Signals(-rc).name
        except ValueError:
            name = f"signal {-rc}"
        return f"was killed by {name}"
    return f"exited with status {rc}"


def tail(path: Path, n: int = 20) -> str:
    """The last ``n`` lines of the worker's log, for error messages (``""`` if there are none)."""
    try:
        lines = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    if not lines:
        return ""
    return "\n--- worker output (last lines) ---\n" + "\n".join(lines[-n:])
