"""The check right after distributed init: every rank runs the same job, or all of them stop, naming the ranks.

Multi-node launches go wrong in ways that hang rather than fail: a node that composed another config (an edited
YAML, a different override), a stale data stage on one node's view of the file system, fewer processes than
planned. One all-gather of a small record per rank (world size, config hash, data manifest hash, host, GPUs)
finds all of these in seconds, before any model loads; the first real collective would otherwise wait for
launcher.nccl_timeout_s.
"""

from __future__ import annotations

import socket
from collections import defaultdict
from typing import Any, Optional

import torch
from omegaconf import DictConfig

from med42_train.config import ConfigError, config_hash, planned_world_size
from med42_train.runtime.dist import all_gather_object, dist_info
from med42_train.runtime.log import get_logger
from med42_train.runtime.rundir import MANIFEST, read_manifest, fingerprint, stage_dir

log = get_logger()
_MUST_AGREE = ("world_size", "config_hash", "data_manifest")


def rank_record(cfg: DictConfig) -> dict[str, Any]:
    info = dist_info()
    return {"rank": info.rank, "world_size": info.world_size, "host": socket.gethostname(),
            "num_gpus": torch.cuda.device_count(), "config_hash": config_hash(cfg),
            "data_manifest": _data_fingerprint(cfg)}


def _data_fingerprint(cfg: DictConfig) -> Optional[str]:
    path = stage_dir(cfg, "data") / MANIFEST
    return fingerprint(read_manifest(path.parent)) if path.is_file() else None


def check_rendezvous(cfg: DictConfig, stage: str) -> list[dict[str, Any]]:
    """Gather every rank's record; raise ConfigError on every rank when they disagree (or the size is off)."""
    records = all_gather_object(rank_record(cfg))
    hosts = defaultdict(list)
    for record in records:
        hosts[record["host"]].append(record["rank"])
    log.info("rendezvous: %d ranks on %d hosts: %s; GPUs per host: %s", len(records), len(hosts), dict(hosts),
             {r["host"]: r["num_gpus"] for r in records})
    problems = [_disagreement(records, key) for key in _MUST_AGREE]
    problems.append(_world_size_problem(cfg, stage, len(records)))
    problems = [p for p in problems if p]
    if problems:
        raise ConfigError("rendezvous check failed: " + "; ".join(problems) + ". Every rank must run the same "
                          "command on the same run_dir (with launcher=slurm every job reads <run_dir>/slurm/"
                          "config.yaml); fix the launch and start the job again")
    return records


def _disagreement(records: list[dict[str, Any]], key: str) -> Optional[str]:
    by_value = defaultdict(list)
    for record in records:
        by_value[record[key]].append(record["rank"])
    if len(by_value) == 1:
        return None
    groups = ", ".join(f"ranks {ranks} have {value}" for value, ranks in by_value.items())
    return f"{key} differs between ranks ({groups})"


def _world_size_problem(cfg: DictConfig, stage: str, world_size: int) -> Optional[str]:
    """Under launcher=slurm the job was sized from the config; locally a hand-run torchrun may pick its size."""
    planned = planned_world_size(cfg, stage)
    if world_size == planned or cfg.launcher.name != "slurm":
        return None
    return (f"{world_size} ranks joined but the config plans {planned} (launcher.nnodes x launcher.nproc_per_node"
            f"{', dpo.nnodes' if stage == 'dpo' else ''}): check the job's --nodes and torchrun --nproc-per-node")
