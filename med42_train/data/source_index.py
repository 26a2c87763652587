"""Which source every SFT sample came from, found again by content: written once by the data stage.

TRL's packing keeps only input_ids / labels / seq_lengths, so per-source loss finds a packed sample's source by a
hash of its token ids (train/metrics.py). Hashing every sample at every SFT start costs minutes per billion tokens
on every rank, again after each requeue; the data stage already holds the rows, so it writes the keys once
(`sft_source_index.npz`: 16-byte keys, source ids, source names; its sha256 in the manifest) and SFT only reads it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

import numpy as np
import pyarrow.compute as pc

INDEX_FILE = "sft_source_index.npz"
KEY_BYTES = 16
_BATCH_ROWS = 8192  # rows widened to int64 at a time: bounded memory whatever the corpus


def sample_key(token_ids: Iterable[int]) -> bytes:
    """Content key of one tokenized sample: blake2b-128 of its ids as int64."""
    return hashlib.blake2b(np.asarray(token_ids, dtype=np.int64).tobytes(), digest_size=KEY_BYTES).digest()


def source_keys(dataset) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(sorted source names, keys (n, 16) uint8, source id per row) of a dataset with input_ids + source."""
    table = dataset.select_columns(["input_ids", "source"]).data.table
    names = sorted(pc.unique(table["source"]).to_pylist())
    ids = {name: i for i, name in enumerate(names)}
    keys = np.empty((table.num_rows, KEY_BYTES), dtype=np.uint8)
    sources = np.empty(table.num_rows, dtype=np.int32)
    for start in range(0, table.num_rows, _BATCH_ROWS):
        batch = table.slice(start, _BATCH_ROWS)
        column = batch["input_ids"].combine_chunks()
        values = pc.list_flatten(column).to_numpy(zero_copy_only=False).astype(np.int64)
        offsets = column.offsets.to_numpy() - column.offsets[0].as_py()
        for row in range(batch.num_rows):
            digest = hashlib.blake2b(values[offsets[row]:offsets[row + 1]].tobytes(), digest_size=KEY_BYTES)
            keys[start + row] = np.frombuffer(digest.digest(), dtype=np.uint8)
        sources[start:start + batch.num_rows] = [ids[name] for name in batch["source"].to_pylist()]
    return names, keys, sources


def write_source_index(dataset, path: Path) -> Path:
    names, keys, sources = source_keys(dataset)
    with open(path, "wb") as handle:  # np.savez would append .npz to a name without it
        np.savez(handle, keys=keys, sources=sources, names=np.array(names, dtype=object).astype(str))
    return Path(path)


def read_source_index(path: Path) -> tuple[list[str], dict[bytes, int]]:
    """(source names, key -> source id), as the SFT collator wants them."""
    with np.load(path, allow_pickle=False) as index:
        names = [str(name) for name in index["names"]]
        keys, sources = index["keys"], index["sources"]
        return names, dict(zip(map(bytes, keys), sources.tolist()))


def build_source_index(dataset) -> tuple[list[str], dict[bytes, int]]:
    """The same mapping computed from the dataset itself (a data stage made before the index existed)."""
    names, keys, sources = source_keys(dataset)
    return names, dict(zip(map(bytes, keys), sources.tolist()))
