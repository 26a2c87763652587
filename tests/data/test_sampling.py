"""Sampling a source's kept rows to its `samples:` or `tokens:` target, by seed, on row indices."""

from __future__ import annotations

import numpy as np

from med42_train.data.sampling import select_rows, source_rng


def test_samples_target_downsamples_and_upsamples_deterministically():
    supervised = np.full(10, 5)
    assert select_rows(supervised, None, None, source_rng(0, "a")).tolist() == list(range(10))
    down = select_rows(supervised, 4, None, source_rng(1, "a"))
    assert down.tolist() == select_rows(supervised, 4, None, source_rng(1, "a")).tolist()
    assert len(set(down.tolist())) == 4
    up = select_rows(supervised, 25, None, source_rng(1, "a")).tolist()
    assert len(up) == 25 and all(up.count(i) in (2, 3) for i in range(10))  # 2 full copies + 5 more


def test_tokens_target_takes_whole_copies_then_rows_until_the_remainder_is_reached():
    supervised = np.array([10, 20, 30, 40])  # 100 supervised tokens in all
    rows = select_rows(supervised, None, 250, source_rng(3, "b"))
    counts = np.bincount(rows, minlength=4)
    assert (counts >= 2).all() and (counts <= 3).all()
    extra_tokens = int(supervised[counts == 3].sum())
    assert extra_tokens >= 50  # reaches the remainder of 50 ...
    assert extra_tokens < 50 + supervised.max()  # ... and overshoots by less than one row


def test_each_source_draws_from_its_own_seed():
    supervised = np.full(50, 1)
    a = select_rows(supervised, 10, None, source_rng(7, "a")).tolist()
    b = select_rows(supervised, 10, None, source_rng(7, "b")).tolist()
    assert a != b and a == select_rows(supervised, 10, None, source_rng(7, "a")).tolist()
