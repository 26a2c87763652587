"""The DPO reference: its log-probs computed once per iteration under FSDP2 and cached, or a live sharded model.

Precomputed (default): before iteration k trains, its reference export is loaded (rank 0 only reads the weights
under RAM-efficient loading), sharded per decoder layer exactly like the policy (accelerate's fsdp2_prepare_model),
and run forward over the iteration's pairs, each rank a contiguous block, with TRL's own collator and TRL's own
`compute_ref_log_probs` (so truncation, masks and LD-DPO weighting are TRL's); the per-pair sums are gathered in
dataset order, written to `<run_dir>/dpo/reference_cache/<key>.safetensors` and the model is freed. The trainer
then reads them as its `ref_chosen_logps` / `ref_rejected_logps` columns and holds no reference model.

The cache key covers everything that changes the numbers: the reference export's hash, the pairs' fingerprint,
max length, truncation mode, LD-DPO alpha, model dtype, mixed precision and attention kernel.

Why not TRL's `precompute_ref_log_probs`: under FSDP it loads a second, unsharded copy of the reference on every
rank, hashes every weight on CPU and runs before FSDP2 prepares anything (trl issue 6470). So the trainer is built
without any reference (`without_reference_load`) and told afterwards that the log-probs come with the batch.
Live mode keeps TRL's per-step reference forward, with our reference sharded per layer (TRL's own would be
sharded at the root only, hence gathered whole on each GPU).
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from omegaconf import DictConfig
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from med42_train.runtime.dist import barrier, dist_info
from med42_train.runtime.log import get_logger

log = get_logger()
TRUNCATION_MODE = "keep_start"  # TRL's DataCollatorForPreference default, the one our trainer uses


class ReferenceCheckError(RuntimeError):
    """The cached reference log-probs do not match a one-pair-at-a-time recomputation."""


# ---- the trainer, built without a reference ----

@contextlib.contextmanager
def without_reference_load():
    """DPOTrainer.__init__ loads a reference from the policy's path whenever none is given under FSDP (whole, on
    every rank). Ours is either precomputed or sharded by us once the trainer's accelerator exists."""
    import trl.trainer.dpo_trainer as dpo_trainer_module

    original = dpo_trainer_module.create_model_from_path
    dpo_trainer_module.create_model_from_path = lambda *args, **kwargs: None
    try:
        yield
    finally:
        dpo_trainer_module.create_model_from_path = original


def load_sharded_reference(cfg: DictConfig, path: str, accelerator) -> torch.nn.Module:
    """The frozen reference export, loaded like the policy (rank 0 only under RAM-efficient loading), sharded."""
    from med42_train.train.common import load_model

    return prepare_reference(load_model(cfg, path, trainable=False), accelerator)


def prepare_reference(model: torch.nn.Module, accelerator) -> torch.nn.Module:
    """Frozen, with TRL's fused LM head, sharded per decoder layer like the policy (accelerate's FSDP2 path)."""
    from accelerate.utils import DistributedType
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model
    from trl.trainer.utils import add_fused_lm_head, disable_dropout_in_model

    model.requires_grad_(False)  # frozen: no fp32 master copy under mixed precision, no gradients
    model.eval()
    disable_dropout_in_model(model)
    add_fused_lm_head(model)
    if accelerator.distributed_type == DistributedType.FSDP:
        return fsdp2_prepare_model(accelerator, model)
    return model.to(accelerator.device)


def num_fsdp_units(model: torch.nn.Module) -> int:
    """FSDP2-wrapped modules: one per decoder layer plus the embedding/tail/root groups when sharded per layer."""
    from torch.distributed.fsdp import FSDPModule

    return sum(isinstance(module, FSDPModule) for module in model.modules())


