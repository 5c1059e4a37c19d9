"""How many threads a Session uses, and why."""
from __future__ import annotations

import os


def available_cpus() -> tuple[int, str]:
    """CPUs this process may use: affinity mask, capped by a cgroup CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
        why = f"{n} CPUs in this process's affinity mask"
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
        why = f"{n} CPUs reported by the OS"
    quota = _cgroup_quota()
    if quota is not None and quota < n:
        n = quota
        why += f", capped to {quota} by the cgroup CPU quota"
    return max(n, 1), why


def _cgroup_quota() -> int | None:
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:
            q, period = f.read().split()[:2]
        if q != "max":
            return max(1, int(int(q) // int(period)))
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as f:
            q = int(f.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as f:
            period = int(f.read())
        if q > 0:
            return max(1, q // period)
    except (OSError, ValueError):
        pass
    return None


def resolve_num_threads(requested: int | None) -> tuple[int, str]:
    """(threads, reason): the argument, else GRAPHFLOW_NUM_THREADS, else the usable CPUs."""
    if requested is not None:
        if not isinstance(requested, int) or requested < 1:
            raise ValueError(f"num_threads must be a positive int or None, got {requested!r}")
        return requested, "num_threads argument"
    env = os.environ.get("GRAPHFLOW_NUM_THREADS")
    if env:
        try:
            n = int(env)
            if n < 1:
                raise ValueError
        except ValueError:
            raise ValueError(f"GRAPHFLOW_NUM_THREADS must be a positive integer, got {env!r}") from None
        return n, "GRAPHFLOW_NUM_THREADS"
    return available_cpus()


class ThreadBudget:
    """The threads one Session may use. Kernels split work through `parallel_for`.

    This is the contract fused kernels code against: `parallel_for(fn, total, grain)`
    calls fn(start, end) over disjoint ranges covering [0, total), each at least `grain`
    long (except possibly the last), and returns when all calls are done.
    """

    def __init__(self, num_threads: int = 1):
        self.num_threads = num_threads

    def parallel_for(self, fn, total: int, grain: int) -> None:
        if total > 0:
            fn(0, total)


SERIAL = ThreadBudget(1)
