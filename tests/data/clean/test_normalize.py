"""Normalization and the n-gram hashes every cleaning step relies on."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import numpy as np

from med42_train.data.clean.normalize import ngram_hashes, normalize_text, word_hashes, words


def test_normalize_ignores_case_whitespace_punctuation_and_compatibility_forms():
    assert normalize_text("  The Patient's BP:\r\n120/80 — “stable”!\t") == "the patients bp 12080 stable"
    assert normalize_text("ＦＵＬＬＷＩＤＴＨ ﬁle Straße") == "fullwidth file strasse"  # NFKC + casefold
    assert normalize_text("47,XY,+21 and A → B") == "47xy21 and a b"
    assert normalize_text("...!?") == "" and words("") == []


def test_normalize_is_idempotent():
    text = "Hb 12.5 g/dL; don't STOP — well-known (ICD-10: E11.9)"
    assert normalize_text(normalize_text(text)) == normalize_text(text)


def test_ngram_hashes_equal_exactly_for_equal_word_windows():
    hashes = word_hashes(normalize_text("a b c a b c d"))
    trigrams = ngram_hashes(hashes, 3)
    assert trigrams.dtype == np.uint64 and len(trigrams) == 5
    assert trigrams[0] == trigrams[3] and len(set(trigrams.tolist())) == 4  # "a b c" twice, then b c a, c a b, b c d
    assert ngram_hashes(hashes, 8).size == 0


def test_word_hashes_are_stable_across_processes():
    """Cached signatures are compared between runs, so hashes must not depend on Python's per-process hash salt."""
    code = "from med42_train.data.clean.normalize import word_hashes; print(word_hashes('aspirin 81 mg').tolist())"
    outputs = {subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed},
                              capture_output=True, text=True, check=True).stdout for seed in ("1", "2")}
    assert outputs == {f"{word_hashes('aspirin 81 mg').tolist()}\n"}


def test_ascii_fast_path_equals_the_unicode_path():
    """normalize_text takes a bytes.translate shortcut for ASCII text; appending a non-ASCII letter that
    normalizes to itself forces the general (NFKC + regex) path on the same characters."""
    rng = random.Random(0)
    alphabet = [chr(code) for code in range(128)]
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(40)))
        expected = " ".join(filter(None, [normalize_text(text), "é"]))
        assert normalize_text(text + " é") == expected, repr(text)
