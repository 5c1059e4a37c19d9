"""The compile pipeline: lower the graph, then run the passes `opt_level` selects, in order.

`PASSES` is the one ordered list of passes. Each is a function `(program, report) ->
program`, tagged with the lowest opt_level that runs it. Consecutive passes marked
`fixed_point` form a loop that repeats until a whole round changes nothing (every pass
returned its input unchanged) or `MAX_ROUNDS` is reached; passes are idempotent, so one
is not rerun on a program it produced or already left unchanged. Any pass but `prune` (which
decides what a run executes) can be switched off by name: `build_program(...,
disable=("cse",))` or the env `GRAPHFLOW_DISABLE_PASSES=cse,simplify`. With
`GRAPHFLOW_VERIFY=1` (set in the tests) the invariant checker runs after every pass;
`GRAPHFLOW_DEBUG=1` prints a line per pass run, `2` also the program after it, `3` also
the LLVM IR of the generated kernels.
"""
from __future__ import annotations

import os
import sys
import time
from typing import Callable, NamedTuple

from .fusion import fuse
from .passes.cse import cse
from .passes.fold import fold_constants
from .passes.prune import prune
from .passes.simplify import simplify
from .program import FEED, Program, lower_graph
from .report import Report
from .verify import verify


class Pass(NamedTuple):
    """A named pass, the lowest opt_level that runs it, and whether it is part of the
    fixed-point loop; `stage` is where its time goes in `Report.stage_seconds`;
    `unaffected_by` names passes whose changes never give it anything new to do (the
    fixed-point loop does not rerun it for those alone).
    (A NamedTuple, not a dataclass: this module is imported by a process's first compile,
    and generating a dataclass's methods costs more than the whole rest of the module.)"""

    name: str
    fn: Callable
    level: int
    fixed_point: bool = False
    stage: str = "passes"
    unaffected_by: tuple = ()


# in level order: the program after the passes of level L is the opt_level L program
PASSES = (
    Pass("prune", prune, 0),
    # cse only merges a node into an identical earlier one (same op, attributes, inputs and
    # control deps), so whether each input is a constant, and what waits on what, stay as
    # they were: it never makes a node foldable
    Pass("fold_constants", fold_constants, 1, fixed_point=True, unaffected_by=("cse",)),
    Pass("cse", cse, 1, fixed_point=True),
    Pass("simplify", simplify, 1, fixed_point=True),
    Pass("fuse", fuse, 2, stage="fusion"),
)

REQUIRED = ("prune",)
MAX_ROUNDS = 8


def disabled_passes(disable=()) -> tuple[str, ...]:
    """Names switched off by `disable` and GRAPHFLOW_DISABLE_PASSES; unknown names raise."""
    env = os.environ.get("GRAPHFLOW_DISABLE_PASSES", "")
    names = tuple(disable) + tuple(n.strip() for n in env.split(",") if n.strip())
    known = {p.name for p in PASSES}
    for n in names:
        if n not in known:
            raise ValueError(f"unknown pass '{n}' to disable; the passes are {', '.join(sorted(known))}")
        if n in REQUIRED:
            raise ValueError(f"pass '{n}' cannot be switched off: it decides which ops a run executes")
    return names


def _debug_level() -> int:
    try:
        return int(os.environ.get("GRAPHFLOW_DEBUG", "0") or 0)
    except ValueError:
        return 0


class _Runner:
    """Runs passes with timing, verification and debug output."""

    def __init__(self, report: Report):
        self.report = report
        self.verify = os.environ.get("GRAPHFLOW_VERIFY", "0") not in ("", "0")
        self.debug = _debug_level()

    def __call__(self, p: Pass, program: Program, round_no: int = 0, where: str = "") -> Program:
        before = len(program)
        t0 = time.perf_counter()
        out = p.fn(program, self.report)
        dt = time.perf_counter() - t0
        after = len(out)
        name = f"{p.name} [{where}]" if where else p.name
        self.report.timed(name, dt, before, after, round_no)
        self.report.stage_seconds[p.stage] = self.report.stage_seconds.get(p.stage, 0.0) + dt
        if self.verify and out is not program:
            verify(out, p.name)
        if self.debug:
            tag = f" round {round_no}" if round_no else ""
            print(f"[graphflow] {name}{tag}: {dt * 1e3:.2f} ms, ops {before} -> {after}", file=sys.stderr)
            if self.debug >= 2 and out is not program:
                print(out.dump(), file=sys.stderr)
        return out


