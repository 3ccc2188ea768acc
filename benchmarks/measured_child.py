"""A child process's wall time and peak memory, measured by a small parent that only starts it and waits.

Why a parent of its own: on Linux a child's peak RSS (ru_maxrss, from wait4 or getrusage) starts at the memory of
the process that started it (Python's subprocess uses vfork, and the exec records the parent's high-water mark as
the child's). A benchmark that built a 1M-item gallery and then timed a query child read the one-item query at the
builder's 2,838 MiB. Here every child is started by a fresh interpreter (`python -I -S -c SMALL_PARENT`: stdlib
only, about 10 MiB) that starts the command with posix_spawn, waits for it with wait4 and writes
{"wall_seconds", "peak_rss_mib", "exit_code"} as JSON to a pipe: the benchmark's own memory never reaches the child.

    from measured_child import measure
    run = measure([FVMATCH, "identify", "--face", photo, "-g", gallery])   # Measured(wall_seconds, peak_rss_mib, ...)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

# the small parent: argv = [REPORT_FD, COMMAND, ARGUMENTS...]; the command inherits stdin, stdout and stderr
SMALL_PARENT = """
import json, os, sys, time
report_fd, arguments = int(sys.argv[1]), sys.argv[2:]
began = time.perf_counter()
pid = os.posix_spawnp(arguments[0], arguments, os.environ)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - began
os.write(report_fd, json.dumps({"wall_seconds": wall, "peak_rss_mib": usage.ru_maxrss / 1024,
                                "exit_code": os.waitstatus_to_exitcode(status)}).encode())
"""


@dataclass(frozen=True)
class Measured:
    """One run of a command: wall seconds and peak RSS (MiB; Linux's ru_maxrss is in KiB) of the command's own
    process, its exit code, and its stdout and stderr when captured."""

    wall_seconds: float
    peak_rss_mib: float
    exit_code: int
    stdout: str | None = None
    stderr: str | None = None


def measure(arguments: list, *, capture: bool = True) -> Measured:
    """Run `arguments` as the child of a small fresh parent (see the module's docstring). capture: its stdout and
    stderr as text; otherwise both are discarded."""
    read_fd, write_fd = os.pipe()
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    try:
        parent = subprocess.run([sys.executable, "-I", "-S", "-c", SMALL_PARENT, str(write_fd), *map(str, arguments)],
                                pass_fds=(write_fd,), stdout=output, stderr=output, text=True)
    finally:
        os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        report = pipe.read()
    if parent.returncode != 0 or not report:
        raise RuntimeError(f"measuring {' '.join(map(str, arguments))} failed (its parent exited {parent.returncode})"
                           + (f": {parent.stderr.strip()[-2000:]}" if parent.stderr else ""))
    measured = json.loads(report)
    return Measured(measured["wall_seconds"], measured["peak_rss_mib"], measured["exit_code"], parent.stdout,
                    parent.stderr)


# Python to put at the top of a child's code: `workers_peak[0]` then holds the largest peak RSS (MiB) of the
# processes the child starts with multiprocessing (a video read in parts: fvmatch.analysis.video_parts), each read
# from its own VmHWM while it runs (getrusage's RUSAGE_CHILDREN would start at the child's own high-water mark)
WATCH_WORKERS = """
import multiprocessing, threading, time
workers_peak = [0.0]
def watch_workers():
    while True:
        for worker in multiprocessing.active_children():
            try:
                with open(f"/proc/{worker.pid}/status") as status:
                    for line in status:
                        if line.startswith("VmHWM:"):
                            workers_peak[0] = max(workers_peak[0], int(line.split()[1]) / 1024)
            except OSError:
                pass
        time.sleep(0.1)
threading.Thread(target=watch_workers, daemon=True).start()
"""
