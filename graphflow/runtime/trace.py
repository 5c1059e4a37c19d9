"""Per-run tracing: `RunOptions(trace=True)` and `RunMetadata.save_chrome_trace(path)`."""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field


@dataclass
class RunOptions:
    """Options for one `Session.run`; `trace=True` records each step's times and thread."""

    trace: bool = False
    trace_level: int = 0

    def __post_init__(self):
        if self.trace_level:
            self.trace = True


FULL_TRACE = 3
RunOptions.FULL_TRACE = FULL_TRACE


@dataclass
class StepEvent:
    name: str
    op: str
    start_us: float
    end_us: float
    thread: int


@dataclass
class RunMetadata:
    """Filled by a traced run: `step_stats` lists one StepEvent per executed step."""

    step_stats: list = field(default_factory=list)

    def chrome_trace(self) -> dict:
        """The trace in Chrome's trace-event format (what chrome://tracing and Perfetto read):
        one complete ("X") event per executed step, times in microseconds from the first
        step, one row per thread that ran steps."""
        threads = sorted({e.thread for e in self.step_stats})
        tid = {t: i for i, t in enumerate(threads)}
        t0 = min((e.start_us for e in self.step_stats), default=0.0)
        events = [{"name": e.name, "cat": e.op, "ph": "X", "ts": e.start_us - t0,
                   "dur": max(e.end_us - e.start_us, 0.0), "pid": 0, "tid": tid[e.thread],
                   "args": {"op": e.op}} for e in self.step_stats]
        events += [{"name": "thread_name", "ph": "M", "pid": 0, "tid": i, "args": {"name": f"thread {i}"}}
                   for i in range(len(threads))]
        events.append({"name": "process_name", "ph": "M", "pid": 0, "args": {"name": "graphflow"}})
        return {"traceEvents": events, "displayTimeUnit": "ms"}

    def save_chrome_trace(self, path) -> None:
        """Write the Chrome trace JSON to `path` (atomically: temporary file, then rename)."""
        path = os.fspath(path)
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".trace-", suffix=".json")
        try:
            with os.fdopen(fd, "w") as f:
                json.dump(self.chrome_trace(), f)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
