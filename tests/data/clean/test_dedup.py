"""Exact and near-duplicate detection: hand-made variants, a planted near duplicate, and real texts."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
from datasketch import MinHash, MinHashLSH

from med42_train.data.clean.dedup import ExactDedup, NearDedup
from med42_train.data.clean.normalize import ngram_hashes, normalize_text, word_hashes, words
from tests.data.clean.realtexts import read_alpaca_texts

TEXT = "Take 500 mg of amoxicillin three times a day for 7 days, then see your doctor."


def shingle_sets(texts: list[str], shingle_words: int = 5) -> list[set[str]]:
    """Exact word-shingle sets, the ground truth MinHash estimates (one shingle for shorter texts)."""
    return [{" ".join(w[i:i + shingle_words]) for i in range(max(1, len(w) - shingle_words + 1))}
            for w in map(words, texts)]


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b)


# ---- exact ----
@pytest.mark.parametrize("variant", [TEXT.upper(), "  take 500 MG of amoxicillin\n\nthree times a day for 7 days then "
                                     "see your doctor", "Take 500 mg of amoxicillin - three times a day (for 7 days); "
                                     "then see your doctor!!", TEXT.replace(" ", "\r\n")])
def test_exact_duplicates_differing_in_case_whitespace_punctuation_are_caught(variant):
    dedup = ExactDedup()
    assert not dedup.is_duplicate(TEXT)
    assert dedup.is_duplicate(variant)
    assert len(dedup) == 1


def test_exact_dedup_keeps_different_texts_and_accepts_cached_keys():
    dedup = ExactDedup()
    assert not dedup.is_duplicate(TEXT)
    assert not dedup.is_duplicate(TEXT.replace("500", "250"))
    key = ExactDedup.key(TEXT.lower())
    assert isinstance(key, bytes) and len(key) == 16
    assert dedup.is_duplicate_key(key) and not ExactDedup().is_duplicate_key(key)


# ---- near ----
@pytest.fixture(scope="module")
def wikidoc_texts(realdata) -> list[str]:
    return read_alpaca_texts(realdata / "medalpaca_wikidoc_patient_information_2000.json")


def _with_words_changed(text: str, positions: list[int]) -> str:
    tokens = text.split()
    for position in positions:
        tokens[position] = f"changed{position}"
    return " ".join(tokens)


def test_near_duplicate_with_a_few_words_changed_is_caught(wikidoc_texts):
    original = " ".join(next(t for t in wikidoc_texts if len(t.split()) >= 200).split()[:200])
    near = _with_words_changed(original, [40, 100, 160])
    half_changed = _with_words_changed(original, list(range(0, 200, 2)))
    exact = shingle_sets([original, near, half_changed])
    # 3 changed words break at most 3 * 5 of the 196 shingles: true Jaccard ~0.86, above the 0.8 threshold.
    assert jaccard(exact[0], exact[1]) > 0.84 and jaccard(exact[0], exact[2]) < 0.1
    dedup = NearDedup(threshold=0.8, num_perm=128, shingle_words=5, seed=1)
    assert dedup.check_and_add("original", dedup.signature(original)) is None
    assert dedup.check_and_add("near", dedup.signature(near)) == "original"
    assert dedup.check_and_add("half", dedup.signature(half_changed)) is None
    assert len(dedup) == 2


def test_signatures_are_uint64_deterministic_and_work_from_a_cache(tmp_path, wikidoc_texts):
    """Cross-source dedup from stored signatures: a new index fed np.load-ed signatures gives the same answers."""
    texts = wikidoc_texts[:300]
    first, second = NearDedup(threshold=0.8), NearDedup(threshold=0.8)
    signatures = np.stack([first.signature(t) for t in texts])
    assert signatures.dtype == np.uint64 and signatures.shape == (300, 128)
    assert np.array_equal(signatures[7], second.signature(texts[7]))
    np.save(tmp_path / "signatures.npy", signatures)
    cached = np.load(tmp_path / "signatures.npy")
    from_texts = [first.check_and_add(str(i), s) for i, s in enumerate(signatures)]
    from_cache = [second.check_and_add(str(i), s) for i, s in enumerate(cached)]
    assert from_texts == from_cache and any(hit is not None for hit in from_texts)


def test_batched_signatures_equal_datasketch_fed_the_shingles(wikidoc_texts):
    """The vectorized batch (300 texts, ~27k shingles: more than one matrix step, so texts straddle steps) gives,
    row by row, the hash values of datasketch's own MinHash updated with each text's shingle hashes."""
    texts = wikidoc_texts[:300] + ["", "Fever.", "fever and chills", "one two three four five six"]
    dedup = NearDedup(num_perm=64, shingle_words=3, seed=7)
    batch = dedup.signatures(texts)
    assert batch.shape == (len(texts), 64) and batch.dtype == np.uint64
    for row, text in zip(batch, texts):
        hashes = word_hashes(normalize_text(text))
        reference = MinHash(num_perm=64, seed=7, scheme="affine64", hashfunc=lambda value: value)
        reference.update_batch(ngram_hashes(hashes, min(3, len(hashes))).tolist() if len(hashes) else [])
        assert np.array_equal(row, reference.hashvalues)
        assert np.array_equal(dedup.signature(text), row)


def test_short_and_empty_texts_have_signatures():
    dedup = NearDedup(threshold=0.8, shingle_words=5)
    assert dedup.check_and_add("a", dedup.signature("Chest pain.")) is None
    assert dedup.check_and_add("b", dedup.signature("chest PAIN")) == "a"
    assert dedup.check_and_add("c", dedup.signature("Back pain")) is None
    assert dedup.signature("").shape == (128,)


def test_bad_signature_and_repeated_key_are_refused():
    dedup = NearDedup(num_perm=64)
    with pytest.raises(ValueError, match=r"signature for 'x' has shape \(128,\).*num_perm=64"):
        dedup.check_and_add("x", NearDedup(num_perm=128).signature(TEXT))
    dedup.check_and_add("x", dedup.signature(TEXT))
    with pytest.raises(ValueError, match="key 'x' was already added"):
        dedup.check_and_add("x", dedup.signature(TEXT + " more"))
    with pytest.raises(ValueError, match="threshold must be in"):
        NearDedup(threshold=1.5)


def _exact_jaccard_matrix(texts: list[str]) -> np.ndarray:
    """All-pairs exact shingle Jaccard through a sparse text x shingle matrix (seconds for 2000 texts)."""
    vocabulary: dict[str, int] = {}
    ids = [[vocabulary.setdefault(s, len(vocabulary)) for s in shingles] for shingles in shingle_sets(texts)]
    rows = np.repeat(np.arange(len(ids)), [len(row) for row in ids])
    matrix = scipy.sparse.csr_matrix((np.ones(len(rows)), (rows, np.concatenate(ids))))
    intersections = (matrix @ matrix.T).toarray()
    sizes = np.diag(intersections)
    similarity = intersections / (sizes[:, None] + sizes[None, :] - intersections)
    np.fill_diagonal(similarity, 0.0)
    return similarity


def _dedup_all(texts: list[str]) -> list:
    dedup = NearDedup(threshold=0.8, num_perm=128, shingle_words=5, seed=1)
    return [dedup.check_and_add(str(i), dedup.signature(text)) for i, text in enumerate(texts)]


def test_unrelated_real_texts_give_no_hits(realdata):
    """ChatDoctor's 2000 texts: no pair has exact Jaccard >= 0.5 (checked here), and MinHash/LSH flags none.
    A false hit would need >= 80% of 128 signature positions to agree for sets that share < 50%: a binomial
    tail below 1e-12 per pair, so the bound is 0 (the data and seed are fixed)."""
    texts = read_alpaca_texts(realdata / "chatdoctor_genmedgpt5k_2000.json")
    assert _exact_jaccard_matrix(texts).max() < 0.5
    assert [hit for hit in _dedup_all(texts) if hit is not None] == []


def test_real_near_duplicates_found_and_every_hit_is_real(wikidoc_texts):
    """wikidoc repeats pages under several questions (e.g. 'symptoms of Angina' / 'of angina pectoris'). Measured:
    59 hits, smallest exact Jaccard among them 0.737 (the MinHash estimate has a standard error of ~0.035 at
    0.8), and every text with an earlier kept text at exact Jaccard >= 0.9 (40 texts) is flagged."""
    similarity = _exact_jaccard_matrix(wikidoc_texts)
    hits = _dedup_all(wikidoc_texts)
    flagged = {i: int(hit) for i, hit in enumerate(hits) if hit is not None}
    assert 40 <= len(flagged) <= 80
    assert min(similarity[i, j] for i, j in flagged.items()) >= 0.65
    kept = np.array([hit is None for hit in hits])
    clear_duplicates = [j for j in range(len(hits)) if np.any((similarity[j, :j] >= 0.9) & kept[:j])]
    assert len(clear_duplicates) >= 30 and all(j in flagged for j in clear_duplicates)


def _datasketch_lsh_decisions(signatures: np.ndarray, threshold: float) -> list:
    """The reference: datasketch's own MinHashLSH for candidates, then the same agreement check (low 16 bits)."""
    lsh, kept, decisions = MinHashLSH(threshold=threshold, num_perm=signatures.shape[1]), [], []
    for signature in signatures:
        probe = MinHash(num_perm=signatures.shape[1], scheme="affine64")
        probe.hashvalues = signature
        match = next((row for row in sorted(lsh.query(probe))
                      if np.mean(kept[row] == signature.astype(np.uint16)) >= threshold), None)
        decisions.append(None if match is None else str(match))
        if match is None:
            lsh.insert(len(kept), probe)
            kept.append(signature.astype(np.uint16))
    return decisions


