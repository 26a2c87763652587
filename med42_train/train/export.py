"""The training stages' deliverable: an HF export (sharded safetensors), streamed, validated before it is declared.

The export never gathers the whole model in one process: every rank takes part in gathering one parameter at
a time (DTensor.full_tensor(), same order everywhere), rank 0 moves it to CPU and appends it to the current
safetensors shard, and a shard is written as soon as it reaches `max_shard_bytes`. Rank 0 therefore holds at
most one shard plus one tensor (a 70B model in bf16 is 140 GB; a shard is 5 GB by default).

Validation (train/export_check.py) has bounded memory too: every shard is read back one tensor at a time and
compared with what was written (names, shapes, dtypes, sha256 of the bytes), then transformers loads the export
with its decoder layers offloaded to disk and generates one reply, which must end on <|eot_id|>.
Rank 0 writes, validates and hashes alone while the other ranks wait on a gloo group with its own timeout
(`export.wait_timeout_s`), not inside the training group's 30-minute one.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator, Optional

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from med42_train.models.chat import generation_config
from med42_train.runtime.dist import broadcast_object, dist_info, wait_group
from med42_train.runtime.log import get_logger
from med42_train.runtime.rundir import sha256_files, tree_digest
from med42_train.train.export_check import ExportError, generate_reply, tensor_record, validate_export

__all__ = ["ExportError", "INDEX_NAME", "export_model", "generate_reply"]

log = get_logger()

INDEX_NAME = "model.safetensors.index.json"
SINGLE_SHARD_NAME = "model.safetensors"


class ShardWriter:
    """Appends tensors to an in-memory shard and writes it to disk once it reaches `max_shard_bytes`.

    A tensor larger than the bound gets a shard of its own (as huggingface_hub does). `peak_held_bytes` is the
    most this writer held at once (its shard plus the incoming tensor): the export's extra memory on rank 0.
    `written` ({final file name: {tensor name: tensor_record}}, after finish) is what validation compares with.
    """

    def __init__(self, out_dir: Path, max_shard_bytes: int):
        self.out_dir, self.max_shard_bytes = Path(out_dir), max_shard_bytes
        self.shard: dict[str, torch.Tensor] = {}
        self.shard_bytes = 0
        self.files: list[tuple[str, dict[str, dict]]] = []  # (temporary file name, records) per written shard
        self.records: dict[str, dict] = {}  # the current shard's
        self.written: dict[str, dict[str, dict]] = {}
        self.total_bytes = self.peak_held_bytes = 0

    def add(self, name: str, tensor: torch.Tensor) -> None:
        num_bytes = tensor.numel() * tensor.element_size()
        if self.shard and self.shard_bytes + num_bytes > self.max_shard_bytes:
            self.flush()
        self.peak_held_bytes = max(self.peak_held_bytes, self.shard_bytes + num_bytes)
        self.shard[name] = tensor.contiguous()
        self.records[name] = tensor_record(self.shard[name])
        self.shard_bytes += num_bytes
        self.total_bytes += num_bytes

    def flush(self) -> None:
        if not self.shard:
            return
        file_name = f".shard-{len(self.files):05d}.tmp"
        save_file(self.shard, str(self.out_dir / file_name), metadata={"format": "pt"})
        self.files.append((file_name, self.records))
        self.shard, self.records, self.shard_bytes = {}, {}, 0

    def finish(self) -> list[str]:
        """Write the last shard, give shards their final HF names and write the index if there are several."""
        self.flush()
        count = len(self.files)
        names = [SINGLE_SHARD_NAME] if count == 1 else [
            f"model-{i + 1:05d}-of-{count:05d}.safetensors" for i in range(count)]
        weight_map = {}
        for (tmp_name, records), final_name in zip(self.files, names):
            os.replace(self.out_dir / tmp_name, self.out_dir / final_name)
            weight_map.update({tensor_name: final_name for tensor_name in records})
            self.written[final_name] = records
        if count > 1:
            index = {"metadata": {"total_size": self.total_bytes}, "weight_map": weight_map}
            (self.out_dir / INDEX_NAME).write_text(json.dumps(index, indent=2, sort_keys=True))
        return names


def export_model(model, tokenizer, out_dir: Path, validation_prompt: str, max_shard_bytes: int,
                 dtype: Optional[torch.dtype] = None, max_new_tokens: int = 96,
                 wait_timeout_s: float = 14400.0) -> dict:
    """Stream the (possibly FSDP2-sharded) model into a safetensors export and validate it on rank 0.

    Every rank must call this: each gathers its shards of every tensor in the same order. Rank 0's outcome,
    success or error, is broadcast, so a failed write or validation stops every rank at once instead of
    leaving the others waiting at a barrier until the process-group timeout; they wait for it on a group whose
    timeout is `wait_timeout_s`. `dtype` casts the export (FSDP mixed precision keeps fp32 master weights; users
    get the model's bf16).
    """
    is_main = dist_info().is_main
    waiting = wait_group(wait_timeout_s)  # every rank, before rank 0's long work
    partial = out_dir.with_name(f".{out_dir.name}.partial")
    outcome: dict[str, Any] = {}
    writer: Optional[ShardWriter] = None  # rank 0 only
    if is_main:
        try:
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir(parents=True)
            writer = ShardWriter(partial, max_shard_bytes)
        except OSError as err:
            outcome = {"error": f"{type(err).__name__}: {err}"}
    expected = {"num_params": 0, "dtype": None}
    tied = _tied_names(model)
    for name, numel, tensor_dtype, full in _gathered_tensors(model):
        expected["num_params"] += numel
        expected["dtype"] = expected["dtype"] or str(dtype or tensor_dtype)
        # Rank 0 keeps taking part in the gathers after an error, else the other ranks would hang in them.
        if full is not None and "error" not in outcome and name not in tied:
            try:
                writer.add(name, full if dtype is None else full.to(dtype))
            except Exception as err:  # noqa: BLE001 - re-raised on every rank below
                outcome = {"error": f"{type(err).__name__}: {err}"}
    if is_main and "error" not in outcome:
        outcome = _finish_on_main(model, tokenizer, writer, out_dir, validation_prompt, expected, max_new_tokens)
    if is_main and "error" in outcome:
        shutil.rmtree(partial, ignore_errors=True)  # a 70B partial export is 140 GB of disk
    outcome = broadcast_object(outcome, group=waiting)
    if "error" in outcome:
        raise ExportError(f"export to {out_dir} failed: {outcome['error']}")
    return {"path": str(out_dir), **outcome["report"]}


def _gathered_tensors(model) -> Iterator[tuple[str, int, torch.dtype, Optional[torch.Tensor]]]:
    """(name, numel, dtype, full tensor on CPU on rank 0 / None elsewhere) per state-dict entry, one at a time.

    DTensor.full_tensor() is a collective: every rank runs this loop over the same names in the same order.
    """
    from torch.distributed.tensor import DTensor

    is_main = dist_info().is_main
    state_dict = model.state_dict()  # DTensor shards under FSDP2: no copy, nothing gathered yet
    for name, tensor in tqdm(state_dict.items(), desc="export", disable=not is_main, leave=False):
        if isinstance(tensor, DTensor):
            tensor = _to_collective_device(tensor).full_tensor()
        # Non-main ranks drop their gathered copy at once; rank 0 keeps a CPU copy until its shard is written.
        yield name, tensor.numel(), tensor.dtype, tensor.detach().to("cpu") if is_main else None


def _to_collective_device(tensor):
    # With FSDP CPU offload the shards live on CPU, but NCCL only moves GPU memory (untested here: no GPU).
    if tensor.device.type == "cpu" and torch.distributed.get_backend() == "nccl":
        return tensor.to(torch.device("cuda", torch.cuda.current_device()))
    return tensor


def _tied_names(model) -> set[str]:
    # A tied lm_head is the embedding: save_pretrained stores it once, and so do we.
    return set(getattr(model, "all_tied_weights_keys", {}) or {})


def _finish_on_main(model, tokenizer, writer: ShardWriter, out_dir: Path, prompt: str, expected: dict,
                    max_new_tokens: int) -> dict:
    """Shards, config, tokenizer, validation, hash, then the rename that makes model/ appear whole."""
    try:
        files = writer.finish()
        _save_metadata(model, tokenizer, writer.out_dir)
        report = validate_export(writer.out_dir, prompt, expected, writer.written, max_new_tokens)
        file_sha256 = sha256_files(writer.out_dir)  # lets a later check name the file that changed
        report.update(num_shards=len(files), max_shard_bytes=writer.max_shard_bytes,
                      model_bytes=writer.total_bytes, peak_held_bytes=writer.peak_held_bytes,
                      sha256=tree_digest(file_sha256), file_sha256=file_sha256, validated=True)
        shutil.rmtree(out_dir, ignore_errors=True)
        os.replace(writer.out_dir, out_dir)
        return {"report": report}
    except Exception as err:  # noqa: BLE001 - re-raised on every rank by the caller
        return {"error": f"{type(err).__name__}: {err}"}


def _save_metadata(model, tokenizer, out_dir: Path) -> None:
    model.config.use_cache = True  # inference default for users of the export
    model.generation_config = generation_config(tokenizer)
    model.config.save_pretrained(str(out_dir))
    model.generation_config.save_pretrained(str(out_dir))
    tokenizer.save_pretrained(str(out_dir))
