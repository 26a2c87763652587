"""Build one source into its cache folder, streaming: read -> system prompt -> PHI -> (per batch)
decontamination -> tokenize -> length filter -> write Arrow rows + dedup fingerprints. Never holds the source in memory:
at most two batches of examples are alive at a time.

The Rust tokenizer releases the GIL, so each batch is tokenized in a background thread while the main thread
fingerprints it and reads and screens the next one (Python): on 2 cores the screening no longer adds its whole
time to the tokenizer's. Each batch's texts are normalized and word-hashed once (a WordBatch) for
decontamination, exact keys and MinHash signatures.
"""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pyarrow as pa
from tqdm import tqdm

from med42_train.data.cache import STATS, RowWriter, SourceCache, list_array
from med42_train.data.clean.normalize import WordBatch
from med42_train.data.recipe import Source
from med42_train.data.screen import Screen, ScreenReport, conversations, excerpt, sample_text, with_system_prompt
from med42_train.data.sources import Example, Rejected, iter_examples
from med42_train.data.tokenize import PREFERENCE_KEYS, ChatEncoder

SFT_SCHEMA = pa.schema([("input_ids", pa.list_(pa.int32())), ("assistant_masks", pa.list_(pa.int8())),
                        ("source", pa.string()), ("position", pa.string()), ("record_id", pa.string()),
                        ("num_tokens", pa.int32()), ("num_supervised_tokens", pa.int32())])
PREFERENCE_SCHEMA = pa.schema([*((key, pa.list_(pa.int32())) for key in PREFERENCE_KEYS),
                               ("source", pa.string()), ("iteration", pa.int32()), ("position", pa.string()),
                               ("record_id", pa.string()), ("num_tokens", pa.int32()),
                               ("num_supervised_tokens", pa.int32())])


# A batch is also cut at this many characters (~1M tokens): the Rust encodings of a batch cost ~100 bytes a token
# (ids, offsets, token strings), so a batch of long samples must not grow with the samples' length.
MAX_BATCH_CHARS = 4_000_000


@dataclass(frozen=True)
class BuildSettings:
    system_prompt: Optional[str]
    max_length: int  # tokens; longer samples are dropped as too_long
    batch_size: int  # samples tokenized per call of the Rust tokenizer


@dataclass
class _Pending:
    """A screened batch whose tokenization runs in the background, with its dedup fingerprints."""

    examples: list[Example]
    tokenized: Future  # of _Builder._tokenized(examples)
    keys: np.ndarray  # S16, one per example
    signatures: np.ndarray  # uint64[len(examples), num_perm]


class RejectLog:
    """rejects.jsonl: one line per dropped record, and the counts by reason."""

    def __init__(self, path: Path):
        self._file = open(path, "w", encoding="utf-8")
        self.counts: Counter = Counter()

    def add(self, position: str, record_id: Optional[str], reason: str, field: Optional[str], raw: str) -> None:
        self.counts[reason] += 1
        line = {"position": position, "record_id": record_id, "reason": reason, "field": field, "raw": excerpt(raw)}
        self._file.write(json.dumps(line, ensure_ascii=False) + "\n")

    def close(self) -> None:
        self._file.close()


def build_source(source: Source, cache: SourceCache, encoder: ChatEncoder, screen: Screen,
                 settings: BuildSettings) -> dict:
    """Stream the source into `cache` and return its stats (also written to stats.json)."""
    with cache.building() as folder:
        builder = _Builder(source, folder, encoder, screen, settings)
        num_read = 0
        for item in tqdm(iter_examples(source), desc=f"build {source.kind}/{source.name}", unit="rec",
                         mininterval=2.0):
            num_read += 1
            builder.add(item)
        stats = builder.finish(num_read)
        (folder / STATS).write_text(json.dumps(stats, indent=2, sort_keys=True))
    return stats


