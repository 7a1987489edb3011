"""Shared helpers of the benchmark scripts: thread pinning, machine description, timing and tables.

Not part of the ``pde_lab`` package; the scripts in this folder import it from their own directory.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from typing import Callable, Sequence


def pin_threads(threads: int) -> None:
    """Limit BLAS/OpenMP and torch to ``threads`` threads. Call before heavy imports where possible."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, str(threads))
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(threads)
    except RuntimeError:  # already set in this process
        pass


def checked_device(parser, name: str) -> str:
    """``name`` as a torch device string (``auto`` resolved), or the parser's one-line error (exit 2)
    for a device torch does not know or CUDA asked for without a GPU."""
    from pde_lab.errors import UserError
    from pde_lab.training.config import resolve_device

    try:
        return str(resolve_device(name))
    except UserError as err:
        parser.error(f"--device: {err}")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_lines(device: str = "cpu", extra: Sequence[tuple[str, str]] = ()) -> list[str]:
    """One line per fact about the machine and the software the timings depend on."""
    import numpy
    import torch

    lines = [
        f"machine: {platform.node()}  nproc={os.cpu_count()}  cpu={cpu_model()}",
        f"python {platform.python_version()}  torch {torch.__version__}  numpy {numpy.__version__}  "
        f"torch threads={torch.get_num_threads()}  OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}",
    ]
    if device.startswith("cuda") and torch.cuda.is_available():
        lines.append(f"gpu: {torch.cuda.get_device_name(torch.device(device))}  cuda {torch.version.cuda}")
    for k, v in extra:
        lines.append(f"{k}: {v}")
    return lines


def sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize(device)


def time_calls(fn: Callable[[], object], n: int, device: str = "cpu", cpu: list | None = None) -> list[float]:
    """Wall seconds of ``n`` calls of ``fn``, each timed alone (synchronising a CUDA device).

    When ``cpu`` is a list, the process CPU seconds of each call are appended to it: on a machine
    shared with other jobs a single-threaded call's CPU time is far steadier than its wall time.
    """
    out = []
    for _ in range(n):
        sync(device)
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t0)
        if cpu is not None:
            cpu.append(time.process_time() - c0)
    return out


class Clock:
    """Wall and process-CPU time since creation (or the last ``lap``)."""

    def __init__(self):
        self.t, self.c = time.perf_counter(), time.process_time()

    def lap(self) -> tuple[float, float]:
        t, c = time.perf_counter(), time.process_time()
        out = (t - self.t, c - self.c)
        self.t, self.c = t, c
        return out


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def iqr(xs: Sequence[float]) -> tuple[float, float]:
    """(25th, 75th) percentiles."""
    q = statistics.quantiles(xs, n=4, method="inclusive") if len(xs) > 1 else [xs[0]] * 3
    return q[0], q[2]


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table (also readable as plain text)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    fmt = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([fmt(cells[0]), sep] + [fmt(r) for r in cells[1:]])


def ratio_txt(r: float) -> str:
    """A speed ratio with two significant digits below 10 (``0.46x``, ``3.1x``), whole numbers above."""
    return f"{r:.0f}x" if r >= 10 else f"{r:.2g}x"


def check_refines(parser, n: int, n_stored: int, case: str) -> None:
    """Refuse (``parser.error``, exit 2) a py-pde grid ``n`` that is not a multiple of the stored grid:
    the solution is read back on the stored points by striding, so ``n`` must refine them exactly."""
    if n < n_stored or n % n_stored:
        parser.error(f"--N must be a multiple of the {n_stored} stored points of case {case!r}, got {n}")
