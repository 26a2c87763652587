"""The `pipeline` stage: data -> sft -> dpo -> eval -> elo -> report on this machine, skipping stages already up to
date, and printing the report's path at the end.

Training stages run under `torchrun --nproc-per-node <launcher.nproc_per_node>`; data, eval, elo and report run in
this process. Each child gets the same overrides (with run_dir made absolute), composes the same config, and checks
the run directory again itself, so a pipeline and a hand-run stage never disagree.
"""

from __future__ import annotations

import importlib
import signal
import subprocess
import sys
import time

from omegaconf import DictConfig

from med42_train.config import (
    STAGES, ConfigError, dpo_gradient_accumulation, planned_world_size, sft_gradient_accumulation,
)
from med42_train.runtime.log import get_logger
from med42_train.runtime.preemption import PREEMPTION_SIGNALS, Preempted, stopped_by_signal
from med42_train.runtime.rundir import is_up_to_date, stage_dir
from med42_train.stages import STAGE_MODULES

log = get_logger()
DISTRIBUTED_STAGES = ("sft", "dpo")
# torchrun forwards these to its workers (which save a checkpoint at the next step and exit 75).
TORCHRUN_SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")


class StageFailedError(RuntimeError):
    """A stage's process exited non-zero; its own output above says why."""


def run(cfg: DictConfig, overrides: list[str], dry_run: bool = False) -> None:
    if cfg.launcher.name == "slurm":  # the same stages as a chain of sbatch jobs
        from med42_train.launch.slurm import submit

        submit(cfg, dry_run=dry_run)
        return
    if cfg.launcher.name != "local" or cfg.launcher.nnodes != 1:
        raise ConfigError(f"launcher.name={cfg.launcher.name!r}, launcher.nnodes={cfg.launcher.nnodes}: "
                          "`med42 pipeline` runs on this machine with launcher=local (one node); for several "
                          "nodes use launcher=slurm (scripts/slurm/README.md)")
    if dry_run:
        raise ConfigError("--dry-run with `med42 pipeline` renders the Slurm jobs: pass launcher=slurm")
    check_batches(cfg)
    timings = {}
    for stage in STAGES:
        module = importlib.import_module(STAGE_MODULES[stage])
        if is_up_to_date(cfg, stage, module.stage_inputs(cfg)):
            log.info("[pipeline] %s: COMPLETE with the same config and inputs, skipped", stage)
            continue
        log.info("[pipeline] %s: running", stage)
        started = time.time()
        if stage in DISTRIBUTED_STAGES:
            _torchrun(cfg, stage, overrides)
        else:
            module.run(cfg)
        timings[stage] = round(time.time() - started, 1)
    log.info("[pipeline] done in %.1f s; per stage: %s", sum(timings.values()), timings or "(all skipped)")
    report = stage_dir(cfg, "report") / "report.html"
    if report.is_file():
        print(f"report: {report}")


def check_batches(cfg: DictConfig) -> None:
    """The SFT and DPO batches must split over the launcher's world size: better refused now than after the data
    stage (or after SFT)."""
    sft_gradient_accumulation(cfg, planned_world_size(cfg, "sft"))
    dpo_gradient_accumulation(cfg, planned_world_size(cfg, "dpo"))


def torchrun_command(cfg: DictConfig, stage: str, overrides: list[str]) -> list[str]:
    forwarded = [o for o in overrides if not o.lstrip("+~").startswith("run_dir=")] + [f"run_dir={cfg.run_dir}"]
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={cfg.launcher.nproc_per_node}"]
    # torchrun forwards SIGTERM and SIGUSR1 to the workers (which save a checkpoint at the next step and exit)
    # and gives them preemption_grace_s before SIGKILL; by default it would kill them after 30 s.
    command += [f"--signals-to-handle={','.join(TORCHRUN_SIGNALS)}",
                f"--shutdown-timeout={cfg.launcher.preemption_grace_s}"]
    # --standalone: a private rendezvous on a free port, so concurrent runs on one machine never collide.
    return command + ["--standalone", "-m", "med42_train", stage, *forwarded]


def _torchrun(cfg: DictConfig, stage: str, overrides: list[str]) -> None:
    command = torchrun_command(cfg, stage, overrides)
    log.info("[pipeline] %s", " ".join(command))
    launched_at = time.time()
    process = subprocess.Popen(command)
    # A signal to the pipeline (Slurm, a user's kill) goes on to torchrun, and through it to the workers.
    previous = {signum: signal.signal(signum, lambda signum, _: process.send_signal(signum))
                for signum in PREEMPTION_SIGNALS}
    try:
        returncode = process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    marker = stopped_by_signal(stage_dir(cfg, stage), launched_at) if returncode != 0 else None
    if marker is not None:
        raise Preempted(f"stage {stage} saved a checkpoint and stopped ({marker.read_text()}); run the pipeline "
                        "again to resume")
    if returncode != 0:
        raise StageFailedError(f"stage {stage} exited with code {returncode} (command: {' '.join(command)})")
