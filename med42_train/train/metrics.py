"""Training metrics every logging step, in the Trainer's own logs (so the console and W&B get the same numbers).

train/tokens_per_s      non-padding tokens per second, all ranks summed
train/mfu               model FLOPs utilisation: 6 N_body + 12 L H S_eff FLOPs per token, plus 6 N_head per
                        supervised token, against the accelerator's dense bf16 peak (N_body: the parameters every
                        token goes through, the input embedding excluded; N_head: the LM head, which TRL's fused
                        head projects only at supervised positions; S_eff = sum(len^2) / sum(len) over the real
                        packed samples, so attention is counted per sample, not per packed row)
train/padding_fraction  padding tokens / all tokens fed to the model
train/peak_memory_gib   CUDA max allocated (max over ranks) on GPU, peak RSS on CPU
train/num_tokens        non-padding tokens trained on so far, all ranks
train/loss/<source>     token-weighted loss per data source over the logging interval, all ranks

The numbers must be in the `logs` dict before the Trainer hands it to its callbacks (the W&B one among them),
so they are added by a `log` override rather than by a callback that would run after W&B's. The per-source
loss reuses the per-token log-probabilities TRL's fused LM head already computes (no logits are materialised).
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Any, Iterable, Optional

import torch
import torch.distributed as torch_dist

# The content key the data stage wrote the index with: the collator computes the same keys.
from med42_train.data.source_index import sample_key

# NVIDIA H100 SXM5 datasheet: 1,979 TFLOP/s bf16 Tensor Core "with sparsity"; dense is half of it, 989.4.
H100_SXM_DENSE_BF16_TFLOPS = 989.0
UNKNOWN_SOURCE = -1  # tokens whose sample is not in the source index (and padding)


# ---- formulas ----

def flops_params(model: torch.nn.Module) -> tuple[int, int]:
    """(N_body, N_head): the parameters every token goes through, and the LM head's.

    The input embedding is a lookup (no FLOPs). TRL's fused LM head projects only the positions whose next label
    is supervised, so the head is counted per supervised token. A tied head shares the embedding's tensor (counted
    once by parameters()), but its matmul still runs. DTensor.numel() is the global size, so this holds under FSDP2.
    """
    embedding = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    total = sum(p.numel() for p in model.parameters())
    body = total - embedding.numel() - (0 if head is embedding else head.numel())
    return body, head.numel()


def training_flops(num_tokens: float, num_supervised: float, sum_len_sq: float, body_params: int,
                   head_params: int, num_layers: int, hidden_size: int) -> float:
    """FLOPs of forward + backward over `num_tokens` tokens (`num_supervised` of them projected by the LM head) of
    samples whose squared lengths sum to `sum_len_sq`.

    Per token: 6 N_body (matmuls with the weights) + 12 L H S_eff (attention scores and values), S_eff the sample's
    length; summed over the tokens of a sample of length l that is l * 12 L H l, hence 12 L H sum(l^2). Per
    supervised token: 6 N_head.
    """
    return (6.0 * body_params * num_tokens + 6.0 * head_params * num_supervised
            + 12.0 * num_layers * hidden_size * sum_len_sq)


def mfu(flops: float, elapsed_s: float, world_size: int, peak_tflops_per_device: Optional[float]) -> Optional[float]:
    if not peak_tflops_per_device or elapsed_s <= 0:
        return None
    return flops / (elapsed_s * world_size * peak_tflops_per_device * 1e12)


def resolve_peak_tflops(configured: Optional[float]) -> Optional[float]:
    """The configured peak, else the H100 SXM one on CUDA, else None (no fake MFU on CPU)."""
    if configured:
        return float(configured)
    return H100_SXM_DENSE_BF16_TFLOPS if torch.cuda.is_available() else None


# ---- what one batch holds ----

def sample_lengths(inputs: dict[str, Any]) -> torch.Tensor:
    """Lengths of the real samples in a collated batch.

    Padding-free packed batches carry `cu_seq_lens_q` (sample boundaries; no padding, as we never set
    pad_to_multiple_of); padded batches an attention_mask; otherwise every row is one whole sample.
    """
    if "attention_mask" in inputs:
        return inputs["attention_mask"].sum(dim=1)
    if "cu_seq_lens_q" in inputs:
        return inputs["cu_seq_lens_q"].diff()
    input_ids = inputs["input_ids"]
    return torch.full((input_ids.shape[0],), input_ids.shape[1], device=input_ids.device)


def batch_token_stats(inputs: dict[str, Any]) -> torch.Tensor:
    """[non-padding tokens, padding tokens, sum of squared sample lengths, positions the LM head projects] of one
    collated batch (float64)."""
    lengths = sample_lengths(inputs).to(torch.float64)
    num_real = lengths.sum()
    num_padding = inputs["input_ids"].numel() - num_real
    # Stays on the batch's device: a .cpu() here would make every micro-batch wait for the GPU.
    return torch.stack([num_real, num_padding, (lengths ** 2).sum(), num_projected(inputs, num_real)])


def num_projected(inputs: dict[str, Any], num_real: torch.Tensor) -> torch.Tensor:
    """Positions whose next token is supervised: where TRL's fused LM head runs (SFT labels; DPO completion mask)."""
    if "labels" in inputs:
        return (inputs["labels"][..., 1:] != -100).sum().to(torch.float64)
    if "completion_mask" in inputs:
        return inputs["completion_mask"][..., 1:].sum().to(torch.float64)
    return num_real


