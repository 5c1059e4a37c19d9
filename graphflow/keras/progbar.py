"""The per-epoch progress line of `fit(verbose=1|2)`.

On a terminal the line is redrawn in place ("\\r") with the step count, a bar, the ETA,
loss and metrics; when the stream is not a terminal (a pipe, a log file, CI) only the
finished line is written, once per epoch, so logs stay readable.
"""
from __future__ import annotations

import sys
import time


def _fmt_time(seconds: float) -> str:
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{int(round(seconds))}s"


def _fmt_logs(logs: dict) -> str:
    return "".join(f" - {k}: {v:.4f}" for k, v in logs.items())


class Progbar:
    """One epoch's progress over `target` steps, written to `stream` (default sys.stdout)."""

    def __init__(self, target: int, prefix: str = "", width: int = 30, verbose: int = 1, stream=None,
                 interval: float = 0.05):
        self.target, self.prefix, self.width, self.verbose = target, prefix, width, verbose
        self.stream = stream if stream is not None else sys.stdout
        isatty = getattr(self.stream, "isatty", None)
        self.dynamic = verbose == 1 and bool(isatty and isatty())
        self.interval = interval
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_len = 0

    def _bar(self, step: int) -> str:
        done = int(self.width * step / self.target) if self.target else self.width
        arrow = ">" if step < self.target else "="
        fill = "=" * max(done - 1, 0) + (arrow if done else "")
        return f"{step}/{self.target} [{fill}{'.' * (self.width - len(fill))}]"

    def update(self, step: int, logs: dict) -> None:
        """Redraw after `step` finished steps (terminal only; throttled to `interval`)."""
        if not self.dynamic:
            return
        now = time.perf_counter()
        if now - self._last_draw < self.interval and step < self.target:
            return
        self._last_draw = now
        elapsed = now - self.start
        eta = elapsed / step * (self.target - step) if step else 0.0
        self._write(f"{self.prefix}{self._bar(step)} - ETA: {_fmt_time(eta)}{_fmt_logs(logs)}")

    def finish(self, logs: dict) -> None:
        """Write the epoch's final line (time per step, all logs including val_ ones) and a newline."""
        if self.verbose == 0:
            return
        elapsed = time.perf_counter() - self.start
        per_step = elapsed / max(self.target, 1)
        self._write(f"{self.prefix}{self._bar(self.target)} - {_fmt_time(elapsed)} {per_step * 1e3:.0f}ms/step"
                    f"{_fmt_logs(logs)}", end="\n")

    def _write(self, line: str, end: str = "") -> None:
        if self.dynamic:  # back to the line start, and blank out what a longer previous line left
            line = "\r" + line + " " * max(self._last_len - len(line), 0)
            self._last_len = len(line) - 1
        self.stream.write(line + end)
        self.stream.flush()
