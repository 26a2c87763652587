"""W&B: one run per stage on global rank 0, every stage of a run_dir in one group; a no-op object elsewhere.

The logged config never carries secrets: keys that look like credentials are dropped before logging, and the
API key is only ever read by wandb itself from the environment.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import string
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from med42_train.config import to_dict
from med42_train.runtime.dist import dist_info

_SECRET_KEY = re.compile(r"(token|secret|password|api[_-]?key|credential)", re.IGNORECASE)


class NullRun:
    """Stands in for a wandb run on non-zero ranks and when logging is disabled."""

    id = None
    dir = None

    def log(self, *args: Any, **kwargs: Any) -> None:
        pass

    def finish(self, *args: Any, **kwargs: Any) -> None:
        pass


def group_name(cfg: DictConfig) -> str:
    if cfg.logger.group:
        return str(cfg.logger.group)
    return f"{cfg.name}-{hashlib.sha256(str(cfg.run_dir).encode()).hexdigest()[:8]}"


def wandb_mode(cfg: DictConfig) -> str:
    return os.environ.get("WANDB_MODE") or str(cfg.logger.mode)


def redact(value: Any) -> Any:
    """The config without credential-like keys, at any depth."""
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items() if not _SECRET_KEY.search(str(k))}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def configure_env(cfg: DictConfig) -> None:
    """Point wandb (ours and the HF Trainer callback's) at <run_dir>/wandb and the chosen mode."""
    os.environ["WANDB_MODE"] = wandb_mode(cfg)
    os.environ.setdefault("WANDB_DIR", str(cfg.run_dir))
    os.environ["WANDB_PROJECT"] = str(cfg.logger.project)
    os.environ.setdefault("WANDB_SILENT", "true")
    Path(os.environ["WANDB_DIR"], "wandb").mkdir(parents=True, exist_ok=True)


RUN_ID_FILE = "wandb_run_id"


def stage_run_id(stage_dir: Path) -> str:
    """The W&B run id kept in the stage's folder: a restarted (requeued) job continues the same run."""
    path = stage_dir / RUN_ID_FILE
    if not path.is_file():  # wandb's own ids: 8 characters of [a-z0-9]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8)))
    return path.read_text().strip()


def start_run(cfg: DictConfig, stage: str, stage_dir: Path | None = None):
    """The stage's wandb run on global rank 0, else a NullRun.

    With `stage_dir`, the run id lives in <stage_dir>/wandb_run_id and the run is opened with resume="allow":
    online, a restart appends to the same run. Offline runs cannot be resumed by wandb: each attempt writes its
    own offline-run-*-<id> folder with that same id, and `wandb sync` uploads them into one run.
    """
    if not cfg.logger.wandb or wandb_mode(cfg) == "disabled" or not dist_info().is_main:
        return NullRun()
    import wandb

    configure_env(cfg)
    resume = {"id": stage_run_id(stage_dir), "resume": "allow"} if stage_dir is not None else {}
    return wandb.init(
        **resume,
        project=str(cfg.logger.project),
        entity=cfg.logger.entity,
        group=group_name(cfg),
        job_type=stage,
        name=f"{cfg.name}-{stage}",
        config=redact(to_dict(cfg)),
        dir=os.environ["WANDB_DIR"],
        reinit="finish_previous",
    )


def report_to(cfg: DictConfig) -> list[str]:
    """What the HF Trainer should report to: wandb reuses the run start_run opened (rank 0 only)."""
    if not cfg.logger.wandb or wandb_mode(cfg) == "disabled":
        return []
    return ["wandb"]