def peak_memory_gib() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**30
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**30 if sys.platform == "darwin" else 2**20)


# ---- per-source loss ----

class SourceTaggingCollator:
    """Wraps TRL's collator: adds `source_ids`, the source of every token position, laid out like `labels`."""

    def __init__(self, collator, source_index: dict[bytes, int]):
        self.collator, self.source_index = collator, source_index

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator(examples)
        rows = [self._row_sources(example) for example in examples]
        if batch["input_ids"].shape[0] == 1 and len(rows) > 1:  # padding-free: rows are concatenated into one
            rows = [torch.cat(rows)]
        width = batch["input_ids"].shape[1]
        batch["source_ids"] = torch.stack(
            [torch.nn.functional.pad(row, (0, width - row.numel()), value=UNKNOWN_SOURCE) for row in rows])
        return batch

    def _row_sources(self, example: dict[str, Any]) -> torch.Tensor:
        token_ids = list(example["input_ids"])
        lengths = example.get("seq_lengths") or [len(token_ids)]
        parts, start = [], 0
        for length in lengths:
            source = self.source_index.get(sample_key(token_ids[start:start + length]), UNKNOWN_SOURCE)
            parts.append(torch.full((length,), source, dtype=torch.long))
            start += length
        return torch.cat(parts)


def per_source_sums(token_losses: torch.Tensor, mask: torch.Tensor, sources: torch.Tensor,
                    num_sources: int) -> torch.Tensor:
    """[loss sum per source..., supervised tokens per source...] of one batch (detached, float64).

    token_losses, mask and sources are aligned per predicted position (the labels already shifted). Written
    without boolean indexing or bincount, whose output sizes depend on the data and would make every
    micro-batch wait for the GPU: unsupervised or unknown positions go to an extra bin that is dropped.
    """
    keep = mask & (sources >= 0)
    bins = torch.where(keep, sources, num_sources).flatten()
    weights = keep.flatten().to(torch.float64)
    sums = torch.zeros(num_sources + 1, dtype=torch.float64, device=token_losses.device)
    sums.index_add_(0, bins, token_losses.detach().flatten().to(torch.float64) * weights)
    counts = torch.zeros_like(sums).index_add_(0, bins, weights)
    return torch.cat([sums[:num_sources], counts[:num_sources]])


def source_losses(totals: torch.Tensor, names: list[str]) -> dict[str, float]:
    sums, counts = totals[: len(names)], totals[len(names):]
    return {f"loss/{name}": float(sums[i] / counts[i]) for i, name in enumerate(names) if counts[i] > 0}


