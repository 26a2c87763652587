"""Preference pairs checked before any model loads: each fault dropped with its reason or refused with the fix."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from med42_train.config import ConfigError
from med42_train.models.chat import EOT
from med42_train.train.pairs import BOS, HEADER_START, check_pairs, pairs_fingerprint

IDS = {BOS: 1, EOT: 2, HEADER_START: 3}
PROMPT = [1, 3, 20, 21, 22]  # BOS, a header, text
GOOD = {"prompt_ids": PROMPT, "chosen_ids": [30, 31, 2], "rejected_ids": [40, 2]}


def table(*pairs: dict) -> pa.Table:
    return pa.table({name: pa.array([pair[name] for pair in pairs], pa.list_(pa.int32()))
                     for name in ("prompt_ids", "chosen_ids", "rejected_ids")})


def check(*pairs: dict, max_length: int = 64, max_truncated_fraction: float = 1.0):
    return check_pairs(table(*pairs), IDS, max_length, max_truncated_fraction, where="iteration 1")


def test_good_pairs_are_all_kept():
    kept, report = check(GOOD, {**GOOD, "chosen_ids": [50, 2]})
    assert kept.tolist() == [0, 1] and report.num_kept == 2 and report.dropped == {}


@pytest.mark.parametrize("fault, reason", [
    ({"chosen_ids": [2]}, "empty_response"),
    ({"rejected_ids": []}, "empty_response"),
    ({"chosen_ids": [30, 31]}, "response_not_ending_on_eot"),
    ({"rejected_ids": [40, 3, 41, 2]}, "response_holds_a_turn_header"),
    ({"rejected_ids": [30, 31, 2]}, "identical_responses"),
    ({"prompt_ids": [1] + [20] * 63}, "prompt_fills_max_length"),
])
def test_a_pair_that_cannot_be_trained_on_is_dropped_with_its_reason(fault, reason):
    kept, report = check(GOOD, {**GOOD, **fault}, GOOD)
    assert kept.tolist() == [0, 2]
    assert report.dropped == {reason: 1} and report.num_pairs == 3 and report.num_kept == 2


def test_identical_detection_compares_values_not_only_lengths():
    same_length_other_ids = {**GOOD, "chosen_ids": [40, 2], "rejected_ids": [41, 2]}
    kept, report = check(same_length_other_ids, {**GOOD, "chosen_ids": [40, 2], "rejected_ids": [40, 2]})
    assert kept.tolist() == [0] and report.dropped == {"identical_responses": 1}


@pytest.mark.parametrize("fault", [
    {"prompt_ids": [1, 1, 3, 20]},  # a template that adds its own BOS after the tokenizer's
    {"prompt_ids": [3, 20, 21]},  # no BOS
    {"chosen_ids": [1, 30, 2]},  # a BOS inside a response
])
def test_anything_but_exactly_one_leading_bos_refuses_the_stage(fault):
    with pytest.raises(ConfigError, match=r"exactly one <\|begin_of_text\|>.*re-run `med42 data`"):
        check(GOOD, {**GOOD, **fault})


def test_truncation_is_measured_and_refused_above_the_threshold():
    long_pair = {**GOOD, "chosen_ids": [30] * 10 + [2]}  # 5 + 11 = 16 tokens with max_length 12: 4 cut
    kept, report = check(GOOD, long_pair, GOOD, GOOD, max_length=12, max_truncated_fraction=0.25)
    assert kept.tolist() == [0, 1, 2, 3]
    assert (report.num_truncated_pairs, report.num_truncated_tokens) == (1, 4)
    assert report.as_dict()["truncated_fraction"] == 0.25
    with pytest.raises(ConfigError, match=r"1 of 3 pairs .* raise data.preference_max_length"):
        check(GOOD, long_pair, GOOD, max_length=12, max_truncated_fraction=0.25)


def test_no_trainable_pair_is_an_error_naming_the_fix():
    with pytest.raises(ConfigError, match="none of the 1 pairs can be trained on"):
        check({**GOOD, "chosen_ids": [2]})


def test_the_fingerprint_changes_with_the_data_the_iteration_and_the_kept_rows():
    base = pairs_fingerprint("abc", 1, np.array([0, 1, 2]))
    assert base == pairs_fingerprint("abc", 1, [0, 1, 2])
    assert len({base, pairs_fingerprint("abd", 1, [0, 1, 2]), pairs_fingerprint("abc", 2, [0, 1, 2]),
                pairs_fingerprint("abc", 1, [0, 2])}) == 4
