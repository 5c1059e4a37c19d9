"""`graphflow compile MODEL.py`: compile what a script defines and explain the result.

Prints `CompiledGraph.report()` (text) or one JSON document with the same facts; with
`--output-dir` also writes graph.json (the optimized graph), kernels.ll (LLVM IR),
graph.dot (Graphviz, kernels as clusters) and report.html (the drawing beside the text).
"""
from __future__ import annotations

import json
import os
import sys

from ..graph import shape_str
from .program_view import program_drawing
from .report_html import render_report_html
from .script import Target, UsageError, find_target, rejected, run_script

ARTIFACTS = ("graph.json", "kernels.ll", "graph.dot", "report.html")


def compile_target(target: Target, opt_level: int):
    """gf.compile on a Target; a graph the compiler rejects is the user's input error."""
    from ..compiler.compiled import compile as gf_compile
    from ..errors import GraphflowError

    try:
        return gf_compile(target.fetches, feed_list=target.feeds, graph=target.graph, opt_level=opt_level)
    except (GraphflowError, ValueError, TypeError, LookupError) as exc:
        raise rejected("compile", target, exc) from exc


def load_target(script: str, fetch_names) -> Target:
    return find_target(run_script(script), fetch_names)


def run(args) -> int:
    target = load_target(args.script, args.fetch)
    compiled = compile_target(target, args.opt_level)
    document = compile_document(args.script, target, compiled, args.opt_level)
    if args.output_dir:
        write_artifacts(args.output_dir, compiled, target, document)
    if args.format == "json":
        json.dump(document, sys.stdout, indent=2, default=_json_default)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(document))
    return 0


def compile_document(script: str, target: Target, compiled, opt_level: int) -> dict:
    """Everything the report says, as plain JSON-ready data."""
    report = compiled.report_data
    return {
        "script": script,
        "found": target.origin,
        "opt_level": opt_level,
        "fetches": [t.name for t in target.fetches],
        "feeds": [{"name": t.name, "dtype": t.dtype.name, "shape": _shape_list(t.shape)} for t in target.feeds],
        "stats": dict(compiled.stats),
        "passes": [{"name": p.name, "seconds": p.seconds, "ops_before": p.ops_before, "ops_after": p.ops_after}
                   for p in report.passes],
        "events": [{"pass": p, "kind": k, "names": list(n), "reason": r} for p, k, n, r in report.events],
        "kernels": [dict(k) for k in report.kernels],
        "unfused": dict(report.unfused),
        "peak_memory_bytes": report.peak_memory_bytes,
        "unfused_peak_memory_bytes": report.unfused_peak_memory_bytes,
        "stage_seconds": dict(report.stage_seconds),
        "report": compiled.report(),
    }


def _shape_list(shape):
    return None if shape is None else list(shape)


def _json_default(value):
    """numpy scalars and tuples in stats become plain JSON values."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)


def render_text(document: dict) -> str:
    feeds = ", ".join(f"{f['name']} {f['dtype']} {shape_str(f['shape'])}" for f in document["feeds"]) or "none"
    head = (f"graphflow compile {document['script']}  (opt_level {document['opt_level']})\n"
            f"fetches: {', '.join(document['fetches'])}  [from {document['found']}]\n"
            f"feeds:   {feeds}\n\n")
    body = document["report"]
    return head + body + ("" if body.endswith("\n") else "\n")


def write_artifacts(directory: str, compiled, target: Target, document: dict) -> None:
    """graph.json, kernels.ll, graph.dot and report.html in `directory` (created if needed)."""
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create --output-dir {directory}: {exc.strerror}") from None
    tensor_fetches = [name for name in document["fetches"] if ":" in name]  # the program's outputs
    drawing = program_drawing(compiled.program, target.graph, document["kernels"], tensor_fetches)
    html = render_report_html(f"graphflow compile: {os.path.basename(document['script'])}",
                              f"{document['found']}  |  opt_level {document['opt_level']}  |  "
                              f"fetches {', '.join(document['fetches'])}",
                              summary_chips(document), drawing, render_text(document))
    contents = {
        "graph.json": json.dumps(compiled.to_json(), indent=1, default=_json_default) + "\n",
        "kernels.ll": compiled.llvm_ir or "; no fused kernels: nothing was code-generated\n",
        "graph.dot": compiled.to_dot(),
        "report.html": html,
    }
    for name, text in contents.items():
        path = os.path.join(directory, name)
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {exc.strerror}") from None


def summary_chips(document: dict) -> list:
    """(label, value) pairs for the page header: sizes, kernels, memory, time."""
    stats = document["stats"]
    chips = [("ops", f"{stats.get('ops_before', '?')} \u2192 {stats.get('ops_after', '?')}"),
             ("kernels", str(stats.get("kernels", len(document["kernels"])))),
             ("fused ops", str(stats.get("fused_ops", "?"))),
             ("left unfused", str(len(document["unfused"])))]
    peak, unfused_peak = document["peak_memory_bytes"], document["unfused_peak_memory_bytes"]
    if peak is not None:
        chips.append(("peak memory", format_bytes(peak) + (f" (unfused {format_bytes(unfused_peak)})"
                                                           if unfused_peak is not None else "")))
    total = stats.get("compile_seconds")
    if total is not None:
        chips.append(("compile time", f"{total * 1e3:.1f} ms"))
    return chips


def format_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"
