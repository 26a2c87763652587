"""What SFT and DPO share: distributed start, FSDP2 arguments, model loading, the sharding report."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from med42_train.config import ConfigError, size_in_bytes
from med42_train.runtime.dist import dist_info, init_distributed, uses_cpu
from med42_train.runtime.log import get_logger
from med42_train.runtime.rendezvous import check_rendezvous
from med42_train.runtime.preemption import PREEMPTED_MARKER, Preempted
from med42_train.runtime.rundir import finish_stage
from med42_train.runtime.wandb_run import report_to
from med42_train.train.checkpoint import PreemptionCallback, resume_checkpoint
from med42_train.train.export import export_model

log = get_logger()


def start_distributed(cfg: DictConfig, stage: str) -> None:
    """Join torchrun's process group and check every rank runs the same job (runtime/rendezvous.py); on CPU let
    accelerate run FSDP over gloo (runtime/compat.py)."""
    init_distributed(cfg.launcher.backend, cfg.launcher.nccl_timeout_s)
    check_rendezvous(cfg, stage)
    if uses_cpu(cfg.launcher.backend):
        from med42_train.runtime.compat import apply_cpu_fsdp_shim

        apply_cpu_fsdp_shim()


def trainer_kwargs(cfg: DictConfig, section: DictConfig, output_dir: Path,
                   gradient_accumulation_steps: int) -> dict[str, Any]:
    """TrainingArguments fields common to SFTConfig and DPOConfig, from a stage section (cfg.sft / cfg.dpo)."""
    on_cpu = uses_cpu(cfg.launcher.backend)
    return dict(
        output_dir=str(output_dir),
        num_train_epochs=section.num_train_epochs,
        max_steps=section.max_steps,
        learning_rate=section.learning_rate,
        lr_scheduler_type=section.lr_scheduler_type,
        warmup_steps=section.warmup_ratio,  # transformers 5: a float in [0, 1) is a ratio of total steps
        weight_decay=section.weight_decay,
        max_grad_norm=section.max_grad_norm,
        per_device_train_batch_size=section.per_device_train_batch_size,
        gradient_accumulation_steps=gradient_accumulation_steps,
        optim=section.optim,
        # TRL turns the Trainer's checkpointing on by default; under FSDP the one switch is
        # fsdp.activation_checkpointing (FSDP's own), so the Trainer's stays off.
        activation_checkpointing=False,
        save_strategy="steps",
        save_steps=section.save_steps,
        save_total_limit=section.save_total_limit,  # enforced by train.checkpoint over COMPLETE checkpoints
        logging_steps=section.logging_steps,
        seed=cfg.seed,
        data_seed=cfg.seed,
        bf16=(cfg.model.dtype == "bfloat16" or cfg.fsdp.mixed_precision) and not on_cpu,
        use_cpu=on_cpu,
        # One process has nothing to shard with (and accelerate refuses FSDP there): it trains unsharded.
        fsdp=dist_info().world_size > 1,
        fsdp_config=fsdp_config(cfg) if dist_info().world_size > 1 else None,
        torch_compile=section.get("torch_compile", False),
        torch_compile_backend=section.get("torch_compile_backend", None) if section.get("torch_compile") else None,
        use_liger_kernel=section.get("use_liger_kernel", False),
        dataloader_num_workers=0,
        report_to=report_to(cfg),  # the HF callback logs train/* into the run start_run opened (rank 0)
        disable_tqdm=False,
    )


def fsdp_config(cfg: DictConfig) -> dict[str, Any]:
    """TrainingArguments.fsdp_config; transformers turns it into accelerate's FullyShardedDataParallelPlugin."""
    return {
        "version": cfg.fsdp.version,
        "reshard_after_forward": cfg.fsdp.reshard_after_forward,
        "transformer_layer_cls_to_wrap": list(cfg.fsdp.layer_cls_to_wrap),
        "state_dict_type": cfg.fsdp.state_dict_type,
        "cpu_offload": cfg.fsdp.cpu_offload,
        "activation_checkpointing": cfg.fsdp.activation_checkpointing,
        "cpu_ram_efficient_loading": cfg.fsdp.cpu_ram_efficient_loading,
    }


