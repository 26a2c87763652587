"""The `dpo` stage: iterative DPO (TRL DPOTrainer on FSDP2), one round per `dpo.iterations`, chained.

Launch: torchrun --nproc-per-node 2 -m med42_train dpo run_dir=runs/demo
Reads <run_dir>/data/ and <run_dir>/sft/ (COMPLETE, validated export). Iteration k trains on the pairs tagged
`iteration: k`, from iteration k-1's export (k=1: the SFT export), against a reference that is iteration k-1's
model or the SFT model (`dpo.reference_model`), and writes <run_dir>/dpo/iter_<k>/ with the stage contract
(config, manifest naming its start and reference, checkpoints, validated export, COMPLETE).
<run_dir>/dpo/manifest.json lists the iterations; its `outputs.model` is the last one's export.
A re-run resumes at the first incomplete iteration, inside it from its newest complete checkpoint; a changed
iteration is redone, and so is every one after it (each names its predecessor's fingerprint among its inputs).
"""

from __future__ import annotations

import gc
import shutil
import time
from pathlib import Path
from typing import Any

from datasets import load_from_disk
from omegaconf import DictConfig
from trl import DPOConfig, DPOTrainer

from med42_train.config import dpo_gradient_accumulation
from med42_train.models.chat import EOT
from med42_train.runtime.dist import broadcast_object, dist_info, wait_group
from med42_train.runtime.log import get_logger
from med42_train.runtime.rundir import (
    StageInputError, begin_stage, finish_stage, require_complete, sha256_files, sha256_tree, stage_dir, stage_input,
)
from med42_train.runtime.wandb_run import start_run
from med42_train.train import reference as ref
from med42_train.train.checkpoint import AtomicCheckpointMixin, install_preemption
from med42_train.train.common import (
    apply_mixed_precision, finish_training, load_model, load_tokenizer, sharding_report, start_distributed, train,
    trainer_kwargs,
)
from med42_train.train.metrics import ThroughputMetricsMixin
from med42_train.train.pairs import BOS, HEADER_START, check_pairs, pairs_fingerprint

log = get_logger()
PREFERENCE_COLUMNS = ["prompt_ids", "chosen_ids", "rejected_ids"]
REFERENCE_CACHE = "reference_cache"


class PretokenizedDPOTrainer(ThroughputMetricsMixin, AtomicCheckpointMixin, DPOTrainer):
    """DPOTrainer fed the data stage's token ids as they are (no tokenization inside the distributed job), built
    without a reference model of its own (train/reference.py); tokens/s, MFU and peak memory in every log
    (train/metrics.py); atomic COMPLETE-marked checkpoints like SFT's (train/checkpoint.py)."""

    def __init__(self, *args, precomputed_reference: bool, **kwargs):
        with ref.without_reference_load():
            super().__init__(*args, **kwargs)
        # The batch then carries ref_chosen_logps / ref_rejected_logps, and _compute_loss reads them.
        self.precompute_ref_logps = precomputed_reference

    def _prepare_dataset(self, dataset, processing_class, args, dataset_name):
        missing = set(PREFERENCE_COLUMNS) - set(dataset.column_names)
        if missing:
            raise ValueError(f"{dataset_name} preference dataset lacks {sorted(missing)}: re-run `med42 data`")
        return dataset


def stage_inputs(cfg: DictConfig) -> dict[str, dict[str, str]]:
    return {"data": stage_input(cfg, "data")[1], "sft": stage_input(cfg, "sft")[1]}


def run(cfg: DictConfig) -> None:
    start_distributed(cfg, "dpo")
    preemption = install_preemption()
    # The global batch is fixed in pairs; refuse a world size that cannot make it before any model loads.
    accumulation = dpo_gradient_accumulation(cfg, dist_info().world_size)
    _refuse_iterations_without_pairs(cfg)
    stage = begin_stage(cfg, "dpo", stage_inputs(cfg), keep_rounds=True)
    if stage is None:
        return
    cfg = stage.cfg
    _remove_rounds_beyond(stage.dir, cfg.dpo.iterations)
    rounds, last = [], cfg.dpo.until_iteration or cfg.dpo.iterations
    for k in range(1, last + 1):
        rounds.append(run_iteration(cfg, k, accumulation, preemption))
        gc.collect()  # the finished round's trainer, policy and optimizer state
    if last < cfg.dpo.iterations:  # one job per round (launch/slurm.py): the stage completes with the last
        log.info("dpo.until_iteration=%d: rounds 1-%d COMPLETE, stage waits for round %d", last, last, last + 1)
        return
    outputs = {"model": rounds[-1]["model"], "iterations": rounds,
               "reference_cache": {"path": str(stage.dir / REFERENCE_CACHE)}}
    finish_stage(stage, outputs, {"iterations": len(rounds)}, reference_model_choice=cfg.dpo.reference_model)


def iteration_stage(k: int) -> str:
    return f"dpo/iter_{k}"


