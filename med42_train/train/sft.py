"""The `sft` stage: TRL SFTTrainer on FSDP2, assistant-only loss, padding-free packing of pre-tokenized data.

Launch: torchrun --nproc-per-node 2 -m med42_train sft run_dir=runs/demo
Reads <run_dir>/data/ (COMPLETE); writes <run_dir>/sft/checkpoints/ (sharded DCP) and sft/model/ (HF export).
"""

from __future__ import annotations

from datasets import load_from_disk
from omegaconf import DictConfig
from trl import SFTConfig, SFTTrainer

from med42_train.runtime.rundir import begin_stage, require_complete, stage_input
from med42_train.runtime.wandb_run import start_run
from med42_train.train.common import (
    apply_mixed_precision, finish_training, load_model, load_tokenizer, resume_checkpoint, start_distributed,
    trainer_kwargs,
)
from med42_train.train.metrics import PerSourceLossMixin, ThroughputMetricsMixin, build_source_index


class Med42SFTTrainer(ThroughputMetricsMixin, PerSourceLossMixin, SFTTrainer):
    """SFTTrainer that logs throughput, MFU and per-source loss every logging step (train/metrics.py)."""


def stage_inputs(cfg: DictConfig) -> dict[str, dict[str, str]]:
    return {"data": stage_input(cfg, "data")[1]}


def run(cfg: DictConfig) -> None:
    start_distributed(cfg)
    stage = begin_stage(cfg, "sft", stage_inputs(cfg))
    if stage is None:
        return
    cfg, wandb_run = stage.cfg, start_run(stage.cfg, "sft")
    outputs = require_complete(cfg, "data")["outputs"]

    # ---- model and tokenizer ----
    tokenizer = load_tokenizer(outputs["tokenizer"]["path"])
    model = load_model(cfg, outputs["base_model"]["path"])

    # ---- data: tokenized once by the data stage; labels come from assistant_masks ----
    full_dataset = load_from_disk(outputs["sft_dataset"]["path"])
    dataset = full_dataset.select_columns(["input_ids", "assistant_masks"])
    # Which source each sample came from, found again by content in the packed rows (train/metrics.py).
    source_names, source_index = build_source_index(full_dataset) if cfg.sft.per_source_loss else ([], None)

    # ---- trainer ----
    args = SFTConfig(
        **trainer_kwargs(cfg, cfg.sft, stage.dir / "checkpoints"),
        max_length=cfg.data.max_length,
        packing=cfg.sft.packing,
        packing_strategy="bfd",  # padding-free: position_ids restart at each sample
        shuffle_dataset=True,
        run_name=f"{cfg.name}-sft",
    )
    apply_mixed_precision(cfg, args)
    trainer = Med42SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                              source_names=source_names, source_index=source_index,
                              peak_tflops_per_device=cfg.launcher.peak_tflops_per_device)
    result = trainer.train(resume_from_checkpoint=resume_checkpoint(stage.dir / "checkpoints"))

    # ---- export, validation, manifest ----
    finish_training(stage, trainer, result, tokenizer, wandb_run, cfg.sft.validation_prompt)
