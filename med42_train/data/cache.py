"""Per-source tokenization cache: what one source yields after parsing, cleaning and tokenizing, kept on disk.

Layout: <data.cache_dir>/<sft|preference>/<source>-<key>/ with
  rows.arrow       Arrow stream (memory-mapped when read): token columns + position, num_tokens, ...
  dedup_keys.bin   16-byte exact-dedup key per row (raw, row order)
  signatures.bin   uint64[num_perm] MinHash signature per row (raw, row order)
  rejects.jsonl    every record dropped here, with position, record id, reason, field, raw excerpt
  stats.json       counts by reason, PHI and decontamination findings; written last: its presence = complete
The key hashes everything that decides these files (see `source_cache_key`), so an unchanged source is never
re-tokenized and a changed one is rebuilt alone. Sampling targets are not in the key: they act after the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa

from med42_train.runtime.rundir import sha256_tree

# Bump when the per-source processing or file layout changes, so older caches are not reused.
CACHE_VERSION = 1
ROWS, KEYS, SIGNATURES, REJECTS, STATS = "rows.arrow", "dedup_keys.bin", "signatures.bin", "rejects.jsonl", "stats.json"
KEY_BYTES = 16


def content_hash(location: Any) -> str:
    """Hash of a local file/folder's bytes; for a remote (hub) location, of its description."""
    if location is not None and Path(str(location)).exists():
        return sha256_tree(Path(str(location)))
    return hashlib.sha256(json.dumps(location, sort_keys=True, default=str).encode()).hexdigest()


def source_cache_key(parts: dict[str, Any]) -> str:
    """Short stable hash of everything that decides a source's cached result."""
    payload = json.dumps({"cache_version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class SourceCache:
    """One source's cache folder."""

    root: Path
    kind: str  # sft | preference
    name: str
    key: str

    @property
    def dir(self) -> Path:
        return Path(self.root) / self.kind / f"{self.name}-{self.key}"

    def is_complete(self) -> bool:
        return (self.dir / STATS).is_file()

    def stats(self) -> dict[str, Any]:
        return json.loads((self.dir / STATS).read_text())

    def rows(self) -> pa.Table:
        """The cached rows, memory-mapped (no copy into RAM)."""
        with pa.memory_map(str(self.dir / ROWS)) as source:
            return pa.ipc.open_stream(source).read_all()

    def dedup_keys(self) -> np.ndarray:
        return np.fromfile(self.dir / KEYS, dtype=f"S{KEY_BYTES}")

    def signatures(self, num_perm: int) -> np.ndarray:
        return np.memmap(self.dir / SIGNATURES, dtype=np.uint64, mode="r").reshape(-1, num_perm)

    @contextmanager
    def building(self) -> Iterator[Path]:
        """A scratch folder that becomes the cache folder only if the block completes (never a half cache)."""
        scratch = self.dir.with_name(f".{self.dir.name}.tmp-{os.getpid()}")
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        try:
            yield scratch
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        self._publish(scratch)

    def _publish(self, scratch: Path) -> None:
        """Rename the scratch folder into place. Sibling runs share the cache (a sweep's jobs build the same source
        at once): an entry another process completed first has the same content (same key) and is kept; only a
        half folder left by a crashed build is replaced."""
        if not self.is_complete():
            shutil.rmtree(self.dir, ignore_errors=True)
            try:
                os.replace(scratch, self.dir)
                return
            except OSError:  # completed by another process between the check and the rename
                if not self.is_complete():
                    raise
        shutil.rmtree(scratch, ignore_errors=True)


class RowWriter:
    """Appends batches of rows to rows.arrow and their dedup keys / signatures to the raw side files."""

    def __init__(self, folder: Path, schema: pa.Schema):
        self._arrow = pa.OSFile(str(folder / ROWS), "wb")
        self._schema = schema
        self._writer = pa.ipc.new_stream(self._arrow, schema)
        self._keys = open(folder / KEYS, "wb")
        self._signatures = open(folder / SIGNATURES, "wb")
        self.num_rows = 0

    def write(self, columns: dict[str, pa.Array], keys: np.ndarray, signatures: np.ndarray) -> None:
        batch = pa.record_batch([columns[name] for name in self._schema.names], schema=self._schema)
        assert len(keys) == len(signatures) == batch.num_rows, "side files must stay aligned with the rows"
        self._writer.write_batch(batch)
        keys.astype(f"S{KEY_BYTES}").tofile(self._keys)
        np.ascontiguousarray(signatures, dtype=np.uint64).tofile(self._signatures)
        self.num_rows += batch.num_rows

    def close(self) -> None:
        self._writer.close()
        self._arrow.close()
        self._keys.close()
        self._signatures.close()


def list_array(values: np.ndarray, offsets: np.ndarray) -> pa.Array:
    """Arrow list column from flat values and row offsets, without a Python object per token."""
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(values))