def run_iteration(cfg: DictConfig, k: int, accumulation: int, preemption) -> dict[str, Any]:
    """Train iteration k (or find it up to date) and return its entry for the stage manifest."""
    start, reference = _start_stage(k), _reference_stage(cfg, k)
    inputs = {"data": stage_input(cfg, "data")[1], "start": stage_input(cfg, start)[1],
              "reference": stage_input(cfg, reference)[1]}
    round_ = begin_stage(cfg, iteration_stage(k), inputs)
    if round_ is not None:
        _train_iteration(round_, k, start, reference, accumulation, preemption)
    manifest = require_complete(cfg, iteration_stage(k))
    return {"iteration": k, "dir": str(stage_dir(cfg, iteration_stage(k))), "model": manifest["outputs"]["model"],
            "manifest": str(stage_dir(cfg, iteration_stage(k)) / "manifest.json")}


def _train_iteration(round_, k: int, start: str, reference: str, accumulation: int, preemption) -> None:
    cfg, wandb_run = round_.cfg, start_run(round_.cfg, f"dpo-iter{k}", round_.dir)
    log.info("DPO iteration %d of %d: from %s, reference %s", k, cfg.dpo.iterations, start, reference)

    # ---- start and reference: validated exports; the pairs, checked: all before any model loads ----
    start_export = validated_export(cfg, require_complete(cfg, start), start)
    reference_manifest = require_complete(cfg, reference)
    # The default reference is the start itself: one hash check of a 140 GB export is enough.
    reference_export = start_export if reference == start else validated_export(cfg, reference_manifest, reference)
    reference_sha256 = reference_manifest["outputs"]["model"]["sha256"]
    tokenizer = load_tokenizer(start_export)
    dataset, pair_report, fingerprint = iteration_pairs(cfg, k, tokenizer)

    # ---- policy and trainer (no reference model inside it) ----
    model = load_model(cfg, start_export)
    trainer = _trainer(cfg, round_.dir, model, tokenizer, dataset, accumulation, preemption)

    # ---- reference: precomputed (cached) log-probs, or a live sharded model ----
    reference_report = attach_reference(cfg, trainer, dataset, reference_export, reference_sha256, fingerprint)

    # ---- train, export, validate, manifest ----
    result = train(trainer, preemption, round_.dir)
    finish_training(round_, trainer, result, tokenizer, wandb_run, cfg.sft.validation_prompt, iteration=k,
                    start_model={"stage": start, "path": start_export,
                                 "sha256": require_complete(cfg, start)["outputs"]["model"]["sha256"]},
                    reference_model={"stage": reference, "path": reference_export, "sha256": reference_sha256},
                    pairs=pair_report, reference=reference_report, gradient_accumulation_steps=accumulation)


def _start_stage(k: int) -> str:
    return "sft" if k == 1 else iteration_stage(k - 1)


def _reference_stage(cfg: DictConfig, k: int) -> str:
    return "sft" if cfg.dpo.reference_model == "sft" else _start_stage(k)


def _remove_rounds_beyond(directory: Path, num_iterations: int) -> None:
    """Rounds left by an earlier run with more iterations are not part of this one."""
    for path in sorted(directory.glob("iter_*")) if dist_info().is_main else []:
        if path.name.removeprefix("iter_").isdigit() and int(path.name.removeprefix("iter_")) > num_iterations:
            log.warning("dpo.iterations=%d: removing %s", num_iterations, path)
            shutil.rmtree(path)


# ---- pairs ----

def _refuse_iterations_without_pairs(cfg: DictConfig) -> None:
    """Every round must have pairs: found now, not after the rounds before it have trained."""
    record = require_complete(cfg, "data")["outputs"]["preference_dataset"]
    tagged = set(load_from_disk(record["path"]).unique("iteration"))
    for k in range(1, cfg.dpo.iterations + 1):
        if k not in tagged:
            fewer = f", or set dpo.iterations={k - 1}" if k > 1 else ""
            raise StageInputError(f"{record['path']}: no preference pairs are tagged iteration {k}. Add a "
                                  f"preference source with `iteration: {k}` to the recipe (data_recipes/README.md) "
                                  f"and re-run `med42 data`{fewer}")


def iteration_pairs(cfg: DictConfig, k: int, tokenizer):
    """The checked pairs of iteration k (a Dataset of the three id columns), the check's report, their fingerprint."""
    record = require_complete(cfg, "data")["outputs"]["preference_dataset"]
    full = load_from_disk(record["path"])
    rows = [i for i, it in enumerate(full["iteration"]) if it == k]
    where = f"DPO iteration {k} ({record['path']})"
    subset = full.select(rows).select_columns(PREFERENCE_COLUMNS)
    token_ids = {token: tokenizer.convert_tokens_to_ids(token) for token in (BOS, EOT, HEADER_START)}
    kept, report = check_pairs(subset.data.table, token_ids, cfg.data.preference_max_length,
                               cfg.dpo.max_truncated_fraction, where)
    if report.dropped:
        log.warning("%s: dropped %s of %d pairs", where, report.dropped, report.num_pairs)
    return subset.select(kept), report.as_dict(), pairs_fingerprint(record["sha256"], k, [rows[i] for i in kept])


# ---- trainer ----

