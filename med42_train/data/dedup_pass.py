"""Exact and near deduplication within and across sources, over the fingerprints cached per source.

Runs in recipe order, so the earlier source (and within a source, the earlier record) keeps the sample. It reads
only the 16-byte keys and the MinHash signatures (memory-mapped), never the texts. The indexes grow with the
number of samples kept (ExactDedup ~150 bytes, NearDedup ~1.7 KB per sample at 128 permutations, measured in
clean/dedup.py): that, not the corpus text, is what the data stage holds in memory.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from tqdm import tqdm

from med42_train.data.cache import SourceCache
from med42_train.data.clean.dedup import ExactDedup, NearDedup
from med42_train.data.recipe import CleanSpec


@dataclass
class DedupResult:
    """One source's outcome: which cached rows survive, and (row, reason, earlier key) for the others."""

    keep: np.ndarray  # bool per cached row
    counts: Counter = field(default_factory=Counter)
    dropped: list[tuple[int, str, str]] = field(default_factory=list)


def deduplicate(caches: Sequence[SourceCache], spec: CleanSpec, seed: int) -> dict[str, DedupResult]:
    """Per source name, the rows kept after exact then near dedup against everything earlier in the recipe."""
    exact = ExactDedup() if spec.exact_dedup else None
    near_spec = spec.near_dedup
    near = NearDedup(near_spec.threshold, near_spec.num_perm, near_spec.shingle_words, seed) \
        if near_spec.enabled else None
    results = {}
    for cache in caches:
        keys = cache.dedup_keys()
        # A plain array view of the memory map: indexing a np.memmap row by row costs ~7 us a row.
        signatures = np.asarray(cache.signatures(near_spec.num_perm)) if near is not None else None
        band_keys = near.band_keys(signatures) if near is not None else None  # for the whole source at once
        result = DedupResult(keep=np.ones(len(keys), dtype=bool))
        for row in tqdm(range(len(keys)), desc=f"dedup {cache.kind}/{cache.name}", unit="row", mininterval=2.0,
                        leave=False):
            reason, earlier = _duplicate_of(f"{cache.kind}/{cache.name}#{row}", keys[row], exact, near,
                                            None if near is None else (signatures[row], band_keys[row]))
            if reason:
                result.keep[row] = False
                result.counts[reason] += 1
                result.dropped.append((row, reason, earlier))
        results[cache.name] = result
    return results


def _duplicate_of(name: str, key: bytes, exact, near, signature) -> tuple[str, str]:
    """`signature`: (MinHash signature, its band keys) when near dedup is on."""
    if exact is not None and exact.is_duplicate_key(key):
        return "exact_duplicate", ""
    if near is not None:
        earlier = near.check_and_add(name, np.asarray(signature[0]), band_keys=signature[1])
        if earlier is not None:
            return "near_duplicate", earlier
    return "", ""
