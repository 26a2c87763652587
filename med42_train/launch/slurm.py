"""`med42 pipeline launcher=slurm`: every stage as an sbatch job, chained with --dependency=afterok.

At submit time the resolved config is frozen into <run_dir>/slurm/config.yaml and every job reads that file
(`med42 <stage> --config ...`), so an edited YAML cannot change a queued job. One job per stage of
config.STAGES, in order; the dpo stage is one job per round (`dpo.until_iteration=k`), so a round preempted
near its time limit requeues alone and a 70B round fits one allocation. Training stages (DISTRIBUTED_STAGES)
render scripts/slurm/gpu_stage.sbatch.j2 (srun one task per node -> torchrun), the others cpu_stage.sbatch.j2.
Stages already COMPLETE with this config are not submitted; a chain still queued refuses a second submit.
Layout: <run_dir>/slurm/{config.yaml, jobs.json, <job>.sbatch, logs/<job>-<id>.log, status/<job>.jsonl}.
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from med42_train.config import PROJECT_ROOT, STAGES, ConfigError, planned_world_size, stage_config_hash
from med42_train.launch.local import DISTRIBUTED_STAGES, TORCHRUN_SIGNALS, check_batches
from med42_train.runtime.rundir import (
    COMPLETE, StageConflictError, StageInputError, is_up_to_date, read_manifest, stage_dir,
)
from med42_train.stages import STAGE_MODULES

TEMPLATE_DIR = PROJECT_ROOT / "scripts" / "slurm"


class ChainQueuedError(StageConflictError):
    """A chain submitted earlier for this run_dir still has jobs in the queue."""


@dataclass
class Job:
    label: str  # file and job-name suffix: "sft", "dpo-iter2"
    stage: str  # the command the job runs
    nnodes: int
    overrides: list[str] = field(default_factory=list)

    @property
    def template(self) -> str:
        return "gpu_stage.sbatch.j2" if self.stage in DISTRIBUTED_STAGES else "cpu_stage.sbatch.j2"


def slurm_dir(cfg: DictConfig) -> Path:
    return Path(cfg.run_dir) / "slurm"


def submit(cfg: DictConfig, dry_run: bool = False) -> list[dict]:
    """Freeze the config, render each job's script, and (unless dry_run) submit them as one afterok chain."""
    refuse_if_queued(cfg)
    check_batches(cfg)
    jobs = plan_jobs(cfg)
    directory = slurm_dir(cfg)
    for sub in ("logs", "status"):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    frozen = directory / "config.yaml"
    frozen.write_text(OmegaConf.to_yaml(cfg, resolve=True))
    submitted, previous = [], None
    for job in jobs:
        script = render(cfg, job, frozen)
        command = ["sbatch", "--parsable", "--kill-on-invalid-dep=yes"]
        command += [f"--dependency=afterok:{previous}"] if previous else []
        job_id = f"<{job.label} id>" if dry_run else _sbatch([*command, str(script)])
        submitted.append({"label": job.label, "stage": job.stage, "job_id": job_id, "script": str(script),
                          "command": shlex.join([*command, str(script)])})
        previous = job_id
    if not dry_run:
        (directory / "jobs.json").write_text(json.dumps({"submitted_at": time.time(), "jobs": submitted}, indent=1))
    print(_summary(cfg, submitted, dry_run))
    return submitted


def plan_jobs(cfg: DictConfig) -> list[Job]:
    """The jobs still to run, in STAGES order; a stage COMPLETE with this config and inputs is left out."""
    jobs = []
    for stage in STAGES:
        if _is_complete(cfg, stage):
            continue
        nnodes = cfg.launcher.nnodes if stage in DISTRIBUTED_STAGES else 1
        if stage != "dpo":
            jobs.append(Job(stage, stage, nnodes))
            continue
        nnodes = planned_world_size(cfg, "dpo") // cfg.launcher.nproc_per_node
        for k in range(1, cfg.dpo.iterations + 1):
            if not jobs and _round_complete(cfg, k):
                continue  # nothing before it reruns, and the round is done
            jobs.append(Job(f"dpo-iter{k}", "dpo", nnodes, [f"dpo.until_iteration={k}"]))
    return jobs


