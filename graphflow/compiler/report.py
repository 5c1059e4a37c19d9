"""What the compiler did, for `CompiledGraph.report()` and the CLI.

Passes append events (what they pruned, folded, merged, simplified and why); the pipeline
records each pass run's time and op counts; the fusion pass fills `kernels` and `unfused`;
the runtime fills the memory figures. `render` turns all of it into the report text.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class PassRecord:
    """One run of one pass: which fixed-point round, how long, op counts around it."""

    name: str
    seconds: float
    ops_before: int
    ops_after: int
    round: int = 0


@dataclass
class Report:
    """Events appended by passes: (pass name, kind, subject names, reason)."""

    events: list = field(default_factory=list)
    passes: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    kernels: list = field(default_factory=list)
    unfused: dict = field(default_factory=dict)
    llvm_ir: str = ""
    peak_memory_bytes: int | None = None
    # int, None, or a function computing it on first read (sizing the unfused plan costs as
    # much as a tenth of a warm compile, and the plan often does not need it: see runtime/plan.py)
    _unfused_peak: Any = field(default=None, repr=False)
    stage_seconds: dict = field(default_factory=dict)
    _seen: set = field(default_factory=set, repr=False)

    @property
    def unfused_peak_memory_bytes(self) -> int | None:
        """Peak memory of the unfused (opt_level 0) plan of the same fetches, in bytes."""
        value = self._unfused_peak
        if callable(value):
            value = self._unfused_peak = value()
        return value

    @unfused_peak_memory_bytes.setter
    def unfused_peak_memory_bytes(self, value) -> None:
        self._unfused_peak = value

    def record(self, pass_name: str, kind: str, names, reason: str | None = None) -> None:
        """Append an event; one repeated by a later fixed-point round is kept once."""
        names = list(names)
        key = (pass_name, kind, tuple(names), reason)
        if names and key not in self._seen:
            self._seen.add(key)
            self.events.append((pass_name, kind, names, reason))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def timed(self, name: str, seconds: float, before: int, after: int, round: int = 0) -> None:
        self.passes.append(PassRecord(name, seconds, before, after, round))

    def names(self, kind: str) -> list[str]:
        return [n for _, k, names, _ in self.events if k == kind for n in names]

    def pass_totals(self) -> dict[str, tuple[float, int]]:
        """pass name -> (total seconds, number of runs), in first-run order."""
        out: dict[str, tuple[float, int]] = {}
        for p in self.passes:
            s, n = out.get(p.name, (0.0, 0))
            out[p.name] = (s + p.seconds, n + 1)
        return out

    def render(self, header: list[str] | None = None) -> str:
        """The report as text: header lines, then passes, events, kernels, unfused ops."""
        lines = list(header or [])
        if self.passes:
            lines.append("passes:")
            for p in self.passes:
                tag = f" (round {p.round})" if p.round else ""
                lines.append(f"  {p.name}{tag}: {p.seconds * 1e3:.2f} ms, ops {p.ops_before} -> {p.ops_after}")
        if self.stage_seconds:
            lines.append("stages: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in self.stage_seconds.items()))
        for pass_name, kind, names, reason in self.events:
            why = f" ({reason})" if reason else ""
            lines.append(f"{kind} by {pass_name}{why}: {', '.join(names)}")
        for k in self.kernels:
            vec = {True: ", vectorized", False: ", scalar", None: ""}[k.get("vectorized")]
            lines.append(f"kernel {k['name']} [{k.get('kind', '?')}{vec}]: {', '.join(k['members'])}")
            if k.get("inputs") or k.get("outputs"):
                lines.append(f"  inputs {', '.join(k.get('inputs', ()))}; outputs {', '.join(k.get('outputs', ()))}")
        if self.unfused:
            lines.append("unfused:")
            lines.extend(f"  {name}: {reason}" for name, reason in self.unfused.items())
        if self.peak_memory_bytes is not None:
            extra = ("" if self.unfused_peak_memory_bytes is None
                     else f" (unfused: {self.unfused_peak_memory_bytes} bytes)")
            lines.append(f"peak memory: {self.peak_memory_bytes} bytes{extra}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines) + "\n"
