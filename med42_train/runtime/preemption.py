"""Preemption: SIGTERM, SIGUSR1 or SIGUSR2 (what Slurm sends before a time limit or a requeue) asks the job to stop.

The handler only sets a flag; nothing is saved inside a signal handler. At the next step boundary every rank
reports its flag in one all-reduce (MAX), so a signal that reached a single rank stops all of them at the same
step: they save one complete checkpoint together and exit with PREEMPTED_EXIT_CODE, and the next start resumes.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Optional

import torch
import torch.distributed as torch_dist

from med42_train.runtime.log import get_logger

log = get_logger()

# sysexits' EX_TEMPFAIL, "try again later": not a failure of the code or the data. The Slurm script requeues on it.
PREEMPTED_EXIT_CODE = 75
# USR2 too: launcher.preemption_signal may pick it (submitit's choice, as NCCL can catch USR1).
PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
PREEMPTED_MARKER = "PREEMPTED"  # <stage>/PREEMPTED: {global_step, signal} of the last signal-stop
# Test-only fault injection: "SIGTERM@3" makes rank 1 (or "SIGTERM@3:rank0") signal itself after step 3, so a
# test can preempt at an exact step through the real signal path.
FAULT_INJECTION_ENV = "MED42_FAULT_INJECT_SIGNAL"


class Preempted(RuntimeError):
    """Training stopped on a preemption signal after saving a complete checkpoint; run the stage again."""


def stopped_by_signal(stage_dir: Path, since_s: float) -> Optional[Path]:
    """The PREEMPTED marker a stage (or one of its rounds, dpo/iter_<k>/) wrote at or after `since_s`, if any.

    Launchers need it because a bare torchrun whose workers all exit 75 itself exits 1: the marker, newer than
    the launch, is what tells a signal-stop (requeue) from a crash (fail).
    """
    candidates = [stage_dir / PREEMPTED_MARKER, *stage_dir.glob(f"*/{PREEMPTED_MARKER}")]
    fresh = [path for path in candidates if path.is_file() and path.stat().st_mtime >= since_s]
    return max(fresh, key=lambda path: path.stat().st_mtime) if fresh else None


def launcher_exit_code(returncode: int, stage_dir: Path, since_s: float) -> int:
    """PREEMPTED_EXIT_CODE when a failed launch stopped on a signal after checkpointing, else its own code."""
    if returncode != 0 and stopped_by_signal(stage_dir, since_s) is not None:
        return PREEMPTED_EXIT_CODE
    return returncode


class PreemptionFlag:
    """Set by SIGTERM/SIGUSR1/SIGUSR2 on this rank; `agreed()` tells whether any rank has it set."""

    def __init__(self) -> None:
        self.signal_name: Optional[str] = None

    def install(self) -> "PreemptionFlag":
        for signum in PREEMPTION_SIGNALS:
            signal.signal(signum, self._handle)
        return self

    def _handle(self, signum: int, frame) -> None:  # noqa: ARG002 - the signal module's signature
        self.signal_name = signal.Signals(signum).name

    def agreed(self) -> bool:
        """True on every rank when any rank received a signal (a collective: call it on all ranks together)."""
        local = torch.tensor([1 if self.signal_name else 0], dtype=torch.int32, device=_collective_device())
        if torch_dist.is_initialized():
            torch_dist.all_reduce(local, op=torch_dist.ReduceOp.MAX)
        return bool(local.item())


def _collective_device() -> torch.device:
    if torch_dist.is_initialized() and torch_dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def injected_fault(rank: int) -> Optional[tuple[signal.Signals, int]]:
    """(signal, after_step) when the fault-injection variable targets this rank, else None."""
    spec = os.environ.get(FAULT_INJECTION_ENV)
    if not spec:
        return None
    signal_and_step, _, target = spec.partition(":")
    name, _, step = signal_and_step.partition("@")
    if rank != int((target or "rank1").removeprefix("rank")):
        return None
    return signal.Signals[name], int(step)
