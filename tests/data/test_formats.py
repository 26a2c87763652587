"""Format adapters: upstream records -> chat messages, on hand-made records and on the real public files."""

from __future__ import annotations

import json

import pytest

from med42_train.data.formats import RecordError, alpaca, medqa, messages_format, preference_flat, sharegpt
from med42_train.data.recipe import Source, select
from med42_train.data.sources import SourceError, iter_examples

MEDQA = {"question": "A 45-year-old man has crushing chest pain. Which drug first?",
         "answer": "Aspirin", "options": {"A": "Aspirin", "B": "Warfarin", "C": "Insulin", "D": "Heparin"},
         "meta_info": "step2&3", "answer_idx": "A"}


def test_medqa_states_letter_and_answer_text():
    messages = medqa(MEDQA)
    assert messages[0]["content"].endswith("A. Aspirin\nB. Warfarin\nC. Insulin\nD. Heparin")
    assert messages[1] == {"role": "assistant", "content": "The answer is A. Aspirin"}


@pytest.mark.parametrize("broken, field", [
    ({**MEDQA, "answer_idx": "E"}, "answer_idx"),
    ({**MEDQA, "options": {"A": "x"}}, "options"),
    ({k: v for k, v in MEDQA.items() if k != "question"}, "question"),
])
def test_medqa_rejects_broken_records_naming_the_field(broken, field):
    with pytest.raises(RecordError, match=field):
        medqa(broken)


def test_alpaca_joins_instruction_and_input_and_rejects_empty_output():
    messages = alpaca({"instruction": "Answer this question truthfully", "input": "What is BMI?", "output": "A ratio."})
    assert messages[0]["content"] == "Answer this question truthfully\n\nWhat is BMI?"
    with pytest.raises(RecordError, match="output"):
        alpaca({"instruction": "q", "input": "", "output": "   "})


def test_sharegpt_maps_roles_and_requires_alternation():
    record = {"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "h"},
                                {"from": "gpt", "value": "g"}]}
    assert [m["role"] for m in sharegpt(record)] == ["system", "user", "assistant"]
    with pytest.raises(RecordError, match="alternate"):
        sharegpt({"conversations": [{"from": "human", "value": "h"}, {"from": "human", "value": "h2"}]})


def test_preference_flat_rejects_identical_answers():
    assert preference_flat({"prompt": "p", "chosen": "a", "rejected": "b"})["chosen"][0]["role"] == "assistant"
    with pytest.raises(RecordError, match="identical"):
        preference_flat({"prompt": "p", "chosen": "a", "rejected": "a "})


def test_select_downsamples_and_upsamples_deterministically():
    items = list(range(10))
    assert select(items, None, 0) == items
    assert select(items, 4, 1) == select(items, 4, 1) and len(set(select(items, 4, 1))) == 4
    upsampled = select(items, 25, 1)
    assert len(upsampled) == 25 and all(upsampled.count(i) in (2, 3) for i in items)  # 2 full copies + 5 more


def test_malformed_json_line_is_reported_with_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(MEDQA) + "\n{not json\n")
    with pytest.raises(SourceError, match=r"bad.jsonl:2: the record: malformed_json"):
        list(iter_examples(Source("bad", "sft", "medqa", path)))


@pytest.mark.parametrize("filename, adapter", [
    ("medqa_usmle_4options_phrases_no_exclude_test.jsonl", medqa),
    ("medqa_usmle_5options_test.jsonl", medqa),
    ("medalpaca_wikidoc_patient_information_2000.json", alpaca),
    ("chatdoctor_genmedgpt5k_2000.json", alpaca),
    ("fastchat_dummy_conversation_sharegpt.json", sharegpt),
    ("llamafactory_kto_en_demo_messages.json", messages_format),
    ("ultrafeedback_binarized_flat_train_clean_1000.jsonl", preference_flat),
])
def test_real_upstream_files_convert(realdata, filename, adapter):
    records = list(read_records(Source(filename, realdata / filename, "x")))
    converted, rejected = [], []
    for _, record in records:
        try:
            converted.append(adapter(record))
        except RecordError as err:
            rejected.append(str(err))
    assert len(converted) + len(rejected) == len(records) > 100
    # Real files carry a few genuinely unusable records (e.g. UltraFeedback ties); never most of them.
    assert len(rejected) <= 0.05 * len(records), rejected[:3]
