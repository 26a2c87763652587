"""Per model x task eval results, keyed by the model export's hash + the task definition hash + the protocol.

`<eval.cache_dir>/<model sha256[:16]>/<task>-<task hash>-<protocol hash>/` holds `result.json` (the task's share
of lm-eval's results, with the protocol block) and `samples_<task>.jsonl`, written to a temporary folder and
renamed into place, so an interrupted eval never leaves a half entry. A model without a content hash (a hub id)
is never cached: its weights could change under the same name.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from med42_train.config import local_data_files
from med42_train.eval import task_defs
from med42_train.eval.checkpoints import RunModel

# Settings that never change a score: which models and tasks are asked for, where results go.
_NOT_PROTOCOL = ("tasks", "models", "data_files", "cache_dir")


def protocol_hash(cfg: DictConfig) -> str:
    """Everything in eval.* that decides a score (data files count in the task hash), dtype, seed, and the
    versions of the harness and of transformers (another version may tokenize or batch differently)."""
    settings = {k: v for k, v in OmegaConf.to_container(cfg.eval, resolve=True).items() if k not in _NOT_PROTOCOL}
    settings |= {"dtype": cfg.model.dtype, "seed": cfg.seed,
                 "versions": [metadata.version(name) for name in ("lm_eval", "transformers")]}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def entry_dir(cfg: DictConfig, model: RunModel, task: str) -> Optional[Path]:
    if not model.sha256:
        return None
    task_hash = task_defs.definition_hash(task, local_data_files(cfg))
    return Path(cfg.eval.cache_dir) / model.sha256[:16] / f"{task}-{task_hash}-{protocol_hash(cfg)}"


def load(directory: Optional[Path]) -> Optional[dict[str, Any]]:
    """A cached task result with its samples, or None."""
    if directory is None or not (directory / "result.json").is_file():
        return None
    result = json.loads((directory / "result.json").read_text())
    result["samples"] = {name: [json.loads(line) for line in open(directory / f"samples_{name}.jsonl")]
                         for name in result.pop("sample_files")}
    return result


def store(directory: Optional[Path], result: dict[str, Any]) -> None:
    if directory is None:
        return
    staging = directory.with_name(f".{directory.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    body = write_samples(staging, result)
    (staging / "result.json").write_text(json.dumps(body, indent=2, default=str))
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(staging, directory)


def write_samples(directory: Path, result: dict[str, Any]) -> dict[str, Any]:
    """samples_<task>.jsonl (one scored request per line) in `directory`; returns the result without them."""
    directory.mkdir(parents=True, exist_ok=True)
    samples = result.get("samples", {})
    for task, rows in samples.items():
        with open(directory / f"samples_{task}.jsonl", "w") as handle:
            handle.writelines(json.dumps(row, default=str) + "\n" for row in rows)
    return {k: v for k, v in result.items() if k != "samples"} | {"sample_files": sorted(samples)}