def run_passes(program: Program, report: Report, opt_level: int, disable=(), above: int = -1) -> Program:
    """Run the passes of `PASSES` that `opt_level` selects and `disable` leaves on (only
    those of a level above `above`: the passes of the lower levels already ran)."""
    off = disabled_passes(disable)
    selected = [p for p in PASSES if above < p.level <= opt_level and p.name not in off]
    run = _Runner(report)
    i = 0
    while i < len(selected):
        if not selected[i].fixed_point:
            program = run(selected[i], program)
            i += 1
            continue
        j = i
        while j < len(selected) and selected[j].fixed_point:
            j += 1
        program = _fixed_point(selected[i:j], program, report, run)
        program = _optimize_branches(selected[i:j], program, report, run)
        i = j
    return program


def _optimize_branches(group, program: Program, report: Report, run) -> Program:
    """Run the fixed-point `group` inside every gf.cond branch (the sub-programs a Cond node
    carries), innermost conds first; the report names each run after its branch."""
    nodes, changed = [], False
    for n in program.nodes:
        branches = n.attrs.get("branches") if n.op_def.extra.get("has_branches") else None
        if branches:
            new = tuple(_fixed_point(group, _optimize_branches(group, b, report, run), report, run,
                                     f"{n.name} branch {i}") for i, b in enumerate(branches))
            if any(a is not b for a, b in zip(new, branches)):
                n = n.with_(attrs=dict(n.attrs, branches=new))
                changed = True
        nodes.append(n)
    return program.with_nodes(nodes) if changed else program


def _fixed_point(group, program: Program, report: Report, run, where: str = "") -> Program:
    """Repeat `group` until a round changes nothing. Passes are idempotent, so a pass is
    skipped when the program is one it returned or left unchanged before, or when only
    passes it is `unaffected_by` changed it since."""
    settled: dict = {}  # pass name -> a program that is a fixed point of that pass
    changers: dict = {p.name: set() for p in group}   # pass name -> passes that changed the program since
    for round_no in range(1, MAX_ROUNDS + 1):
        changed = False
        for p in group:
            if settled.get(p.name) is program:
                continue
            if p.name in settled and changers[p.name] <= set(p.unaffected_by):
                settled[p.name] = program
                continue
            out = run(p, program, round_no, where)
            settled[p.name] = out
            changers[p.name] = set()
            if out is not program:
                changed = True
                for q in changers:
                    if q != p.name:
                        changers[q].add(p.name)
            program = out
        if not changed:
            return program
    report.note(f"passes {', '.join(p.name for p in group)} did not reach a fixed point in {MAX_ROUNDS} rounds"
                + (f" ({where})" if where else ""))
    return program


def fill_unfused(report: Report, program: Program, opt_level: int, disable=()) -> None:
    """Give every op that no kernel holds a reason, unless a pass (fusion) gave one."""
    if opt_level < 2:
        reason = f"opt_level {opt_level}: no fusion"
    elif not any(p.level >= 2 for p in PASSES):
        reason = "no fusion pass in this build"
    elif any(p.level >= 2 and p.name in disabled_passes(disable) for p in PASSES):
        reason = "fusion switched off"
    else:
        reason = "not fused"
    kernels = {k["name"] for k in report.kernels}
    for n in program.nodes:
        if n.op != FEED and n.name not in kernels and n.name not in report.unfused:
            report.unfused[n.name] = reason


def build_stages(graph, outputs, targets, feeds, opt_level: int = 2, disable=()) -> tuple[list, Report]:
    """The program after each level's passes, `[level 0 (pruned only), ..., opt_level]`,
    from one lowering and into one report (PASSES is in level order, so the last one is
    what `build_program` returns). The runtime sizes level 0 to compare peak memory and
    falls back on a lower level when fusion would raise it."""
    report = Report()
    t0 = time.perf_counter()
    program = lower_graph(graph, outputs, targets, feeds)
    report.stage_seconds["lower"] = time.perf_counter() - t0
    programs = []
    for level in range(max(opt_level, 0) + 1):
        program = run_passes(program, report, level, disable, above=level - 1)
        programs.append(program)
    fill_unfused(report, program, opt_level, disable)
    if _debug_level() >= 3 and report.llvm_ir:
        print(report.llvm_ir, file=sys.stderr)
    return programs, report


def build_program(graph, outputs, targets, feeds, opt_level: int = 2, disable=()) -> tuple[Program, Report]:
    """Lower what the fetches need and optimize it; raises for unfed placeholders (prune
    checks them before any optimization, so every opt_level reports the same chain)."""
    programs, report = build_stages(graph, outputs, targets, feeds, opt_level, disable)
    return programs[-1], report
