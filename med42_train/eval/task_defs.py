"""The lm-eval task definitions the project ships (med42_train/eval/tasks/), read without importing the harness.

Used at config time (an unknown task or data file fails when the config loads, before any stage) and by the eval
cache (a task's definition hash: its YAML, the YAMLs it includes or groups, utils.py, and its data file).
"""

from __future__ import annotations

import hashlib
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from med42_train.config import EVAL_DATA_KEYS as DATA_KEYS
from med42_train.config import ConfigError

TASK_DIR = Path(__file__).parent / "tasks"
VARIANT = re.compile(r"_(full|letter)$")


class _TagTolerantLoader(yaml.SafeLoader):
    """Reads the harness's `!function module.name` tags as plain strings."""


_TagTolerantLoader.add_constructor("!function", lambda loader, node: loader.construct_scalar(node))


@lru_cache(maxsize=None)
def shipped_tasks() -> dict[str, Path]:
    """Task and group name -> its YAML file."""
    names = {}
    for path in sorted(TASK_DIR.glob("*.yaml")):
        spec = _load(path)
        names[spec.get("group") or spec["task"]] = path
    return names


def _load(path: Path) -> dict[str, Any]:
    return yaml.load(path.read_text(), Loader=_TagTolerantLoader) or {}


def members(name: str) -> list[str]:
    """A group's tasks; a task alone for a task."""
    spec = _load(shipped_tasks()[name])
    return list(spec["task"]) if "group" in spec else [name]


def data_key(name: str) -> str:
    """The eval.data_files key a task (or a group's first task) reads."""
    return _load(shipped_tasks()[members(name)[0]])["dataset_kwargs"]["dataset"]


def variant(name: str) -> str:
    match = VARIANT.search(name)
    return match.group(1) if match else "unknown"


def check_tasks(tasks: list[str], data_files: dict[str, str]) -> None:
    """Config time: every task is shipped, every data file key is known and exists, USMLE has its file."""
    known = shipped_tasks()
    for name in tasks:
        if name not in known:
            raise ConfigError(f"eval.tasks: no shipped task {name!r} (med42_train/eval/tasks/). Shipped tasks and "
                              f"groups: {', '.join(sorted(known))}")
        if data_key(name) == "usmle" and "usmle" not in data_files:
            raise ConfigError(f"eval.tasks has {name} but no public USMLE copy can be read: give "
                              f"eval.data_files.usmle=<jsonl in the MedQA layout> (README, evaluation)")
    for key, path in data_files.items():
        if key not in DATA_KEYS:
            raise ConfigError(f"eval.data_files.{key}: unknown dataset key; use one of {', '.join(DATA_KEYS)}")
        if not Path(path).expanduser().exists():
            raise ConfigError(f"eval.data_files.{key}={path}: no such file or folder; fix the path")


def definition_hash(name: str, data_files: dict[str, str]) -> str:
    """Hash of everything that decides a task's documents and requests (not the model, not the protocol)."""
    from med42_train.runtime.rundir import sha256_tree

    files = [shipped_tasks()[name], *(shipped_tasks()[m] for m in members(name) if m != name)]
    files += sorted(TASK_DIR.glob("_*_yaml")) + [TASK_DIR / "utils.py"]
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + path.read_bytes())
    local = data_files.get(data_key(name)) or _local_default(name)
    digest.update((sha256_tree(Path(local).expanduser()) if local else "hub").encode())
    return digest.hexdigest()[:16]


def _local_default(name: str) -> str | None:
    from med42_train.config import RECIPE_DIR

    default = _load(shipped_tasks()[members(name)[0]])["dataset_kwargs"].get("local_default")
    return str(RECIPE_DIR / default) if default else None
