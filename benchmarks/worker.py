"""Runs the isolated systems of one library (jax, tensorflow) for the selected workloads at
one thread count, in a process whose CPU affinity and flags were set before the library
was imported; prints the result rows as one JSON line. Started by run.py."""
from __future__ import annotations

import argparse
import json
import os

from .registry import WORKLOADS, select
from .suite import Settings, run_case


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.worker")
    parser.add_argument("--library", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--only", default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--min-sample", type=float, default=0.02)
    parser.add_argument("--first", action="store_true", help="also run cases measured at one thread count only")
    args = parser.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cpus[:args.threads])
    settings = Settings(args.repeat, args.min_sample)
    rows = []
    for workload in select(args.only):
        for case in WORKLOADS[workload](args.quick):
            isolated = [s for s in case.systems if s.isolated == args.library]
            if isolated and (case.per_thread or args.first):
                rows += run_case(case, isolated, args.threads, settings)
    print(json.dumps([r.as_dict() for r in rows]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
