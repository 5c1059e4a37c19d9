"""Run the WORKLOADS.md suite: `python -m benchmarks` or `python benchmarks/run.py`.

    python -m benchmarks                         # W1-W8 at 1 thread and at all threads
    python -m benchmarks --only W1,W4 --threads 1,2
    python -m benchmarks --quick                 # small sizes, fewer repeats: a smoke run
    python -m benchmarks --json out.json --markdown benchmarks/RESULTS.md

Works with nothing but graphflow installed; each installed peer (numexpr, numba,
onnxruntime, torch, jax, tensorflow) is checked against numpy, then timed in the same run.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import subprocess
import sys

if __package__ in (None, ""):  # `python benchmarks/run.py`: make the package importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    __package__ = "benchmarks"

from benchmarks import goals, machine, tables  # noqa: E402
from benchmarks.registry import TITLES, WORKLOADS, select  # noqa: E402
from benchmarks.suite import Row, Settings, run_case  # noqa: E402
from benchmarks.systems import ISOLATED_LIBRARIES, isolated_environment  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_threads(text: str) -> list:
    """'1,2' or '1,all' -> distinct positive thread counts, in order."""
    out = []
    for item in text.split(","):
        item = item.strip().lower()
        n = machine.usable_cpus() if item == "all" else int(item)
        if n < 1:
            raise ValueError(f"thread counts must be positive, got {n}")
        if n not in out:
            out.append(n)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", default="1,all", help="comma-separated thread counts; 'all' = usable CPUs "
                                                      "(default 1,all)")
    p.add_argument("--only", default=None, help="comma-separated workload ids, e.g. W1,W4")
    p.add_argument("--quick", action="store_true", help="small sizes and 3 repeats (a smoke run)")
    p.add_argument("--repeat", type=int, default=None, help="timed repeats per system (default 7; quick 3)")
    p.add_argument("--json", metavar="PATH", help="write all rows and the machine description as JSON")
    p.add_argument("--markdown", metavar="PATH", help="write the tables as markdown (benchmarks/RESULTS.md)")
    p.add_argument("--no-isolated", action="store_true", help="skip the subprocess peers (jax, tensorflow)")
    p.add_argument("--note", help="a line about the conditions of this run, kept in the markdown")
    p.add_argument("--from-json", metavar="PATH", help="re-render the results of an earlier --json run "
                                                      "(no measuring)")
    return p


@contextlib.contextmanager
def blas_threads(n: int):
    """Limit numpy's BLAS (and OpenMP) pools to n threads when threadpoolctl is installed."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(limits=n):
        yield


def isolated_rows(workloads: list, threads: list, args, settings: Settings) -> list:
    """Rows of the isolated systems: one worker process per library and thread count."""
    if args.no_isolated:
        return []
    rows = []
    for library in ISOLATED_LIBRARIES:
        if importlib.util.find_spec(library) is None:
            rows.append(Row(workloads[0], "(all cases)", library, threads[0], status="skipped",
                            note=f"not installed ({library})"))
            print(f"{library}: not installed, skipped", flush=True)
            continue
        for i, n in enumerate(threads):
            rows += _worker_rows(library, n, i == 0, workloads, args, settings)
    return rows


def _worker_rows(library: str, threads: int, first: bool, workloads: list, args, settings: Settings) -> list:
    cmd = [sys.executable, "-m", "benchmarks.worker", "--library", library, "--threads", str(threads),
           "--only", ",".join(workloads), "--repeat", str(settings.repeat), "--min-sample", str(settings.min_sample_s)]
    cmd += ["--quick"] * args.quick + ["--first"] * first
    env = isolated_environment(library, threads)
    env["PYTHONPATH"] = os.pathsep.join([REPO_ROOT] + [p for p in [env.get("PYTHONPATH")] if p])
    print(f"[running {library} at {threads} thread(s) in a worker process]", file=sys.stderr, flush=True)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        tail = done.stderr.strip().splitlines()
        return [Row(workloads[0], "(all cases)", library, threads, status="error",
                    note=f"worker failed: {tail[-1] if tail else done.returncode}")]
    return [Row(**r) for r in json.loads(done.stdout.strip().splitlines()[-1])]


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        workloads = select(args.only)
        threads = parse_threads(args.threads)
    except ValueError as exc:
        print(f"benchmarks: error: {exc}", file=sys.stderr)
        return 2
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        rows = [Row(**r) for r in saved["rows"]]
        info, settings_text = saved["machine"], saved["settings"]
    else:
        rows, info, settings_text = run_suite(workloads, threads, args)
    if args.note:
        info["note"] = args.note
    summary = goals.markdown_goals(rows)
    if summary:
        print("Targets (ratios within this run):\n" + summary, flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "settings": settings_text, "rows": [r.as_dict() for r in rows]}, f, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(tables.markdown_document(rows, info, settings_text, TITLES, summary))
    return 0


def run_suite(workloads: list, threads: list, args) -> tuple[list, dict, str]:
    """Run and print every case; returns (rows, machine description, method text)."""
    settings = Settings(args.repeat or (3 if args.quick else 7), 0.005 if args.quick else 0.02,
                        0.0 if args.quick else Settings.settle_s)
    info = machine.describe()
    info["command"] = " ".join(["python -m benchmarks"] + sys.argv[1:])
    print(f"{info['cpu']}; {info['usable_cpus']} usable CPUs; threads {threads}; "
          f"{settings.repeat} repeats{' (quick)' if args.quick else ''}\n", flush=True)
    others = isolated_rows(workloads, threads, args, settings)
    rows: list = []
    for workload in workloads:
        for case in WORKLOADS[workload](args.quick):
            case_rows = []
            for n in (threads if case.per_thread else threads[:1]):
                local = [s for s in case.systems if not s.isolated]
                with blas_threads(n):
                    case_rows += run_case(case, local, n, settings)
                case_rows += [r for r in others if r.case == case.title and r.threads == n]
            rows += case_rows
            print(tables.text_table(f"{workload}: {case.title}", case_rows, rows, tables.machine_limits(rows)),
                  flush=True)
    rows += [r for r in others if r.case == "(all cases)"]
    settings_text = (f"median of {settings.repeat} timed repeats after warm-up (compilation included in the "
                     "warm-up); graphflow's opt levels alternate sample by sample (fused vs unfused in one process), "
                     f"each sample (each block, for other systems) after {settings.settle_s:g} s of untimed calls of "
                     "the same system, so that the previous system's still-spinning threads do not slow it, "
                     "each other system is timed in its own block; outputs checked against numpy first; "
                     f"threads {threads}" + ("; QUICK sizes" if args.quick else ""))
    return rows, info, settings_text

if __name__ == "__main__":
    sys.exit(main())