def release_memory() -> None:
    """Return what the caller has just dropped (a reference model) to the allocator and, on CUDA, the device."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---- the cache ----

def reference_cache_key(cfg: DictConfig, reference_sha256: str, pairs_fingerprint: str) -> str:
    settings = {"reference_sha256": reference_sha256, "pairs": pairs_fingerprint,
                "max_length": cfg.data.preference_max_length, "truncation_mode": TRUNCATION_MODE,
                "ld_alpha": cfg.dpo.ld_alpha, "dtype": cfg.model.dtype, "mixed_precision": cfg.fsdp.mixed_precision,
                "attn_implementation": cfg.model.attn_implementation}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]


class ReferenceCache:
    """`<root>/<key>.safetensors` (chosen, rejected: fp32 per pair, dataset order) + `<key>.json` (what made it)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def load(self, key: str) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        path = self.root / f"{key}.safetensors"
        if not path.is_file():
            return None
        tensors = load_file(str(path))
        return tensors["chosen"], tensors["rejected"]

    def save(self, key: str, chosen: torch.Tensor, rejected: torch.Tensor, record: dict[str, Any]) -> None:
        """Rank 0 writes, atomically (a killed write never looks like a cache entry); every rank waits."""
        if dist_info().is_main:
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = self.root / f".{key}.tmp-{os.getpid()}"
            save_file({"chosen": chosen.contiguous(), "rejected": rejected.contiguous()}, str(tmp))
            (self.root / f"{key}.json").write_text(json.dumps(record, indent=2, sort_keys=True))
            os.replace(tmp, self.root / f"{key}.safetensors")
        barrier()


# ---- the distributed pass ----

@torch.no_grad()
def compute_reference_logps(trainer, reference, dataset, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) summed reference log-probs of every pair of `dataset`, in dataset order, on CPU.

    Each rank runs a contiguous block of ceil(n / world) pairs; the last blocks are padded with pair 0 so that every
    rank runs the same number of forwards (each FSDP2 forward is a collective), and the padding is dropped after
    the gather, which concatenates the blocks in rank order.
    """
    info = dist_info()
    num_pairs = len(dataset)
    block = -(-num_pairs // info.world_size)
    rows = [i if i < num_pairs else 0 for i in range(info.rank * block, (info.rank + 1) * block)]
    chosen, rejected = [], []
    batches = range(0, block, batch_size)
    for start in tqdm(batches, desc="reference log-probs", disable=not info.is_main, leave=False):
        batch_rows = rows[start:start + batch_size]
        c, r = _forward(trainer, reference, [dataset[i] for i in batch_rows])
        chosen.append(c)
        rejected.append(r)
    gathered = trainer.accelerator.gather(torch.stack([torch.cat(chosen), torch.cat(rejected)], dim=1))
    gathered = gathered.float().cpu()[:num_pairs]
    return gathered[:, 0].contiguous(), gathered[:, 1].contiguous()


def _forward(trainer, reference, examples: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
    columns = ("prompt_ids", "chosen_ids", "rejected_ids")
    batch = trainer.data_collator([{key: example[key] for key in columns} for example in examples])
    batch = {key: value.to(trainer.accelerator.device) for key, value in batch.items()}
    chosen, rejected = trainer.compute_ref_log_probs(reference, batch)
    return chosen.float(), rejected.float()


@torch.no_grad()
def check_against_single_pairs(trainer, reference, dataset, chosen: torch.Tensor, rejected: torch.Tensor,
                               num_pairs: int, tolerance: float) -> dict[str, Any]:
    """Recompute `num_pairs` pairs spread over the dataset (so over every rank's block) one at a time, each in a
    batch of its own, and compare with the gathered values: a wrong gather order or a padding leak shows here."""
    rows = sorted({int(i) for i in np.linspace(0, len(dataset) - 1, num=min(num_pairs, len(dataset)))})
    worst = 0.0
    for row in rows:
        single_chosen, single_rejected = _forward(trainer, reference, [dataset[row]])
        for cached, single in ((chosen[row], single_chosen[0]), (rejected[row], single_rejected[0])):
            worst = max(worst, abs(float(cached) - float(single)) / max(abs(float(single)), 1.0))
    report = {"pairs": rows, "max_relative_difference": worst, "tolerance": tolerance}
    if worst > tolerance:
        raise ReferenceCheckError(
            f"reference log-probs of the distributed pass differ from a one-pair recomputation by {worst:.3g} "
            f"(relative, over pairs {rows}), above dpo.reference_check_tolerance={tolerance}: with bf16 compute "
            f"raise the tolerance; otherwise this is a bug, report it with the manifest")
    return report


def with_reference_columns(dataset, chosen: torch.Tensor, rejected: torch.Tensor):
    return dataset.add_column("ref_chosen_logps", chosen.tolist()).add_column("ref_rejected_logps", rejected.tolist())
