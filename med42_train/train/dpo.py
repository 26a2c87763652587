"""The `dpo` stage: TRL DPOTrainer from the SFT export, which is also the (frozen) reference model, on FSDP2.

Launch: torchrun --nproc-per-node 2 -m med42_train dpo run_dir=runs/demo
Reads <run_dir>/data/ and <run_dir>/sft/ (COMPLETE, validated export); writes <run_dir>/dpo/model/.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from datasets import load_from_disk
from omegaconf import DictConfig
from trl import DPOConfig, DPOTrainer

from med42_train.runtime.dist import broadcast_object, dist_info
from med42_train.runtime.rundir import StageInputError, begin_stage, require_complete, sha256_tree, stage_input
from med42_train.runtime.wandb_run import start_run
from med42_train.train.checkpoint import AtomicCheckpointMixin, install_preemption
from med42_train.train.common import (
    apply_mixed_precision, finish_training, load_model, load_tokenizer, start_distributed, train, trainer_kwargs,
)

PREFERENCE_COLUMNS = ["prompt_ids", "chosen_ids", "rejected_ids"]


class PretokenizedDPOTrainer(AtomicCheckpointMixin, DPOTrainer):
    """DPOTrainer fed the data stage's token ids as they are: no tokenization inside the distributed job.
    Its checkpoints are atomic and COMPLETE-marked like SFT's (train/checkpoint.py)."""

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        missing = set(PREFERENCE_COLUMNS) - set(dataset.column_names)
        if missing:
            raise ValueError(f"{dataset_name} preference dataset lacks {sorted(missing)}: re-run `med42 data`")
        return dataset


def validated_export(cfg: DictConfig, sft_manifest: dict) -> str:
    """The SFT export's path, if its manifest says it was validated and its files still hash as recorded.

    Rank 0 hashes (a 70B export is 140 GB) and every rank raises the same error, before any model loads.
    """
    record = sft_manifest.get("outputs", {}).get("model", {})
    problem = broadcast_object(_export_problem(record) if dist_info().is_main else None)
    if problem:
        raise StageInputError(f"{cfg.run_dir}/sft/manifest.json: {problem}; rerun "
                              f"`med42 sft run_dir={cfg.run_dir} overwrite=true` to export and validate it again")
    return record["path"]


def _export_problem(record: dict) -> Optional[str]:
    path = record.get("path")
    if not record.get("validated") or not record.get("sha256"):
        return f"the SFT export {path} is not recorded as validated (outputs.model.validated / sha256 missing)"
    if not path or not Path(path).is_dir():
        return f"the SFT export folder {path} is missing"
    actual = sha256_tree(Path(path))
    if actual != record["sha256"]:
        return f"{path} changed after validation (sha256 {actual[:12]}..., recorded {record['sha256'][:12]}...)"
    return None


def stage_inputs(cfg: DictConfig) -> dict[str, dict[str, str]]:
    return {"data": stage_input(cfg, "data")[1], "sft": stage_input(cfg, "sft")[1]}


def run(cfg: DictConfig) -> None:
    start_distributed(cfg)
    preemption = install_preemption()
    stage = begin_stage(cfg, "dpo", stage_inputs(cfg))
    if stage is None:
        return
    cfg, wandb_run = stage.cfg, start_run(stage.cfg, "dpo")
    data_manifest, sft_manifest = require_complete(cfg, "data"), require_complete(cfg, "sft")

    # ---- policy = reference = the validated SFT export ----
    sft_export = validated_export(cfg, sft_manifest)  # before any model loads
    tokenizer = load_tokenizer(sft_export)
    model = load_model(cfg, sft_export)

    # ---- data: pre-tokenized prompt/chosen/rejected ids ----
    dataset = load_from_disk(data_manifest["outputs"]["preference_dataset"]["path"]).select_columns(PREFERENCE_COLUMNS)

    # ---- trainer ----
    args = DPOConfig(
        **trainer_kwargs(cfg, cfg.dpo, stage.dir / "checkpoints", cfg.dpo.gradient_accumulation_steps),
        beta=cfg.dpo.beta,
        loss_type=[cfg.dpo.loss_type],
        max_length=cfg.data.preference_max_length,
        precompute_ref_log_probs=False,  # reported to crash under FSDP2 (trl issue 6470)
        run_name=f"{cfg.name}-dpo",
    )
    apply_mixed_precision(cfg, args)
    # ref_model=None: TRL loads a second copy from the policy's path (the SFT export) and shards it the same way.
    trainer = PretokenizedDPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                     callbacks=[preemption])
    result = train(trainer, preemption, stage.dir)

    # ---- export, validation, manifest ----
    finish_training(stage, trainer, result, tokenizer, wandb_run, cfg.sft.validation_prompt, reference_model=sft_export)