class _Builder:
    def __init__(self, source: Source, folder: Path, encoder: ChatEncoder, screen: Screen,
                 settings: BuildSettings):
        self.source, self.encoder, self.screen, self.settings = source, encoder, screen, settings
        self.rejects = RejectLog(folder / "rejects.jsonl")
        self.writer = RowWriter(folder, SFT_SCHEMA if source.kind == "sft" else PREFERENCE_SCHEMA)
        self.report = ScreenReport()
        self.batch: list[Example] = []
        self.batch_chars = 0
        self.tokenizing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenize")
        self.pending: Optional[_Pending] = None  # the batch being tokenized
        self.num_tokens = self.num_supervised_tokens = 0

    def add(self, item: Example | Rejected) -> None:
        if isinstance(item, Rejected):
            self.rejects.add(item.position, item.record_id, item.reason, item.field, item.raw)
            return
        example, reason = self.screen.apply_phi_policy(with_system_prompt(item, self.settings.system_prompt), self.report)
        if reason:
            # A PHI drop writes the masked text: the rejects file must not become a copy of the identifiers.
            text = sample_text(example)
            self.rejects.add(example.position, example.record_id, reason, None,
                             self.screen.phi.mask(text) if reason == "phi" else text)
            return
        self.batch.append(example)
        self.batch_chars += sum(len(m["content"]) for messages in conversations(example) for m in messages)
        if len(self.batch) >= self.settings.batch_size or self.batch_chars >= MAX_BATCH_CHARS:
            self._flush()

    def finish(self, num_read: int) -> dict:
        self._flush()
        self._write_pending()
        self.tokenizing.shutdown()
        self.writer.close()
        self.rejects.close()
        kept = self.writer.num_rows
        dropped = dict(self.rejects.counts)
        assert num_read == kept + sum(dropped.values()), (
            f"source {self.source.name}: read {num_read} != kept {kept} + dropped {dropped}")
        return {"read": num_read, "kept": kept, "dropped_by_reason": dropped, "num_tokens": self.num_tokens,
                "num_supervised_tokens": self.num_supervised_tokens, **self.report.to_dict()}

    def _flush(self) -> None:
        """Decontaminate the current batch and start tokenizing it, then write the previous one (rows stay in
        source order)."""
        if not self.batch:
            return
        batch, self.batch, self.batch_chars = self.batch, [], 0
        texts = [sample_text(example) for example in batch]
        words = WordBatch.from_texts(texts)  # normalized once for decontamination and both dedup fingerprints
        reasons = self.screen.contamination(batch, words, self.report)
        for example, text, reason in zip(batch, texts, reasons):
            if reason:
                self.rejects.add(example.position, example.record_id, reason, None, text)
        clean = [index for index, reason in enumerate(reasons) if not reason]
        if not clean:
            return
        batch = [batch[index] for index in clean]
        future = self.tokenizing.submit(self._tokenized, batch)
        # Fingerprinted while the batch tokenizes; rows dropped later as too long are discarded at write.
        keys, signatures = self.screen.fingerprints(words)
        self._write_pending()
        self.pending = _Pending(batch, future, keys[clean], signatures[clean])

    def _write_pending(self) -> None:
        if self.pending is None:
            return
        pending, self.pending = self.pending, None
        batch = pending.examples
        columns, num_tokens, num_supervised = pending.tokenized.result()
        keep = num_tokens <= self.settings.max_length
        for index in np.flatnonzero(~keep):
            example = batch[index]
            self.rejects.add(example.position, example.record_id, "too_long", None,
                             f"{int(num_tokens[index])} tokens > max_length {self.settings.max_length}")
        kept_rows = np.flatnonzero(keep)
        kept_examples = [batch[index] for index in kept_rows]
        columns = {name: column.take(pa.array(kept_rows)) for name, column in columns.items()}
        columns |= _row_columns(self.source, kept_examples, num_tokens[keep], num_supervised[keep])
        self.writer.write(columns, pending.keys[kept_rows], pending.signatures[kept_rows])
        self.num_tokens += int(num_tokens[keep].sum())
        self.num_supervised_tokens += int(num_supervised[keep].sum())

    def _tokenized(self, batch: list[Example]) -> tuple[dict[str, pa.Array], np.ndarray, np.ndarray]:
        """Token columns of the batch, tokens per sample (what max_length bounds), supervised tokens per sample."""
        if self.source.kind == "sft":
            ids, masks = self.encoder.encode_sft([example.messages for example in batch])
            columns = {"input_ids": list_array(ids.values, ids.offsets),
                       "assistant_masks": list_array(masks.values, masks.offsets)}
            return columns, ids.lengths, masks.row_sums()
        encoded = self.encoder.encode_preference([example.pair for example in batch])
        columns = {key: list_array(rows.values, rows.offsets) for key, rows in encoded.items()}
        prompt, chosen, rejected = (encoded[key].lengths for key in PREFERENCE_KEYS)
        # DPO sees prompt + the longer completion; both completions are trained on.
        return columns, prompt + np.maximum(chosen, rejected), chosen + rejected


def _row_columns(source: Source, examples: list[Example], num_tokens: np.ndarray,
                 num_supervised: np.ndarray) -> dict[str, pa.Array]:
    columns = {"source": pa.array([source.name] * len(examples), pa.string()),
               "position": pa.array([example.position for example in examples], pa.string()),
               "record_id": pa.array([example.record_id for example in examples], pa.string()),
               "num_tokens": pa.array(num_tokens.astype(np.int32)),
               "num_supervised_tokens": pa.array(num_supervised.astype(np.int32))}
    if source.kind == "preference":
        columns["iteration"] = pa.array([source.iteration] * len(examples), pa.int32())
    return columns
