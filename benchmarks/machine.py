"""What the results were measured on: CPU model, cores, memory, library versions, date."""
from __future__ import annotations

import datetime
import os
import platform
import sys
from importlib import metadata

LIBRARIES = ("graphflow", "numpy", "llvmlite", "networkx", "numexpr", "numba", "onnxruntime", "onnx", "torch",
             "jax", "jaxlib", "tensorflow", "tensorflow-cpu", "scikit-learn", "threadpoolctl")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 2 ** 20
    except OSError:
        pass
    return None


def usable_cpus() -> int:
    """CPUs this process may run on (affinity), which is what 'all threads' means here."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def versions() -> dict:
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def describe() -> dict:
    memory = memory_gib()
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "memory": f"{memory:.1f} GiB" if memory else "unknown",
        "platform": platform.platform(),
        "versions": versions(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
    }