def apply_mixed_precision(cfg: DictConfig, args) -> None:
    """bf16 compute, fp32 gradient reduction: FSDP2's MixedPrecisionPolicy, given to accelerate's plugin.

    transformers' fsdp_config has no key for the policy (training_args._process_fsdp_args), and with bf16=true
    accelerate would fill it with reduce_dtype=bf16; a policy already set on the plugin is kept
    (FullyShardedDataParallelPlugin.set_mixed_precision without override). So it goes into the plugin's
    arguments, which Trainer.create_accelerator_and_postprocess passes as they are.
    """
    if not cfg.fsdp.mixed_precision or args.fsdp_plugin_args is None:
        return
    if uses_cpu(cfg.launcher.backend):
        raise ConfigError("fsdp.mixed_precision=true needs CUDA; this run resolved to gloo on CPU. "
                          "Set fsdp.mixed_precision=false (CPU runs train in model.dtype)")
    args.fsdp_plugin_args["mixed_precision_policy"] = mixed_precision_policy()


def mixed_precision_policy() -> dict[str, torch.dtype]:
    # output_dtype: what the root module returns is cast to it; TRL's fused head returns the loss and per-token
    # log-probs (not logits), which stay fp32 rather than lose precision in bf16.
    return {"param_dtype": torch.bfloat16, "reduce_dtype": torch.float32, "output_dtype": torch.float32}


def load_model(cfg: DictConfig, path: str, trainable: bool = True):
    """The model to train (or, trainable=False, a frozen one), in the dtype FSDP2 will hold its parameters in."""
    kwargs = dict(dtype=load_dtype(cfg, trainable), attn_implementation=cfg.model.attn_implementation,
                  trust_remote_code=cfg.model.trust_remote_code)
    if reads_weights_on_rank0_only(cfg) and not dist_info().is_main:
        model = _empty_model(path, kwargs)
    else:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    # The export casts back to model.dtype; its config.json must say so, not the fp32 of the master weights.
    model.config.dtype = getattr(torch, cfg.model.dtype)
    # With a KV cache the packed-sequence detection is skipped and packed samples see each other (FACTS.md).
    model.config.use_cache = False
    return model


def load_dtype(cfg: DictConfig, trainable: bool) -> torch.dtype:
    """fp32 for trainable weights under mixed precision: accelerate's fsdp2_prepare_model upcasts every
    trainable non-fp32 parameter (`param.data = param.data.to(torch.float32)`) before it moves the model to meta.
    On a rank holding untouched `torch.empty` placeholders that copy commits the whole model in fp32 (a 70B: 280
    GB per rank); placeholders that are fp32 already are skipped, so they stay uncommitted. Rank 0 would hold
    the fp32 copy anyway, and reading it as fp32 avoids holding bf16 and fp32 at once. Frozen parameters
    (the DPO reference) are not upcast and stay in model.dtype."""
    if trainable and cfg.fsdp.mixed_precision:
        return torch.float32
    return getattr(torch, cfg.model.dtype)


def reads_weights_on_rank0_only(cfg: DictConfig) -> bool:
    return bool(cfg.fsdp.cpu_ram_efficient_loading) and dist_info().world_size > 1


def _empty_model(path: str, kwargs: dict[str, Any]):
    """The model built from its config with uninitialised parameters: nothing read, no physical memory used.

    transformers 5.24 reads the weights on every rank even under FSDP's RAM-efficient loading; accelerate then
    moves each rank's model to meta and broadcasts rank 0's weights while sharding it
    (fsdp2_load_full_state_dict), so only rank 0 needs them. The parameters cannot stay on `meta`: accelerate
    maps the optimizer's parameters to the sharded ones by data_ptr, which is 0 for every meta tensor. Untouched
    `torch.empty` pages are never committed by the OS, so they cost address space, not RAM. Buffers (RoPE
    inv_freq) are computed from the config as usual: accelerate re-registers each rank's own.
    """
    from accelerate import init_empty_weights

    config = AutoConfig.from_pretrained(path, trust_remote_code=kwargs["trust_remote_code"])
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, **kwargs)
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            module._parameters[name] = torch.nn.Parameter(  # noqa: SLF001 - replacing a meta parameter in place
                torch.empty(param.shape, dtype=param.dtype, device="cpu"), requires_grad=param.requires_grad)
    model.tie_weights()
    return model


