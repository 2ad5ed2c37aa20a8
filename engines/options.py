"""ONNX Runtime session options, set in this one place for the whole station.

Measured on small U-Nets on a 2-core CPU: one intra-op thread per physical core (hyper-threads
only contend for the same FPU), a single inter-op thread with sequential execution (a U-Net is a
chain; parallel branches buy nothing and the extra pool steals cores from the camera thread), and
every graph optimisation (fusions of conv + activation, constant folding), and worker threads
that sleep rather than spin when idle.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

THREADS_ENV = "INSPECTION_ORT_THREADS"


def physical_cores() -> int:
    """Physical cores this process may run on (Linux sysfs topology; falls back to cpu_count)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        topo = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topo / "physical_package_id").read_text().strip()
            core = (topo / "core_id").read_text().strip()
        except OSError:
            return max(1, len(cpus))
        cores.add((package, core))
    return max(1, len(cores))


def ort_threads(threads: int | None = None) -> int:
    """Intra-op thread count: ``threads`` if given, else ``$INSPECTION_ORT_THREADS``, else cores.

    Raises
    ------
    ValueError
        When the environment variable is set but not a positive integer (a typo there should
        not silently fall back to a different speed).
    """
    if threads is not None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, not {threads}")
        return threads
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"{THREADS_ENV}={env!r} is not a positive integer")
        return value
    return physical_cores()


def ort_session_options(threads: int | None = None) -> Any:
    """A fresh ``onnxruntime.SessionOptions`` with the station's settings.

    Parameters
    ----------
    threads
        Intra-op threads; default from :func:`ort_threads`.

    Returns
    -------
    onnxruntime.SessionOptions
    """
    import onnxruntime as ort  # imported here: engines must import without the backend present

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = ort_threads(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle intra-op workers sleep instead of spinning: the station shares its cores with the
    # acquisition and GUI threads, and on this 2-core machine under load, spinning made 2-thread
    # inference 1.5x slower (11.0 vs 7.1 ms per 128x128 tile of the demo model).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # errors only: warnings about unused initialisers are noise here
    return opts