# ---- trainer hooks ----

class ThroughputMetricsMixin:
    """Adds tokens/s, MFU, padding fraction, peak memory and token count to every training log (all ranks)."""

    def __init__(self, *args, peak_tflops_per_device: Optional[float] = None, **kwargs):
        super().__init__(*args, **kwargs)
        config = self.model.config
        self._flops_shape = (*flops_params(self.model), config.num_hidden_layers, config.hidden_size)
        self._peak_tflops = resolve_peak_tflops(peak_tflops_per_device)
        self._interval_stats = torch.zeros(4, dtype=torch.float64, device=self.accelerator.device)
        self._num_tokens_total = 0.0
        self._interval_start: Optional[float] = None

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training:
            self._interval_start = self._interval_start or time.perf_counter()
            self._interval_stats += batch_token_stats(inputs).to(self._interval_stats.device)
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
        if "loss" in logs and self._interval_start is not None:  # a training log (not eval, not the summary)
            logs.update(self._throughput_logs())
        super().log(logs, start_time)

    def _throughput_logs(self) -> dict[str, float]:
        elapsed_s = time.perf_counter() - self._interval_start
        num_real, num_padding, sum_len_sq, num_supervised = self.accelerator.reduce(
            self._interval_stats, reduction="sum").tolist()
        self._num_tokens_total += num_real
        flops = training_flops(num_real, num_supervised, sum_len_sq, *self._flops_shape)
        utilisation = mfu(flops, elapsed_s, self.accelerator.num_processes, self._peak_tflops)
        logs = {"tokens_per_s": num_real / elapsed_s,
                "padding_fraction": num_padding / max(num_real + num_padding, 1.0),
                "num_tokens": self._num_tokens_total,
                "peak_memory_gib": self._max_over_ranks(peak_memory_gib())}
        if utilisation is not None:
            logs["mfu"] = utilisation
        self._interval_stats.zero_()
        self._interval_start = time.perf_counter()
        return logs

    def _max_over_ranks(self, value: float) -> float:
        if not torch_dist.is_initialized():
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.accelerator.device)
        torch_dist.all_reduce(tensor, op=torch_dist.ReduceOp.MAX)
        return float(tensor.item())


class PerSourceLossMixin:
    """Logs loss/<source>: the per-token losses of TRL's fused LM head, summed per source, all ranks.

    The collator is wrapped to carry `source_ids` (TRL's dataset preparation drops every extra column); the
    forward's output is read through a hook, so the loss and its gradient stay exactly TRL's.
    """

    def __init__(self, *args, source_names: Iterable[str] = (), source_index: Optional[dict] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._source_names = list(source_names)
        self._source_totals = None
        if source_index is not None and self._source_names:
            self.data_collator = SourceTaggingCollator(self.data_collator, source_index)
            self._source_totals = torch.zeros(2 * len(self._source_names), dtype=torch.float64,
                                              device=self.accelerator.device)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        source_ids = inputs.pop("source_ids", None)
        if source_ids is None or not model.training:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        outputs = []
        handle = model.register_forward_hook(lambda _module, _args, output: outputs.append(output))
        try:
            result = super().compute_loss(model, inputs, return_outputs=return_outputs,
                                          num_items_in_batch=num_items_in_batch)
        finally:
            handle.remove()
        fused = outputs[0]  # TRL's fused forward: log_probs and label_mask per predicted position
        sources = source_ids[:, 1:].to(fused.log_probs.device)  # the source of each predicted (next) token
        self._source_totals += per_source_sums(-fused.log_probs, fused.label_mask, sources,
                                               len(self._source_names)).to(self._source_totals.device)
        return result

    def log(self, logs: dict[str, float], start_time: Optional[float] = None) -> None:
        if "loss" in logs and self._source_totals is not None:
            totals = self.accelerator.reduce(self._source_totals, reduction="sum").cpu()
            logs.update(source_losses(totals, self._source_names))
            self._source_totals.zero_()
        super().log(logs, start_time)
