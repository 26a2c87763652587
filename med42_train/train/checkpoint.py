"""Checkpoints a run can trust: written atomically, marked COMPLETE, kept last-k, resumed only when whole.

Layout under <stage>/checkpoints/:
    .staging/checkpoint-N/   the HF Trainer writes here (sharded DCP model + optimizer, scheduler, RNG per rank,
                             trainer_state.json with the data position)
    checkpoint-N/            renamed into place by rank 0 once every rank has finished writing, then
    checkpoint-N/COMPLETE    JSON {global_step, world_size}, written last.
A checkpoint without COMPLETE is never resumed from. Resuming onto another world size is refused: DCP could
reshard the weights and optimizer, but the per-rank RNG states and the data position belong to the old layout.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Optional

from transformers import TrainerCallback

from med42_train.runtime.dist import barrier, dist_info
from med42_train.runtime.log import get_logger
from med42_train.runtime.preemption import PreemptionFlag, injected_fault
from med42_train.runtime.rundir import StageInputError

log = get_logger()

COMPLETE_MARKER = "COMPLETE"
STAGING = ".staging"
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


class CheckpointMismatchError(StageInputError):
    """The newest complete checkpoint was written with another world size."""


def complete_checkpoints(root: Path) -> list[tuple[int, Path]]:
    """(global_step, path) of every checkpoint under root that carries its COMPLETE marker, oldest first."""
    found = []
    for path in root.glob("checkpoint-*") if root.is_dir() else []:
        match = _CHECKPOINT_NAME.match(path.name)
        if match and (path / COMPLETE_MARKER).is_file():
            found.append((int(match.group(1)), path))
    return sorted(found)


def resume_checkpoint(root: Path) -> Optional[str]:
    """The newest complete checkpoint to resume from, refusing one written with another world size."""
    checkpoints = complete_checkpoints(root)
    if not checkpoints:
        return None
    step, path = checkpoints[-1]
    marker = json.loads((path / COMPLETE_MARKER).read_text())
    world_size = dist_info().world_size
    if marker["world_size"] != world_size:
        raise CheckpointMismatchError(
            f"{path} was written by {marker['world_size']} ranks and this run has {world_size}: its RNG states "
            f"and data position are per rank. Resume with the same number of processes "
            f"(launcher.nnodes x launcher.nproc_per_node = {marker['world_size']}), or restart the stage from "
            f"scratch with overwrite=true (the checkpoints are then discarded)")
    log.info("resuming from %s (step %d)", path, step)
    return str(path)


class AtomicCheckpointMixin:
    """For HF Trainer subclasses: every checkpoint goes through staging -> rename -> COMPLETE -> keep last k."""

    _staging_root: Optional[str] = None

    def _get_output_dir(self, trial):  # the Trainer asks this for the folder it saves checkpoint-N into
        return self._staging_root or super()._get_output_dir(trial)

    def _save_checkpoint(self, model, trial) -> None:
        root = Path(super()._get_output_dir(trial))
        staging = root / STAGING
        if dist_info().is_main:
            shutil.rmtree(staging, ignore_errors=True)  # debris of a save interrupted by a crash
        barrier()
        self._staging_root = str(staging)
        try:
            super()._save_checkpoint(model, trial)
        finally:
            self._staging_root = None
        barrier()  # every rank's shards and RNG state are on disk
        if dist_info().is_main:
            _publish(staging / f"checkpoint-{self.state.global_step}", root, self.state.global_step)
            _keep_last(root, self.args.save_total_limit)
        barrier()


def _publish(staged: Path, root: Path, global_step: int) -> None:
    final = root / staged.name
    shutil.rmtree(final, ignore_errors=True)  # an older attempt's folder for this step, never marked complete
    os.replace(staged, final)
    marker = {"global_step": global_step, "world_size": dist_info().world_size}
    temporary = final / f".{COMPLETE_MARKER}.tmp"
    temporary.write_text(json.dumps(marker))
    os.replace(temporary, final / COMPLETE_MARKER)
    log.info("checkpoint %s complete", final)


def _keep_last(root: Path, keep: Optional[int]) -> None:
    """Delete all but the newest `keep` complete checkpoints, and any incomplete folder older than them."""
    checkpoints = complete_checkpoints(root)
    if not keep or not checkpoints:
        return
    kept = {path for _, path in checkpoints[-keep:]}
    oldest_kept_step = checkpoints[-keep:][0][0]
    for path in root.glob("checkpoint-*"):
        match = _CHECKPOINT_NAME.match(path.name)
        if path not in kept and match and int(match.group(1)) < oldest_kept_step:
            shutil.rmtree(path, ignore_errors=True)


class PreemptionCallback(TrainerCallback):
    """At each optimizer step boundary, all ranks agree on a pending SIGTERM/SIGUSR1; if any, save and stop."""

    def __init__(self, flag: PreemptionFlag) -> None:
        self.flag = flag
        self.stopped_at_step: Optional[int] = None
        self._fault = injected_fault(dist_info().rank)

    def on_step_end(self, args, state, control, **kwargs):
        if self._fault and state.global_step == self._fault[1]:
            os.kill(os.getpid(), self._fault[0])
        if self.flag.agreed():
            log.warning("preemption signal (%s on some rank) at step %d: saving a checkpoint, then exiting",
                        self.flag.signal_name or "received elsewhere", state.global_step)
            self.stopped_at_step = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control


def install_preemption() -> PreemptionCallback:
    """Catch SIGTERM/SIGUSR1 from now on (before the model loads, so an early signal is not lost)."""
    return PreemptionCallback(PreemptionFlag().install())

