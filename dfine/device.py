"""The ``-d/--device`` of every command and of :class:`~dfine.Detector`: ``cpu``, ``cuda`` or
``cuda:N``, checked before anything is built, so a GPU command run on a machine without one ends in
one line instead of a CUDA traceback from deep inside a training step."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

from dfine.errors import DfineError

if TYPE_CHECKING:
    import torch

__all__ = ["resolve_device", "busy_cpu_note", "others_running", "waits_passively", "SlowdownWatch"]


def resolve_device(device: Optional[str]) -> torch.device:
    """``device`` as a torch device; empty or ``None``: CUDA when available, else the CPU. A
    one-line :class:`DfineError` for a name torch does not know, a kind other than CPU and CUDA
    (not tested here), and a CUDA device this machine does not have."""
    import torch  # here: the other functions serve callers that never load torch (an ONNX Detector)

    if not device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise DfineError(f"unknown device {device!r}: use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        return dev
    if dev.type != "cuda":
        raise DfineError(f"device {device!r} is not supported: use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        why = "this PyTorch is built without CUDA" if torch.version.cuda is None else "no NVIDIA GPU or driver found"
        raise DfineError(f"device {device} asked for but CUDA is not available here ({why}); use -d cpu "
                         f"(Python: device='cpu')")
    count = torch.cuda.device_count()
    if dev.index is not None and dev.index >= count:
        raise DfineError(f"device {device} asked for but this machine has {count} CUDA "
                         f"{'device' if count == 1 else 'devices'} (cuda:0..cuda:{count - 1})")
    return dev


def waits_passively() -> bool:
    """Whether ``OMP_WAIT_POLICY=PASSIVE`` is set: waiting OpenMP threads sleep instead of spinning
    (torch follows it; :class:`~dfine.Detector` then turns ONNX Runtime's spinning off too)."""
    return os.environ.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


def busy_cpu_note(what: str, python: bool = False) -> Optional[str]:
    """A note when other jobs keep this machine's cores busy (load average above half the cores),
    else None: torch's OpenMP threads then spin while they wait, and ``what`` (the timings, the
    training steps) runs many times slower than on an idle machine (a walk: 15-50x, steps of 5-20 s
    instead of 0.4 s), not twice as slow. ``python``: advice in a Python caller's words (``threads=1``; the
    variable set before Python starts, as a running notebook cannot set it for torch)."""
    average, cores = os.getloadavg()[0], os.cpu_count() or 1
    if average <= 0.5 * cores or waits_passively() or others_running() == 0:
        return None
    where, fewer = ("set before Python starts", "threads=1") if python else ("in the environment", "--threads 1")
    return (f"note: load average {average:.1f} on {cores} cores: other jobs share this CPU, so {what} run many times "
            f"slower than on an idle machine; with OMP_WAIT_POLICY=PASSIVE {where} (or fewer threads: "
            f"{fewer}) waiting threads sleep instead of spinning, much faster on a busy machine (README, Deploy)")


class SlowdownWatch:
    """Watches the seconds of repeated work (training steps) for the moment other jobs take the CPU:
    :meth:`observe` returns :func:`busy_cpu_note` once, when the median of the last ``recent`` steps
    is ``factor`` times the fastest such median seen and the machine is busy. A walk's steps went from
    1 s to 15-19 s while another job ran, and it blamed the precision: the note at the start had
    found the machine idle. Multi-scale sizes move a step by under 2x, below ``factor``."""

    def __init__(self, what: str, factor: float = 4.0, recent: int = 3, python: bool = False) -> None:
        self.what, self.factor, self.recent, self.python = what, factor, recent, python
        self.seconds: List[float] = []
        self.fastest: Optional[float] = None
        self.said = False
        self.clock = time.perf_counter
        self.began = 0.0

    def start(self) -> None:
        """A step begins."""
        self.began = self.clock()

    def stop(self) -> Optional[str]:
        """The step that :meth:`start` began has ended: :meth:`observe` of its seconds."""
        return self.observe(self.clock() - self.began)

    def observe(self, seconds: float) -> Optional[str]:
        """Record one step of ``seconds``; the note the first time the steps slowed on a busy CPU."""
        self.seconds = (self.seconds + [seconds])[-self.recent:]
        if len(self.seconds) < self.recent or self.said:
            return None
        median = statistics.median(self.seconds)
        if self.fastest is None or median < self.fastest:
            self.fastest = median
            return None
        if median < self.factor * self.fastest:
            return None
        note = busy_cpu_note(self.what, python=self.python)
        if note is None:
            return None
        self.said = True
        return (f"note: steps now take {median:.1f} s, {median / self.fastest:.0f}x the {self.fastest:.1f} s of "
                f"earlier ones; {note[len('note: '):]}")


def others_running() -> Optional[int]:
    """How many threads of other processes are running or ready to run now (Linux's
    ``/proc/loadavg`` count less this process's own running threads); ``None`` where that cannot be
    read. The load average is of the last minute: right after one's own run ended it still counted
    that run, and a walk was told that 'other jobs share this CPU' on an idle machine."""
    try:
        running = int(Path("/proc/loadavg").read_text().split()[3].split("/")[0])
        own = 0
        for task in Path("/proc/self/task").iterdir():
            stat = (task / "stat").read_text()
            own += stat[stat.rindex(")") + 2] == "R"
    except (OSError, ValueError, IndexError):
        return None
    return max(0, running - own)
