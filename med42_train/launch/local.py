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

from med42_train.config import STAGES, ConfigError, dpo_gradient_accumulation, sft_gradient_accumulation
from med42_train.runtime.log import get_logger
from med42_train.runtime.preemption import PREEMPTED_MARKER, PREEMPTION_SIGNALS, Preempted
from med42_train.runtime.rundir import is_up_to_date, stage_dir
from med42_train.stages import STAGE_MODULES

log = get_logger()
DISTRIBUTED_STAGES = ("sft", "dpo")


class StageFailedError(RuntimeError):
    """A stage's process exited non-zero; its own output above says why."""


def run(cfg: DictConfig, overrides: list[str]) -> None:
    if cfg.launcher.name != "local" or cfg.launcher.nnodes != 1:
        raise ConfigError(f"launcher.name={cfg.launcher.name!r}, launcher.nnodes={cfg.launcher.nnodes}: "
                          "`med42 pipeline` runs on this machine; pass launcher=local (one node), or for "
                          "several nodes launch the stages under Slurm (scripts/slurm/README.md)")
    # The SFT and DPO batches must split over the launcher's world size: better refused now than after the data
    # stage (or after SFT).
    sft_gradient_accumulation(cfg, cfg.launcher.nnodes * cfg.launcher.nproc_per_node)
    dpo_gradient_accumulation(cfg, (cfg.dpo.nnodes or cfg.launcher.nnodes) * cfg.launcher.nproc_per_node)
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


def torchrun_command(cfg: DictConfig, stage: str, overrides: list[str]) -> list[str]:
    forwarded = [o for o in overrides if not o.lstrip("+~").startswith("run_dir=")] + [f"run_dir={cfg.run_dir}"]
    command = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={cfg.launcher.nproc_per_node}"]
    # torchrun forwards SIGTERM and SIGUSR1 to the workers (which save a checkpoint at the next step and exit)
    # and gives them preemption_grace_s before SIGKILL; by default it would kill them after 30 s.
    signals = ",".join(["SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1"])
    command += [f"--signals-to-handle={signals}", f"--shutdown-timeout={cfg.launcher.preemption_grace_s}"]
    # --standalone: a private rendezvous on a free port, so concurrent runs on one machine never collide.
    return command + ["--standalone", "-m", "med42_train", stage, *forwarded]


def _torchrun(cfg: DictConfig, stage: str, overrides: list[str]) -> None:
    command = torchrun_command(cfg, stage, overrides)
    log.info("[pipeline] %s", " ".join(command))
    marker = stage_dir(cfg, stage) / PREEMPTED_MARKER
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
    if returncode != 0 and marker.is_file() and marker.stat().st_mtime >= launched_at:
        raise Preempted(f"stage {stage} saved a checkpoint and stopped ({marker.read_text()}); run the pipeline "
                        "again to resume")
    if returncode != 0:
        raise StageFailedError(f"stage {stage} exited with code {returncode} (command: {' '.join(command)})")