def load_tokenizer(path: str):
    return AutoTokenizer.from_pretrained(path)


def train(trainer, preemption: PreemptionCallback, stage_dir: Path):
    """trainer.train(), resuming from the newest complete checkpoint; raises Preempted after a signal-stop.

    A preempted stage leaves <stage>/PREEMPTED (for launchers: torchrun reports only that workers failed).
    """
    checkpoints_dir, marker = stage_dir / "checkpoints", stage_dir / PREEMPTED_MARKER
    if dist_info().is_main:
        marker.unlink(missing_ok=True)
    result = trainer.train(resume_from_checkpoint=resume_checkpoint(checkpoints_dir))
    if preemption.stopped_at_step is not None:
        if dist_info().is_main:
            marker.write_text(json.dumps({"global_step": preemption.stopped_at_step,
                                          "signal": preemption.flag.signal_name}))
        raise Preempted(f"stopped by a preemption signal at step {preemption.stopped_at_step} after saving "
                        f"{checkpoints_dir}/checkpoint-{preemption.stopped_at_step}; run the same command again "
                        f"to resume from it")
    return result


def sharding_report(model: torch.nn.Module) -> dict[str, Any]:
    """How the trained model's parameters are held: DTensor shards under FSDP2, with local vs global sizes."""
    from torch.distributed.tensor import DTensor

    params = list(model.parameters())
    sharded = [p for p in params if isinstance(p, DTensor)]
    return {
        "num_params_tensors": len(params),
        "num_dtensor_params": len(sharded),
        "global_numel": sum(p.numel() for p in params),
        "local_numel": sum((p.to_local().numel() if isinstance(p, DTensor) else p.numel()) for p in params),
        "placements": sorted({str(p.placements) for p in sharded}),
    }


def finish_training(stage, trainer, result, tokenizer, wandb_run, validation_prompt: str, **extra: Any) -> dict:
    """Export and validate the trained model, then write the stage's manifest and COMPLETE."""
    # Read before the export: what training actually ran with and held per rank.
    sharding = sharding_report(trainer.model)
    distributed_type = str(trainer.accelerator.distributed_type)
    fsdp_version = trainer.accelerator.state.fsdp_plugin.fsdp_version if trainer.is_fsdp_enabled else None
    if dist_info().is_main:  # loss per logging step, from the first step even across resumes
        (stage.dir / "log_history.json").write_text(json.dumps(trainer.state.log_history, indent=1))
    # keep_torch_compile=False: a compiled model's state dict names carry `_orig_mod.`, which no loader would find.
    plain_model = trainer.accelerator.unwrap_model(trainer.model, keep_torch_compile=False)
    export = export_model(plain_model, tokenizer, stage.dir / "model",
                          validation_prompt, size_in_bytes(stage.cfg.export.max_shard_size),
                          dtype=getattr(torch, stage.cfg.model.dtype), wait_timeout_s=stage.cfg.export.wait_timeout_s)
    figures = {"train_loss": result.training_loss, "global_steps": result.global_step,
               "train_runtime_s": result.metrics.get("train_runtime"), "sharding_rank0": sharding}
    outputs = {"model": export, "checkpoints": {"path": str(stage.dir / "checkpoints")}}
    manifest = finish_stage(stage, outputs, figures, fsdp_version=fsdp_version,
                            distributed_type=distributed_type,
                            wandb_run_id=wandb_run.id, **extra)
    wandb_run.finish()
    return manifest