def _is_complete(cfg: DictConfig, stage: str) -> bool:
    if not (stage_dir(cfg, stage) / COMPLETE).is_file():  # before hashing inputs (a recipe's sources, models)
        return False
    try:
        module = importlib.import_module(STAGE_MODULES[stage])
        return is_up_to_date(cfg, stage, module.stage_inputs(cfg))
    except StageInputError:  # an input stage is not complete yet: this one runs after it
        return False


def _round_complete(cfg: DictConfig, k: int) -> bool:
    round_stage = f"dpo/iter_{k}"
    directory = stage_dir(cfg, round_stage)
    return (directory / COMPLETE).is_file() and \
        read_manifest(directory)["config_hash"] == stage_config_hash(cfg, round_stage)


def render(cfg: DictConfig, job: Job, frozen: Path) -> Path:
    import jinja2

    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATE_DIR), undefined=jinja2.StrictUndefined,
                                     keep_trailing_newline=True)
    script = slurm_dir(cfg) / f"{job.label}.sbatch"
    text = environment.get_template(job.template).render(**job_context(cfg, job, frozen, script))
    script.write_text(text)
    return script


def job_context(cfg: DictConfig, job: Job, frozen: Path, script: Path) -> dict:
    """Everything the templates use; paths and overrides shell-quoted here, once."""
    slurm, directory = cfg.launcher.slurm, slurm_dir(cfg)
    time_limits = slurm.time_limits
    return {
        "label": job.label, "stage": job.stage, "template": job.template, "nnodes": job.nnodes,
        "job_name": _job_name(cfg, job.label), "slurm": slurm,
        "gpus_per_node": slurm.gpus_per_node if job.stage in DISTRIBUTED_STAGES else
        slurm.single_process_gpus.get(job.stage),
        "time_limit": time_limits.get(job.stage, time_limits["default"]),
        "signal": cfg.launcher.preemption_signal, "grace_s": cfg.launcher.preemption_grace_s,
        "nproc_per_node": cfg.launcher.nproc_per_node, "torchrun_signals": ",".join(TORCHRUN_SIGNALS),
        "nccl_env": {key: shlex.quote(str(value)) for key, value in slurm.nccl_env.items()},
        "python": shlex.quote(sys.executable), "frozen_config": shlex.quote(str(frozen)),
        "stage_overrides": shlex.join(job.overrides), "stage_dir": shlex.quote(str(stage_dir(cfg, job.stage))),
        "status_file": shlex.quote(str(directory / "status" / f"{job.label}.jsonl")),
        "log_path": str(directory / "logs" / f"{job.label}-%j.log"), "script_path": str(script),
        "rendered_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _sbatch(command: list[str]) -> str:
    # sbatch exports the submitter's environment to the job. A wandb service token (WANDB_SERVICE, set in any
    # process that has called wandb.init, e.g. a notebook or a test session) would attach every attempt of a job
    # to that one long-lived service, which still holds a killed attempt's run id: the requeued attempt's
    # wandb.init then fails with "run ID ... is in use". Each job starts its own service instead.
    environment = {key: value for key, value in os.environ.items() if key != "WANDB_SERVICE"}
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False, env=environment)
    except FileNotFoundError:
        raise ConfigError("launcher=slurm but `sbatch` is not on PATH: run on a Slurm login node "
                          "(`med42 doctor` checks), or use launcher=local") from None
    if result.returncode != 0:
        raise ConfigError(f"sbatch refused {command[-1]}: {result.stderr.strip()}")
    return result.stdout.strip().split(";")[0]  # --parsable: jobid[;cluster]


