"""Progress of long work, visible whether or not the output is a terminal.

On a terminal a rich progress bar is drawn; otherwise (CI logs, ``nohup``, a pipe) a plain line is printed at
most every ``interval`` seconds and once at the end, so a long step is never silent.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any

__all__ = ["Progress"]


def _fmt_seconds(s: float) -> str:
    s = round(s)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class Progress:
    """Report progress of ``total`` units of work (``None`` when the total is unknown).

    Parameters
    ----------
    total : int or None
        Units of work expected.
    description : str
        What is being done, shown before the counts.
    stream : file, optional
        Where to write (default ``sys.stderr``).
    interval : float, default 10.0
        Seconds between plain lines when the stream is not a terminal.
    enabled : bool, default True
        ``False`` makes every method a no-op.
    unit : str, default ""
        Name of one unit, shown after the rate (e.g. ``"steps"``).

    Examples
    --------
    >>> with Progress(3, "solving", enabled=False) as bar:
    ...     for _ in range(3):
    ...         bar.advance()
    """

    def __init__(
        self,
        total: int | None,
        description: str,
        *,
        stream: IO[str] | None = None,
        interval: float = 10.0,
        enabled: bool = True,
        unit: str = "",
    ) -> None:
        self.total = None if total is None else int(total)
        self.description = description
        self.stream = stream if stream is not None else sys.stderr
        self.interval = float(interval)
        self.enabled = bool(enabled)
        self.unit = unit
        self.completed = 0
        self._start = time.monotonic()
        self._last_line = self._start
        self._bar: Any = None
        self._task: Any = None
        self._extra = ""
        if self.enabled and getattr(self.stream, "isatty", lambda: False)():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
            from rich.progress import Progress as RichProgress

            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[extra]}"),
                console=Console(file=self.stream),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task(description, total=self.total, extra="")

    def advance(self, n: int = 1, note: str | None = None) -> None:
        """Record ``n`` more finished units (and an optional short note, e.g. the current bound)."""
        self.set(self.completed + int(n), note)

    def set(self, completed: int, note: str | None = None) -> None:
        """Record that ``completed`` units are done."""
        if not self.enabled:
            return
        self.completed = int(completed)
        if note is not None:
            self._extra = note
        if self._bar is not None:
            self._bar.update(self._task, completed=self.completed, extra=self._extra)
            return
        now = time.monotonic()
        if now - self._last_line >= self.interval:
            self._last_line = now
            self._line(now)

    def _line(self, now: float) -> None:
        elapsed = now - self._start
        rate = self.completed / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.description}: {self.completed}"]
        if self.total:
            parts[0] += f"/{self.total} ({100 * self.completed / self.total:.0f}%)"
        parts.append(f"{rate:.3g} {self.unit}/s".replace(" /s", "/s"))
        parts.append(f"elapsed {_fmt_seconds(elapsed)}")
        if self.total and rate > 0 and self.completed < self.total:
            parts.append(f"~{_fmt_seconds((self.total - self.completed) / rate)} left")
        if self._extra:
            parts.append(self._extra)
        print(", ".join(parts), file=self.stream, flush=True)

    def close(self) -> None:
        """Finish: stop the bar, or print the final plain line."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
        else:
            self._line(time.monotonic())
        self.enabled = False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
