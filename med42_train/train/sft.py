"""The `sft` stage: TRL SFTTrainer on FSDP2, assistant-only loss, padding-free packing of pre-tokenized data.

Launch: torchrun --nproc-per-node 2 -m med42_train sft run_dir=runs/demo
Reads <run_dir>/data/ (COMPLETE); writes <run_dir>/sft/checkpoints/ (sharded DCP, COMPLETE-marked) and
sft/model/ (HF export). A SIGTERM/SIGUSR1 saves a checkpoint and exits 75; the same command then resumes.
"""

from __future__ import annotations

from datasets import load_from_disk
from omegaconf import DictConfig
from trl import SFTConfig, SFTTrainer

from med42_train.config import sft_gradient_accumulation
from med42_train.data.source_index import build_source_index, read_source_index
from med42_train.runtime.dist import dist_info
from med42_train.runtime.log import get_logger
from med42_train.runtime.rundir import begin_stage, require_complete, stage_input
from med42_train.runtime.wandb_run import start_run
from med42_train.train.checkpoint import AtomicCheckpointMixin, install_preemption
from med42_train.train.common import (
    apply_mixed_precision, finish_training, load_model, load_tokenizer, start_distributed, train, trainer_kwargs,
)
from med42_train.train.metrics import PerSourceLossMixin, ThroughputMetricsMixin


log = get_logger()


class Med42SFTTrainer(ThroughputMetricsMixin, PerSourceLossMixin, AtomicCheckpointMixin, SFTTrainer):
    """SFTTrainer that logs throughput, MFU and per-source loss every logging step (train/metrics.py), and whose
    checkpoints are atomic and COMPLETE-marked (train/checkpoint.py)."""


def _source_index(data_outputs: dict, dataset):
    """The data stage's key -> source index; computed here only for a data stage made before it wrote one."""
    record = data_outputs.get("sft_source_index")
    if record:
        return read_source_index(record["path"])
    log.warning("the data stage wrote no sft_source_index (made by an older version): hashing every sample now; "
                "re-run `med42 data ... overwrite=true` to write it once")
    return build_source_index(dataset)


def stage_inputs(cfg: DictConfig) -> dict[str, dict[str, str]]:
    return {"data": stage_input(cfg, "data")[1]}


def run(cfg: DictConfig) -> None:
    start_distributed(cfg, "sft")
    preemption = install_preemption()
    # The global batch is fixed in tokens; refuse a world size that cannot make it before any model loads.
    accumulation = sft_gradient_accumulation(cfg, dist_info().world_size)
    stage = begin_stage(cfg, "sft", stage_inputs(cfg))
    if stage is None:
        return
    cfg, wandb_run = stage.cfg, start_run(stage.cfg, "sft", stage.dir)
    outputs = require_complete(cfg, "data")["outputs"]

    # ---- model and tokenizer ----
    tokenizer = load_tokenizer(outputs["tokenizer"]["path"])
    model = load_model(cfg, outputs["base_model"]["path"])

    # ---- data: tokenized once by the data stage; labels come from assistant_masks ----
    full_dataset = load_from_disk(outputs["sft_dataset"]["path"])
    dataset = full_dataset.select_columns(["input_ids", "assistant_masks"])
    # Which source each sample came from, found again by content in the packed rows (train/metrics.py).
    source_names, source_index = _source_index(outputs, full_dataset) if cfg.sft.per_source_loss else ([], None)

    # ---- trainer ----
    args = SFTConfig(
        **trainer_kwargs(cfg, cfg.sft, stage.dir / "checkpoints", accumulation),
        adam_beta1=cfg.sft.adam_beta1,
        adam_beta2=cfg.sft.adam_beta2,
        max_length=cfg.data.max_length,
        packing=cfg.sft.packing,
        packing_strategy="bfd",  # padding-free: position_ids restart at each sample
        shuffle_dataset=True,
        run_name=f"{cfg.name}-sft",
    )
    apply_mixed_precision(cfg, args)
    trainer = Med42SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                              callbacks=[preemption], source_names=source_names, source_index=source_index,
                              peak_tflops_per_device=cfg.launcher.peak_tflops_per_device)
    result = train(trainer, preemption, stage.dir)

    # ---- export, validation, manifest ----
    finish_training(stage, trainer, result, tokenizer, wandb_run, cfg.sft.validation_prompt,
                    tokens_per_step=cfg.sft.tokens_per_step, gradient_accumulation_steps=accumulation)