def _trainer(cfg: DictConfig, round_dir: Path, model, tokenizer, dataset, accumulation: int, preemption):
    args = DPOConfig(
        **trainer_kwargs(cfg, cfg.dpo, round_dir / "checkpoints", accumulation),
        beta=cfg.dpo.beta,
        loss_type=[cfg.dpo.loss_type],
        ld_alpha=cfg.dpo.ld_alpha,
        max_length=cfg.data.preference_max_length,  # TRL's default would be 1024
        truncation_mode=ref.TRUNCATION_MODE,
        precompute_ref_log_probs=False,  # TRL's own precompute is replaced by train/reference.py
        run_name=f"{cfg.name}-dpo",
    )
    apply_mixed_precision(cfg, args)
    return PretokenizedDPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                  callbacks=[preemption], precomputed_reference=cfg.dpo.reference == "precomputed",
                                  peak_tflops_per_device=cfg.launcher.peak_tflops_per_device)


def attach_reference(cfg: DictConfig, trainer, dataset, reference_export: str, reference_sha256: str,
                     fingerprint: str) -> dict[str, Any]:
    """Give the trainer its reference: cached log-probs as dataset columns, or (live) a sharded model."""
    if cfg.dpo.reference == "live":
        trainer.ref_model = ref.load_sharded_reference(cfg, reference_export, trainer.accelerator)
        return {"mode": "live", "num_forward_pairs": 0, "num_fsdp_units": ref.num_fsdp_units(trainer.ref_model),
                "sharding_rank0": sharding_report(trainer.ref_model)}
    key = ref.reference_cache_key(cfg, reference_sha256, fingerprint)
    cache = ref.ReferenceCache(stage_dir(cfg, "dpo") / REFERENCE_CACHE)
    cached = cache.load(key)
    report: dict[str, Any] = {"mode": "precomputed", "cache_key": key, "cache_path": str(cache.root),
                              "pairs_fingerprint": fingerprint, "num_pairs": len(dataset)}
    if cached is None:
        cached, report["check"] = _reference_pass(cfg, trainer, dataset, reference_export)
        cache.save(key, *cached, record={**report, "reference_export": reference_export,
                                         "reference_sha256": reference_sha256})
        report.update(cache="miss", num_forward_pairs=len(dataset))
    else:
        report.update(cache="hit", num_forward_pairs=0)
        log.info("reference log-probs: cache hit %s (no reference forward)", key)
    trainer.train_dataset = ref.with_reference_columns(dataset, *cached)
    return report


def _reference_pass(cfg: DictConfig, trainer, dataset, reference_export: str):
    started = time.time()
    reference = ref.load_sharded_reference(cfg, reference_export, trainer.accelerator)
    chosen, rejected = ref.compute_reference_logps(trainer, reference, dataset, cfg.dpo.reference_batch_size)
    check = ref.check_against_single_pairs(trainer, reference, dataset, chosen, rejected,
                                           cfg.dpo.reference_check_pairs, cfg.dpo.reference_check_tolerance)
    del reference  # the training job holds no reference model
    ref.release_memory()
    check["pass_wall_s"] = round(time.time() - started, 2)
    log.info("reference log-probs of %d pairs in %.1f s (check: %s)", len(dataset), check["pass_wall_s"], check)
    return (chosen, rejected), check


# ---- exports ----

def validated_export(cfg: DictConfig, manifest: dict, stage: str = "sft") -> str:
    """A training stage's export path, if its manifest says it was validated and its files still hash as recorded.

    Rank 0 hashes (a 70B export is 140 GB) while the others wait on a group sized for it (export.wait_timeout_s),
    and every rank raises the same error, before any model loads.
    """
    record = manifest.get("outputs", {}).get("model", {})
    waiting = wait_group(cfg.export.wait_timeout_s)  # every rank, before rank 0 hashes
    problem = broadcast_object(_export_problem(record) if dist_info().is_main else None, group=waiting)
    if problem:
        command = "med42 sft" if stage == "sft" else "med42 dpo"
        raise StageInputError(f"{cfg.run_dir}/{stage}/manifest.json: {problem}; rerun "
                              f"`{command} run_dir={cfg.run_dir} overwrite=true` to export and validate it again")
    return record["path"]


def _export_problem(record: dict):
    path = record.get("path")
    if not record.get("validated") or not record.get("sha256"):
        return f"the export {path} is not recorded as validated (outputs.model.validated / sha256 missing)"
    if not path or not Path(path).is_dir():
        return f"the export folder {path} is missing"
    if record.get("file_sha256"):  # recorded per file at export time: name the file that changed
        actual_files = sha256_files(Path(path))
        changed = sorted(name for name in set(actual_files) | set(record["file_sha256"])
                         if actual_files.get(name) != record["file_sha256"].get(name))
        if changed:
            return f"{path} changed after validation (files {changed[:5]} differ from their recorded sha256)"
    actual = sha256_tree(Path(path))
    if actual != record["sha256"]:
        return f"{path} changed after validation (sha256 {actual[:12]}..., recorded {record['sha256'][:12]}...)"
    return None