def test_lsh_index_decides_as_datasketch_minhashlsh():
    """Signatures with 0..40 of 128 values replaced (agreement 1.0 down to ~0.69, across the 0.85 threshold):
    every hit and every miss equals datasketch's MinHashLSH with the same candidate check."""
    rng = np.random.default_rng(0)
    originals = rng.integers(0, 2**64, (200, 128), dtype=np.uint64)
    copies = []
    for _ in range(1500):
        copy = originals[rng.integers(len(originals))].copy()
        changed = rng.choice(128, rng.integers(0, 41), replace=False)
        copy[changed] = rng.integers(0, 2**64, len(changed), dtype=np.uint64)
        copies.append(copy)
    signatures = np.concatenate([originals, np.stack(copies)])
    dedup = NearDedup(threshold=0.85, num_perm=128)
    keys = dedup.band_keys(signatures)
    # Kept rows are numbered in keep order, which is the reference's key; map ours back to row numbers.
    kept_rows, ours = {}, []
    for index, (signature, row_keys) in enumerate(zip(signatures, keys)):
        hit = dedup.check_and_add(str(index), signature, band_keys=row_keys)
        ours.append(None if hit is None else str(kept_rows[hit]))
        if hit is None:
            kept_rows[str(index)] = len(kept_rows)
    reference = _datasketch_lsh_decisions(signatures, 0.85)
    assert ours == reference
    assert 300 < sum(hit is not None for hit in ours) < 1400  # both outcomes are exercised