def queued_jobs() -> dict[tuple[str, str], str]:
    """{(job id, job name): state} of every job in the queue (pending, running, requeued...). The name too: a
    restarted controller may give an old chain's ids to other jobs."""
    result = subprocess.run(["squeue", "-h", "-o", "%i %T %j"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ConfigError(f"squeue failed: {result.stderr.strip()}")
    rows = [line.split(maxsplit=2) for line in result.stdout.splitlines() if line.strip()]
    return {(job_id, name): state for job_id, state, name in rows}


def _job_name(cfg: DictConfig, label: str) -> str:
    return f"med42-{cfg.name}-{label}"


def refuse_if_queued(cfg: DictConfig) -> None:
    jobs_file = slurm_dir(cfg) / "jobs.json"
    if not jobs_file.is_file():
        return
    ours = {(job["job_id"], _job_name(cfg, job["label"])): job["label"]
            for job in json.loads(jobs_file.read_text())["jobs"]}
    queued = {key[0]: state for key, state in sorted(queued_jobs().items(), key=lambda item: int(item[0][0]))
              if key in ours}
    if queued:
        labels = {job_id: label for (job_id, _), label in ours.items()}
        listed = ", ".join(f"{job_id} ({labels[job_id]}, {state})" for job_id, state in queued.items())
        raise ChainQueuedError(f"a chain for {cfg.run_dir} is still queued: {listed}. Wait for it, or cancel "
                               f"it first: scancel {' '.join(queued)}")


def chain_status(cfg: DictConfig) -> tuple[str, bool]:
    """A line per job of the last chain (state, exit code, requeues) and whether any job failed."""
    jobs_file = slurm_dir(cfg) / "jobs.json"
    if not jobs_file.is_file():
        raise ConfigError(f"no chain was submitted for {cfg.run_dir} (no {jobs_file})")
    queued, lines, failed = queued_jobs(), [], False
    for job in json.loads(jobs_file.read_text())["jobs"]:
        state = _job_state(cfg, job, queued)
        failed |= state.startswith(("FAILED", "CANCELLED"))
        lines.append(f"{job['label']:<12} job {job['job_id']:<8} {state}")
    return "\n".join(lines), failed


def _job_state(cfg: DictConfig, job: dict, queue: dict[tuple[str, str], str]) -> str:
    events_file = slurm_dir(cfg) / "status" / f"{job['label']}.jsonl"
    events = [json.loads(line) for line in events_file.read_text().splitlines()] if events_file.is_file() else []
    events = [e for e in events if e["job_id"] == job["job_id"]]  # a file outlives a chain; keep this one's
    requeues = sum(e["state"] == "requeued" for e in events)
    queued = queue.get((job["job_id"], _job_name(cfg, job["label"])))
    if queued:
        return f"{queued} (requeued {requeues}x)" if requeues else queued
    last = events[-1] if events else None
    if last is None:
        return "CANCELLED: never ran (a job before it failed or was cancelled)"
    if last["state"] == "completed":
        return f"COMPLETED (requeued {requeues}x)"
    if last["state"] == "failed":
        return f"FAILED with exit code {last['code']}: see {slurm_dir(cfg) / 'logs'}/{job['label']}-{job['job_id']}.log"
    return f"CANCELLED while {last['state']} (killed, or lost its node)"


def _summary(cfg: DictConfig, submitted: list[dict], dry_run: bool) -> str:
    if not submitted:
        return f"every stage of {cfg.run_dir} is COMPLETE with this config: nothing submitted"
    lines = [f"{job['label']:<12} {job['job_id']:<10} {job['script']}" for job in submitted]
    if dry_run:
        return "\n".join(["rendered (not submitted); submit in this order:",
                          *[job["command"] for job in submitted]])
    ids = [job["job_id"] for job in submitted]
    return "\n".join([
        f"submitted {len(ids)} jobs, each after the one before (afterok):", *lines,
        f"watch:  squeue -j {','.join(ids)}   logs: {slurm_dir(cfg) / 'logs'}/",
        f"status: med42 pipeline launcher=slurm run_dir={cfg.run_dir} --status",
        f"cancel: scancel {' '.join(ids)}",
    ])
