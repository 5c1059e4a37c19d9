"""The performance targets of the issues, checked against one run's rows: each goal is a
ratio within the run (the machine is too noisy for absolute figures), except where the
issue fixes a time (W6 compile, W8 overhead)."""
from __future__ import annotations

from dataclasses import dataclass

from .tables import best_other, machine_limits


@dataclass(frozen=True)
class Goal:
    label: str
    case: str  # the case title starts with this
    system: str  # the graphflow system measured
    measure: str  # "vs best other" | "speedup vs opt 0" | "% of triad" | "seconds" | "us/call"
    bound: float
    at_most: bool  # the measured value must be <= bound (else >=)


GOALS = (
    Goal("W1 fused vs unfused", "elementwise chain N=2**24", "graphflow opt 2", "speedup vs opt 0", 8.0, False),
    Goal("W1 fused vs best peer", "elementwise chain N=2**24", "graphflow opt 2", "vs best other", 0.8, True),
    Goal("W1 fused bandwidth", "elementwise chain N=2**24", "graphflow opt 2", "% of triad", 70.0, False),
    Goal("W2 softmax vs best peer", "softmax", "graphflow opt 2", "vs best other", 0.9, True),
    Goal("W3 layer norm vs best peer", "layer norm", "graphflow opt 2", "vs best other", 0.9, True),
    Goal("W4 MLP batch 1 vs best peer", "MLP inference batch 1", "graphflow opt 2", "vs best other", 0.9, True),
    Goal("W4 MLP batch 256 vs best peer", "MLP inference batch 256", "graphflow opt 2", "vs best other", 1.0, True),
    Goal("W5 training step vs best peer", "training step", "graphflow opt 2", "vs best other", 0.9, True),
    Goal("W5 fit vs torch loop", "fit digits", "graphflow keras fit", "vs best other", 1.0, True),
    Goal("W6 cold compile", "compile", "graphflow opt 2, cold cache", "seconds", 0.5, True),
    Goal("W6 warm-cache compile", "compile", "graphflow opt 2, warm cache", "seconds", 0.05, True),
    Goal("W8 make_callable", "add two", "graphflow opt 2 make_callable", "us/call", 2.0, True),
    Goal("W8 Session.run", "add two", "graphflow opt 2 Session.run", "us/call", 5.0, True),
)


def _value(goal: Goal, row, rows: list, limits: dict) -> float | None:
    if row.median_s is None:
        return None
    if goal.measure == "vs best other":
        best = best_other(rows, row)
        return row.median_s / best if best else None
    if goal.measure == "speedup vs opt 0":
        base = next((r for r in rows if r.case == row.case and r.threads == row.threads
                     and r.system == "graphflow opt 0" and r.median_s), None)
        return base.median_s / row.median_s if base else None
    if goal.measure == "% of triad":
        limit = limits.get(("GB/s", row.threads))
        return 100 * row.figure / limit if limit and row.figure else None
    if goal.measure == "seconds":
        return row.median_s
    return row.median_s * 1e6  # us/call


def evaluate(rows: list) -> list:
    """(goal, threads, measured value or None, met) for every goal and thread count measured."""
    limits = machine_limits(rows)
    out = []
    for goal in GOALS:
        for row in rows:
            if row.case.startswith(goal.case) and row.system == goal.system:
                value = _value(goal, row, rows, limits)
                met = value is not None and (value <= goal.bound if goal.at_most else value >= goal.bound)
                out.append((goal, row.threads, value, met))
    return out


def markdown_goals(rows: list) -> str:
    results = evaluate(rows)
    if not results:
        return ""
    lines = ["| goal | threads | measured | target | met |", "| --- | --- | --- | --- | --- |"]
    for goal, threads, value, met in results:
        shown = "-" if value is None else f"{value:.3g}"
        target = f"{'<=' if goal.at_most else '>='} {goal.bound:g}"
        verdict = "-" if value is None else ("yes" if met else "no")
        lines.append(f"| {goal.label} ({goal.measure}) | {threads} | {shown} | {target} | {verdict} |")
    return "\n".join(lines) + "\n"
