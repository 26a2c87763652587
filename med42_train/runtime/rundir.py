"""The run directory contract: `<run_dir>/<stage>/` with config.yaml, manifest.json and, last, COMPLETE.

A stage reads only COMPLETE outputs of earlier stages, found through their manifests. Re-running a complete
stage with the same config and inputs is a no-op; with different ones it refuses unless `overwrite=true`.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from med42_train.config import RootConfig, stage_config_hash
from med42_train.runtime.dist import DistInfo, barrier, dist_info
from med42_train.runtime.log import get_logger

COMPLETE = "COMPLETE"
MANIFEST = "manifest.json"
FROZEN_CONFIG = "config.yaml"
STARTED = "started.json"  # config hash and inputs of the attempt in progress
_VERSIONED = ("torch", "transformers", "trl", "accelerate", "datasets", "hydra-core", "wandb", "lm_eval", "tokenizers")

log = get_logger()


class StageInputError(RuntimeError):
    """An input stage is missing or incomplete; the message says which command produces it."""


class StageConflictError(RuntimeError):
    """A COMPLETE stage exists with another config or other inputs."""


@dataclass
class StageRun:
    """A stage in progress: its frozen config, folder, inputs and start time."""

    cfg: DictConfig
    stage: str
    dir: Path
    inputs: dict[str, dict[str, str]]
    config_hash: str
    dist: DistInfo
    started_at: float = field(default_factory=time.time)


def stage_dir(cfg: DictConfig, stage: str) -> Path:
    return Path(cfg.run_dir) / stage


def sha256_file(path: Path) -> str:
    """Content hash of a file; a file unchanged since it was last hashed in this process is not read again
    (the pipeline checks a stage's inputs before the stage checks them itself; sources can be GBs)."""
    stat = Path(path).stat()
    return _sha256_unchanged(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4096)
def _sha256_unchanged(path: str, size_bytes: int, mtime_ns: int, chunk_bytes: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_tree(path: Path) -> str:
    """Content hash of a file or of every file under a folder (names and bytes, in sorted order)."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    return tree_digest(sha256_files(path))


def sha256_files(path: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under a folder, in sha256_tree's order (sorted paths)."""
    files = sorted(p for p in Path(path).rglob("*") if p.is_file())
    return {str(file.relative_to(path)): sha256_file(file) for file in files}


def tree_digest(file_sha256: dict[str, str]) -> str:
    """sha256_tree of a folder from its sha256_files, taken in their order (Path order, not string order)."""
    digest = hashlib.sha256()
    for name in file_sha256:
        digest.update(name.encode())
        digest.update(file_sha256[name].encode())
    return digest.hexdigest()


def read_manifest(directory: Path) -> dict[str, Any]:
    return json.loads((Path(directory) / MANIFEST).read_text())


def fingerprint(manifest: dict[str, Any]) -> str:
    """Identity of a stage's result: its config hash, its inputs and the hashes of what it wrote."""
    payload = {key: manifest[key] for key in ("config_hash", "inputs", "outputs")}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def require_complete(cfg: DictConfig, stage: str) -> dict[str, Any]:
    """The manifest of a COMPLETE earlier stage, or an error naming the command that produces it."""
    directory = stage_dir(cfg, stage)
    if not (directory / COMPLETE).is_file():
        state = "is incomplete (no COMPLETE marker)" if directory.exists() else "does not exist"
        raise StageInputError(
            f"{directory} {state}. Run `med42 {stage} run_dir={cfg.run_dir}` (or `med42 pipeline`) first."
        )
    return read_manifest(directory)


def stage_input(cfg: DictConfig, stage: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(manifest, input record) of an upstream stage, for the `inputs` of a downstream manifest."""
    manifest = require_complete(cfg, stage)
    record = {"path": str(stage_dir(cfg, stage) / MANIFEST), "sha256": fingerprint(manifest)}
    return manifest, record


def is_up_to_date(cfg: DictConfig, stage: str, inputs: dict[str, dict[str, str]]) -> bool:
    """True if the stage is COMPLETE with this config and these inputs; raises if COMPLETE with others."""
    directory = stage_dir(cfg, stage)
    if not (directory / COMPLETE).is_file():
        return False
    return _same_or_refuse(cfg, stage, inputs, read_manifest(directory), "is COMPLETE")


def _same_or_refuse(cfg: DictConfig, stage: str, inputs: dict, recorded: dict, state: str) -> bool:
    """Whether a recorded result or attempt used this config and these inputs; if not, refuse unless overwrite."""
    config_hash = stage_config_hash(cfg, stage)
    if recorded["config_hash"] == config_hash and recorded["inputs"] == inputs:
        return True
    if cfg.overwrite:
        return False
    changed = "config" if recorded["config_hash"] != config_hash else "inputs"
    raise StageConflictError(
        f"{stage_dir(cfg, stage)} {state} but was made with other {changed}. Pass overwrite=true to replace it, "
        f"or choose another run_dir=..."
    )


def begin_stage(cfg: DictConfig, stage: str, inputs: dict[str, dict[str, str]],
                keep_rounds: bool = False) -> Optional[StageRun]:
    """Start a stage: None if it is already up to date; else clear a stale result and freeze the config.

    An interrupted attempt (STARTED but no COMPLETE) with the same config and inputs is kept, so training
    resumes from its checkpoints; one with other settings is refused (or discarded with overwrite=true),
    never resumed into a different run. `keep_rounds`: a stale stage with rounds (dpo/iter_<k>/) loses only
    its own markers; each round then decides for itself whether it is still up to date.
    """
    info = dist_info()
    if is_up_to_date(cfg, stage, inputs):
        log.info("%s is COMPLETE with the same config and inputs: nothing to do", stage_dir(cfg, stage))
        return None
    directory = stage_dir(cfg, stage)
    stale = (directory / COMPLETE).is_file() or (
        (directory / STARTED).is_file()
        and not _same_or_refuse(cfg, stage, inputs, json.loads((directory / STARTED).read_text()),
                                "holds an interrupted run")
    )
    if info.is_main:
        if stale:
            log.warning("overwrite=true: replacing %s", directory)
            _clear(directory, keep_rounds)
        directory.mkdir(parents=True, exist_ok=True)
        _atomic_write(directory / FROZEN_CONFIG, OmegaConf.to_yaml(cfg, resolve=True))
        started = {"config_hash": stage_config_hash(cfg, stage), "inputs": inputs}
        _atomic_write(directory / STARTED, json.dumps(started, indent=2, sort_keys=True))
    barrier()
    # Every rank trains with the one config rank 0 froze, not with its own composition of the command line.
    frozen = OmegaConf.merge(OmegaConf.structured(RootConfig), OmegaConf.load(directory / FROZEN_CONFIG))
    return StageRun(frozen, stage, directory, inputs, stage_config_hash(frozen, stage), info)


def _clear(directory: Path, keep_rounds: bool) -> None:
    if not keep_rounds:
        shutil.rmtree(directory)
        return
    for name in (COMPLETE, MANIFEST, STARTED, FROZEN_CONFIG):
        (directory / name).unlink(missing_ok=True)


def finish_stage(run: StageRun, outputs: dict[str, Any], figures: dict[str, Any], **extra: Any) -> dict:
    """Write manifest.json, then COMPLETE, atomically and on rank 0 only; every rank waits for it."""
    manifest = {
        "stage": run.stage,
        "config_hash": run.config_hash,
        "inputs": run.inputs,
        "outputs": outputs,
        "world_size": run.dist.world_size,
        "versions": library_versions(),
        "timings": {"started_at": run.started_at, "wall_s": round(time.time() - run.started_at, 2)},
        "figures": figures,
        **extra,
    }
    if run.dist.is_main:
        _atomic_write(run.dir / MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        _atomic_write(run.dir / COMPLETE, f"{fingerprint(manifest)}\n")
        log.info("%s COMPLETE in %.1f s", run.dir, manifest["timings"]["wall_s"])
    barrier()
    return manifest


def library_versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
