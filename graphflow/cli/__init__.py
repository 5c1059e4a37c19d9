"""The `graphflow` command: `graphflow compile MODEL.py` and `graphflow bench MODEL.py`.

A thin layer over `gf.compile` and `Session`. Bad input (a missing file, a script that
raises, nothing to compile, an unknown fetch name, an invalid option) is reported as one
line on stderr with exit status 2; `--debug` adds the traceback.
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback

from .script import UsageError

EXIT_USAGE = 2
EXIT_INTERNAL = 1

SCRIPT_HELP = ("a Python script defining a module-level `model` (gf.keras) or `outputs` (tensor or list, "
               "optional `inputs`); it runs with __name__ != '__main__', so code under "
               "`if __name__ == '__main__':` (training, say) is skipped")


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line and exit status 2, like every other bad input."""

    def error(self, message: str):
        self.exit(EXIT_USAGE, f"graphflow: error: {message} (see '{self.prog} --help')\n")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("script", metavar="MODEL.py", help=SCRIPT_HELP)
    common.add_argument("--fetch", metavar="NAME", nargs="+", action="extend",
                        help="tensor or op names to compute instead of the script's model/outputs")
    common.add_argument("--debug", action="store_true", help="show tracebacks for errors")

    parser = _Parser(prog="graphflow", description="Compile and benchmark graphflow graphs.")
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"graphflow {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    compile_parser = commands.add_parser(
        "compile", parents=[common], help="compile a script's graph and print what the compiler did",
        description="Compile the graph a script defines and print the report: ops before/after each pass, "
                    "each fused kernel with its ops, why each other op stayed unfused, peak memory, "
                    "compile time per stage.")
    compile_parser.add_argument("--opt-level", type=int, choices=(0, 1, 2), default=2,
                                help="0: prune only, 1: + graph passes, 2: + fusion and LLVM kernels (default)")
    compile_parser.add_argument("--output-dir", metavar="DIR",
                                help="also write graph.json, kernels.ll, graph.dot and report.html here")
    compile_parser.add_argument("--format", choices=("text", "json"), default="text", help="report format")
    compile_parser.set_defaults(run="compile")

    bench_parser = commands.add_parser(
        "bench", parents=[common], help="time the graph unfused (opt 0), optimized (1) and fused (2)",
        description="Run the same graph at opt_level 0, 1 and 2 in alternation on random inputs of the declared "
                    "shapes; print median times, spread, speedups and the largest output difference.")
    bench_parser.add_argument("--batch", type=int, default=32, help="size of None dimensions (default 32)")
    bench_parser.add_argument("--repeat", type=int, default=20, help="timed calls per level (default 20)")
    bench_parser.add_argument("--threads", type=int, default=None, help="Session num_threads (default: all)")
    bench_parser.add_argument("--json", action="store_true", help="print the results as JSON")
    bench_parser.set_defaults(run="bench")
    return parser


def main(argv=None) -> int:
    """Entry point of the `graphflow` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        if args.run == "compile":
            from . import compile_cmd as command
        else:
            from . import bench_cmd as command
        return command.run(args)
    except UsageError as exc:
        if args.debug:
            traceback.print_exception(exc)
        print(f"graphflow: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `graphflow compile ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        print("graphflow: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a graphflow bug: still one line unless --debug
        if args.debug:
            raise
        first = str(exc).strip().splitlines()
        print(f"graphflow: internal error: {type(exc).__name__}: {first[0] if first else ''} "
              "(rerun with --debug for the traceback)", file=sys.stderr)
        return EXIT_INTERNAL
