"""Exact and near-duplicate detection over normalized text.

Guarantees:
- `ExactDedup` flags a text whose normalized form (see normalize.py: case, whitespace and punctuation ignored) was
  seen before; keys are 128-bit xxh3 digests, so a false "duplicate" needs a 128-bit collision.
- `NearDedup` flags a text whose estimated Jaccard similarity of word `shingle_words`-gram sets with an earlier
  text is >= `threshold`: candidates come from an LSH index banded as datasketch's MinHashLSH bands it (and
  tested to give the same decisions) and are then checked against the signatures' agreement rate, so LSH band
  collisions below the threshold are not reported. Signatures are plain
  numpy uint64 arrays of length `num_perm`, deterministic for a given (num_perm, seed, shingle_words), so they can
  be computed once per source, cached on disk, and deduplicated across sources later without the texts.
  They are exactly the hash values of datasketch's MinHash(scheme="affine64") updated with the shingle hashes
  (tested), computed with numpy for a whole batch: use `signatures(texts)` on batches (~1.5M words per CPU second
  vs ~0.4M for `signature` per text, benchmarks/bench_clean.py).

Does not: find duplicates below the threshold or guarantee to find every pair above it (MinHash is an estimate:
with 128 permutations the standard error at Jaccard 0.8 is about 0.035, so pairs near the threshold may go either
way); pick which copy to keep (the first one checked wins); bound memory: both indexes grow with the number of
texts kept. Measured per kept text: ~150 bytes exact (a Python set of 16-byte digests); ~1.7 KB near with 128
permutations (tracemalloc, 20k texts: a row in one bucket list per band, the key, its row and 2 bytes per
permutation for the candidate check; datasketch's MinHashLSH took ~3 KB), i.e. ~3.4 GB for 2M kept texts. Lower
num_perm or dedup per source group where that is too much.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import xxhash
from datasketch import MinHash, MinHashLSH

from med42_train.data.clean.normalize import WordBatch, extend_ngram_hashes, normalize_text

# datasketch >= 2.0 "affine64": 64-bit shingle hashes go in unchanged and signatures come out as uint64.
_SCHEME = "affine64"
_EMPTY_SLOT = np.iinfo(np.uint64).max  # datasketch's value for "no shingle seen" (an empty text's signature)
# Shingles per (num_perm x shingles) product: 4 MB at 128 permutations stays in cache between the multiply, the
# add and the minimum (0.26 vs 0.38 CPU s for 16384 on the benchmark corpus's 1.46M shingles).
_MAX_ROWS_PER_STEP = 4096
# MurmurHash3's 64-bit finalizer, which datasketch's affine schemes apply to every input hash before permuting.
_FMIX_SHIFT, _FMIX_MUL1, _FMIX_MUL2 = np.uint64(33), np.uint64(0xFF51AFD7ED558CCD), np.uint64(0xC4CEB9FE1A85EC53)


def _fmix64(values: np.ndarray) -> np.ndarray:
    values = (values ^ (values >> _FMIX_SHIFT)) * _FMIX_MUL1
    values = (values ^ (values >> _FMIX_SHIFT)) * _FMIX_MUL2
    return values ^ (values >> _FMIX_SHIFT)


class ExactDedup:
    """Remembers normalized texts by a 128-bit digest; `is_duplicate` records new ones."""

    def __init__(self) -> None:
        self._seen: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._seen)

    @staticmethod
    def key(text: str) -> bytes:
        """16-byte digest of the normalized text; equal for texts differing only in case/whitespace/punctuation."""
        return ExactDedup.normalized_key(normalize_text(text))

    @staticmethod
    def normalized_key(normalized: str) -> bytes:
        """`key` of a text already normalized (see normalize.py), e.g. one of a WordBatch."""
        return xxhash.xxh3_128_digest(normalized.encode("utf-8"))

    def is_duplicate(self, text: str) -> bool:
        return self.is_duplicate_key(self.key(text))

    def is_duplicate_key(self, key: bytes) -> bool:
        """Like `is_duplicate` for a cached `key(text)`: True if seen before, else records it and returns False."""
        if key in self._seen:
            return True
        self._seen.add(key)
        return False


class NearDedup:
    """MinHash signatures of word shingles and an LSH index of the texts kept so far."""

    def __init__(self, threshold: float = 0.85, num_perm: int = 128, shingle_words: int = 5, seed: int = 1):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"near_dedup threshold must be in (0, 1], got {threshold}")
        if num_perm < 2 or shingle_words < 1:
            raise ValueError(f"near_dedup needs num_perm >= 2 and shingle_words >= 1, got {num_perm}, {shingle_words}")
        self.threshold, self.num_perm, self.shingle_words, self.seed = threshold, num_perm, shingle_words, seed
        # datasketch's MinHash permutations define the signatures; its MinHashLSH picks the banding (b bands of
        # r values minimizing false positive + negative rates at this threshold).
        self._permutations = MinHash(num_perm=num_perm, seed=seed, scheme=_SCHEME).permutations
        lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.num_bands, self.band_width = lsh.b, lsh.r
        # The LSH index as datasketch's in-memory one holds it (band bucket -> kept rows), keyed by a 64-bit hash
        # of the band computed with numpy for a whole source at once (`band_keys`): the per-row work is then
        # b dict look-ups, ~10x less than datasketch's per-band byteswap + hash + storage calls.
        self._buckets: list[dict[int, list[int]]] = [{} for _ in range(self.num_bands)]
        self._band_weights = np.random.default_rng(seed).integers(0, 2**64, self.band_width, dtype=np.uint64) | 1
        self._keys: list[str] = []
        self._row_of_key: dict[str, int] = {}
        # Low 16 bits of each kept signature, to check LSH candidates: an agreement between two unrelated values
        # has probability 2**-16, a negligible bias on the Jaccard estimate for 1/4 of the memory.
        self._check_bits = np.zeros((1024, num_perm), dtype=np.uint16)

    def __len__(self) -> int:
        return len(self._row_of_key)

    def signature(self, text: str) -> np.ndarray:
        """uint64[num_perm] MinHash of the set of normalized word `shingle_words`-grams of `text` (a text shorter
        than a shingle is one shingle): the hash values datasketch's MinHash(scheme="affine64") reaches when
        updated with each shingle hash."""
        return self.signatures([text])[0]

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """uint64[len(texts), num_perm], row i = signature(texts[i]), computed for the whole batch at once: the
        shingles of all texts go through datasketch's permutations (h -> a * fmix64(h) + b mod 2**64, read from
        its MinHash) as one matrix product per step, with a per-text minimum (np.minimum.reduceat)."""
        return self.batch_signatures(WordBatch.from_texts(texts))

    def batch_signatures(self, batch: WordBatch) -> np.ndarray:
        """`signatures` of the texts of an already normalized and word-hashed batch."""
        shingles, owners = self._shingles(batch)
        result = np.full((len(batch), self.num_perm), _EMPTY_SLOT, dtype=np.uint64)
        mixed, (a, b) = _fmix64(shingles), self._permutations
        # One buffer for every step instead of a fresh array each (a few % less time in page faults).
        buffer = np.empty((self.num_perm, min(_MAX_ROWS_PER_STEP, len(mixed))), dtype=np.uint64)
        for low in range(0, len(mixed), _MAX_ROWS_PER_STEP):
            high = min(low + _MAX_ROWS_PER_STEP, len(mixed))
            segment_starts = np.flatnonzero(np.r_[True, owners[low + 1:high] != owners[low:high - 1]])
            # (num_perm, shingles) layout: the per-text minimum then runs along contiguous memory (3x faster).
            permuted = np.multiply(a[:, None], mixed[None, low:high], out=buffer[:, :high - low])
            permuted += b[:, None]
            minima = np.minimum.reduceat(permuted, segment_starts, axis=1).T
            texts_here = owners[low + segment_starts]  # each text once per step, so fancy assignment is safe
            result[texts_here] = np.minimum(result[texts_here], minima)
        return result

    def _shingles(self, batch: WordBatch) -> tuple[np.ndarray, np.ndarray]:
        """(shingle hashes, index of their text), grouped by text in batch order."""
        grams, parts, owners = batch.hashes, [], []
        for length in range(1, self.shingle_words + 1):
            if length > 1:
                grams = extend_ngram_hashes(grams, batch.hashes, length)
            if length < self.shingle_words:  # a text of exactly `length` words is one shingle: all its words
                exact = np.flatnonzero(batch.num_words == length)
                parts.append(grams[batch.first_word[exact]])
                owners.append(exact)
        starts = np.flatnonzero(np.arange(len(grams)) + self.shingle_words <= batch.text_end_of_word[:len(grams)])
        parts.append(grams[starts])
        owners.append(batch.text_of_word[starts])
        owner = np.concatenate(owners)
        order = np.argsort(owner, kind="stable")
        return np.concatenate(parts)[order], owner[order]

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """uint64[len(signatures), num_bands]: a 64-bit hash of each LSH band of each signature row; equal bands
        give equal keys, unequal ones collide with probability ~2**-64 (a collision only adds a candidate, which
        the agreement check then judges)."""
        bands = _fmix64(signatures[:, :self.num_bands * self.band_width].reshape(len(signatures), self.num_bands,
                                                                                  self.band_width))
        return (bands * self._band_weights).sum(axis=2, dtype=np.uint64)

    def check_and_add(self, key: str, signature: np.ndarray, band_keys: Optional[np.ndarray] = None
                      ) -> Optional[str]:
        """The key of a kept text whose estimated Jaccard with this one is >= threshold, or None after keeping it.
        `band_keys`: this signature's row of `band_keys(signatures)`, when computed for many at once."""
        signature = self._checked(key, signature)
        bucket_keys = (self.band_keys(signature[None])[0] if band_keys is None else band_keys).tolist()
        low_bits = signature.astype(np.uint16)
        candidates = set()
        for buckets, bucket_key in zip(self._buckets, bucket_keys):
            candidates.update(buckets.get(bucket_key, ()))
        if candidates:
            rows = sorted(candidates)  # sorted: the earliest kept text wins, deterministically
            agreements = np.count_nonzero(self._check_bits[rows] == low_bits, axis=1) / self.num_perm
            similar = np.flatnonzero(agreements >= self.threshold)
            if len(similar):
                return self._keys[rows[similar[0]]]
        row = self._keep(key, low_bits)
        for buckets, bucket_key in zip(self._buckets, bucket_keys):
            buckets.setdefault(bucket_key, []).append(row)
        return None

    def _checked(self, key: str, signature: np.ndarray) -> np.ndarray:
        if key in self._row_of_key:
            raise ValueError(f"near-dedup key {key!r} was already added; keys must be unique (e.g. source:position)")
        signature = np.asarray(signature)
        if signature.shape != (self.num_perm,) or signature.dtype != np.uint64:
            raise ValueError(f"near-dedup signature for {key!r} has shape {signature.shape} and dtype "
                             f"{signature.dtype}; expected ({self.num_perm},) uint64 from NearDedup.signature with "
                             f"num_perm={self.num_perm} (a cache written with other settings must be rebuilt)")
        return signature

    def _keep(self, key: str, low_bits: np.ndarray) -> int:
        row = len(self._keys)
        if row == len(self._check_bits):
            self._check_bits = np.concatenate([self._check_bits, np.zeros_like(self._check_bits)])
        self._check_bits[row] = low_bits
        self._keys.append(key)
        self._row_of_key[key] = row
        return row
