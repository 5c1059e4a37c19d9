"""What the compiler did, for `CompiledGraph.report()` and the CLI."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PassRecord:
    name: str
    seconds: float
    ops_before: int
    ops_after: int


@dataclass
class Report:
    """Events appended by passes: (pass name, kind, subject names, reason)."""

    events: list = field(default_factory=list)
    passes: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    def record(self, pass_name: str, kind: str, names, reason: str | None = None) -> None:
        names = list(names)
        if names:
            self.events.append((pass_name, kind, names, reason))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def timed(self, name: str, seconds: float, before: int, after: int) -> None:
        self.passes.append(PassRecord(name, seconds, before, after))

    def names(self, kind: str) -> list[str]:
        return [n for _, k, names, _ in self.events if k == kind for n in names]
