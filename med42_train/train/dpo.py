"""The `dpo` stage: TRL DPOTrainer from the SFT export, which is also the (frozen) reference model, on FSDP2.

Launch: torchrun --nproc-per-node 2 -m med42_train dpo run_dir=runs/demo
Reads <run_dir>/data/ and <run_dir>/sft/ (COMPLETE, validated export); writes <run_dir>/dpo/model/.
"""

from __future__ import annotations

from datasets import load_from_disk
from omegaconf import DictConfig
from trl import DPOConfig, DPOTrainer

from med42_train.runtime.rundir import begin_stage, require_complete, stage_input
from med42_train.runtime.wandb_run import start_run
from med42_train.train.checkpoint import AtomicCheckpointMixin, install_preemption
from med42_train.train.common import (
    finish_training, load_model, load_tokenizer, start_distributed, train, trainer_kwargs,
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
    sft_export = sft_manifest["outputs"]["model"]["path"]
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
    # ref_model=None: TRL loads a second copy from the policy's path (the SFT export) and shards it the same way.
    trainer = PretokenizedDPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                     callbacks=[preemption])
    result = train(trainer, preemption, stage.dir)

    # ---- export, validation, manifest ----
    finish_training(stage, trainer, result, tokenizer, wandb_run, cfg.sft.validation_prompt, reference_model=sft_export)
