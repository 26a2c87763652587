"""The models of a run, by label: what `eval` and `elo` evaluate, found through the stages' manifests.

Labels in `eval.models` (and the elo stage's model list):
- `base`: the base model the data stage recorded (the demo's built model, or the hub id / folder of model.name_or_path);
- `sft`: the SFT export;
- `dpo`: every DPO iteration's export, as the DPO stage's manifest lists them (`outputs.iterations`), labelled
  `dpo_iter1`, `dpo_iter2`, ...; a DPO manifest without iterations gives one model labelled `dpo`;
- a path to a local HF model folder (a released Med42-v2 or Llama 3 checkpoint): labelled by its folder name and
  needing no stage of the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig

from med42_train.config import ConfigError
from med42_train.runtime.rundir import sha256_tree, stage_input

STAGE_OF_LABEL = {"base": "data", "sft": "sft", "dpo": "dpo"}


@dataclass(frozen=True)
class RunModel:
    """One model to evaluate: its label, where it is, and its content hash (None for a hub id)."""

    label: str
    path: str
    sha256: Optional[str]
    stage: Optional[str]  # the stage whose manifest named it; None for a local folder given by path


def is_stage_label(label: str) -> bool:
    return label in STAGE_OF_LABEL


def check_model_labels(labels: list[str], key: str = "eval.models") -> None:
    """At config time: every entry is a stage label or an existing local folder (a typo fails before any stage)."""
    for label in labels:
        if not is_stage_label(label) and not Path(label).expanduser().is_dir():
            raise ConfigError(f"{key} entry {label!r} is neither a stage label ({', '.join(STAGE_OF_LABEL)}) "
                              f"nor an existing local HF model folder: fix the entry or the path")


def run_models(cfg: DictConfig, labels: list[str]) -> tuple[list[RunModel], dict[str, dict[str, str]]]:
    """(models in label order, the stage inputs they came from) for a downstream stage's manifest."""
    models: list[RunModel] = []
    inputs: dict[str, dict[str, str]] = {}
    for label in labels:
        if not is_stage_label(label):
            path = Path(label).expanduser().resolve()
            models.append(RunModel(path.name, str(path), sha256_tree(path), None))
            continue
        stage = STAGE_OF_LABEL[label]
        manifest, inputs[stage] = stage_input(cfg, stage)
        models.extend(_stage_models(label, stage, manifest["outputs"]))
    _refuse_duplicate_labels(models)
    return models, inputs


def _stage_models(label: str, stage: str, outputs: dict) -> list[RunModel]:
    if label == "base":
        record = outputs["base_model"]
        return [RunModel("base", record["path"], record.get("sha256"), stage)]
    iterations = outputs.get("iterations") if label == "dpo" else None
    if iterations:
        return [RunModel(f"dpo_iter{it['iteration']}", it["model"]["path"], it["model"].get("sha256"), stage)
                for it in iterations]
    return [RunModel(label, outputs["model"]["path"], outputs["model"].get("sha256"), stage)]


def _refuse_duplicate_labels(models: list[RunModel]) -> None:
    seen: set[str] = set()
    for model in models:
        if model.label in seen:
            raise ConfigError(f"two models are labelled {model.label!r} (local folders are labelled by their "
                              f"folder name): rename one folder or drop the duplicate from the model list")
        seen.add(model.label)
