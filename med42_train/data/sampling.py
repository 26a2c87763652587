"""Sampling a source's kept rows to its target: `samples:` (records) or `tokens:` (supervised tokens).

Selection works on row indices only (the rows stay memory-mapped on disk). The seed is derived from the recipe
seed and the source name, so adding or changing one source never changes which rows another source gets.
"""

from __future__ import annotations

import zlib
from typing import Optional

import numpy as np


def source_rng(seed: int, source_name: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(source_name.encode())])


def select_rows(num_supervised_tokens: np.ndarray, samples: Optional[int], tokens: Optional[int],
                rng: np.random.Generator) -> np.ndarray:
    """Indices into the kept rows: every row, or sampled to `samples` rows or `tokens` supervised tokens.

    Down-sampling draws without replacement; up-sampling repeats every row whole as often as fits and draws the
    remainder without replacement.
    """
    num_rows = len(num_supervised_tokens)
    if num_rows == 0 or (samples is None and tokens is None):
        return np.arange(num_rows)
    if samples is not None:
        return _by_count(num_rows, samples, rng)
    return _by_tokens(num_supervised_tokens, tokens, rng)


def _by_count(num_rows: int, target_rows: int, rng: np.random.Generator) -> np.ndarray:
    repeats, remainder = divmod(target_rows, num_rows)
    extra = np.sort(rng.choice(num_rows, size=remainder, replace=False))
    return np.concatenate([np.tile(np.arange(num_rows), repeats), extra]).astype(np.int64)


def _by_tokens(num_supervised_tokens: np.ndarray, target_tokens: int, rng: np.random.Generator) -> np.ndarray:
    total = int(num_supervised_tokens.sum())
    if total == 0:
        raise ValueError("a tokens: target needs rows with supervised tokens; this source has none")
    repeats, remainder_tokens = divmod(target_tokens, total)
    order = rng.permutation(len(num_supervised_tokens))
    # The shortest prefix of a random order that reaches the remaining tokens (the last row may overshoot).
    cumulative = np.cumsum(num_supervised_tokens[order])
    num_extra = 0 if remainder_tokens == 0 else int(np.searchsorted(cumulative, remainder_tokens)) + 1
    extra = np.sort(order[:num_extra])
    return np.concatenate([np.tile(np.arange(len(num_supervised_tokens)), repeats), extra]).astype(np.int64)
