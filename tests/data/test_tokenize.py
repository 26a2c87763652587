"""The fast batched chat tokenization gives exactly the template path's ids and masks (demo and real Llama 3)."""

from __future__ import annotations

import json

import pytest

from med42_train.data.formats import alpaca, messages_format, sharegpt
from med42_train.data.tokenize import ChatEncoder, has_training_template, tokenize_preference, tokenize_sft
from med42_train.models.chat import META_LLAMA3_TEMPLATE, ChatFormat
from med42_train.models.tokenizer import train_demo_tokenizer

SYSTEM = {"role": "system", "content": "You are a careful medical assistant. "}
EDGE_CASES = [
    [{"role": "user", "content": "  Dose of amoxicillin?\r\n"}, {"role": "assistant", "content": "\n500 mg \r\n"}],
    [SYSTEM, {"role": "user", "content": "Émoji 🩺 first?"}, {"role": "assistant", "content": "🩺 stethoscope 聴診器"}],
    [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q2"},
     {"role": "assistant", "content": "   "}],
    [{"role": "user", "content": "literal <|eot_id|> in text"}, {"role": "assistant", "content": "ok <|eot_id|>"}],
]


def _real_conversations(realdata) -> list:
    """Real records through the project's adapters: wikidoc, ChatDoctor (CRLF), ShareGPT, messages, +system."""
    def load(name):
        return json.loads((realdata / name).read_text(encoding="utf-8"))
    conversations = [alpaca(r) for r in load("medalpaca_wikidoc_patient_information_2000.json")[:150]]
    conversations += [alpaca(r) for r in load("chatdoctor_genmedgpt5k_2000.json")[:150]]
    conversations += [sharegpt(r) for r in load("fastchat_dummy_conversation_sharegpt.json")[:100]]
    conversations += [messages_format(r) for r in load("llamafactory_kto_en_demo_messages.json")[:100]
                      if r["messages"][-1]["role"] == "assistant"]
    flat = (realdata / "ultrafeedback_binarized_flat_train_clean_1000.jsonl").read_text().splitlines()
    conversations += [_flat_preference_as_chat(json.loads(line)) for line in flat[240:320]]  # \r\n in answers
    assert any("\r\n" in m["content"] for c in conversations for m in c)
    assert any(sum(m["role"] == "assistant" for m in c) > 1 for c in conversations)
    return conversations + [[SYSTEM, *c] for c in conversations[::7]] + EDGE_CASES


def _flat_preference_as_chat(record: dict) -> list:
    return [{"role": "user", "content": record["prompt"]}, {"role": "assistant", "content": record["chosen"]}]


@pytest.fixture(scope="module")
def demo_tokenizer():
    corpus = [m["content"] for c in EDGE_CASES for m in c] * 20 + ["The answer is B. Hypertension."] * 20
    return train_demo_tokenizer(corpus, bpe_vocab_size=400)


def _assert_same_as_template_path(tokenizer, conversations):
    encoder = ChatEncoder(tokenizer)
    assert encoder.fast
    ids, masks = encoder.encode_sft(conversations)
    for row, messages in enumerate(conversations):
        expected_ids, expected_mask = tokenize_sft(tokenizer, messages)
        assert ids.row(row).tolist() == expected_ids, f"ids differ for conversation {row}"
        assert masks.row(row).tolist() == expected_mask, f"mask differs for conversation {row}"
    assert masks.row_sums().tolist() == [sum(tokenize_sft(tokenizer, c)[1]) for c in conversations]


def _assert_preference_same(tokenizer, conversations):
    pairs = [{"prompt": c[:-1], "chosen": c[-1:], "rejected": [{"role": "assistant", "content": "No idea."}]}
             for c in conversations]
    batch = ChatEncoder(tokenizer).encode_preference(pairs)
    for row, pair in enumerate(pairs):
        expected = tokenize_preference(tokenizer, pair)
        assert {key: batch[key].row(row).tolist() for key in expected} == expected


def test_fast_path_equals_template_path_on_demo_tokenizer(demo_tokenizer):
    _assert_same_as_template_path(demo_tokenizer, EDGE_CASES)
    _assert_preference_same(demo_tokenizer, EDGE_CASES)


def test_fast_path_equals_template_path_on_real_llama3_records(llama3_tokenizer, realdata):
    conversations = _real_conversations(realdata)
    _assert_same_as_template_path(llama3_tokenizer, conversations)
    _assert_preference_same(llama3_tokenizer, conversations[::5])


def test_other_templates_fall_back_to_the_template_path(demo_tokenizer):
    demo_tokenizer.chat_template, original = META_LLAMA3_TEMPLATE, demo_tokenizer.chat_template
    try:
        encoder = ChatEncoder(demo_tokenizer)
        assert not has_training_template(demo_tokenizer) and not encoder.fast
        ids, _ = encoder.encode_sft(EDGE_CASES[:1])
        assert ids.row(0).tolist() == demo_tokenizer.apply_chat_template(EDGE_CASES[0], tokenize=True,
                                                                           return_dict=True)["input_ids"]
    finally:
        demo_tokenizer.chat_template = original


def test_fast_path_equals_template_path_on_real_llama31_records(llama31_tokenizer, realdata):
    conversations = _real_conversations(realdata)[::3]  # a third: the 3.1 format differs only in its system block
    original = llama31_tokenizer.chat_template
    for chat_format in (ChatFormat("llama31"), ChatFormat("llama31", "04 Dec 2026")):
        llama31_tokenizer.chat_template = chat_format.template
        try:
            assert ChatEncoder(llama31_tokenizer).format == chat_format
            _assert_same_as_template_path(llama31_tokenizer, conversations)
            _assert_preference_same(llama31_tokenizer, conversations[::5])
        finally:
            llama31_tokenizer.chat_template = original


def test_fast_path_equals_template_path_on_demo_llama31_tokenizer():
    corpus = [m["content"] for c in EDGE_CASES for m in c] * 20 + ["Cutting Knowledge Date: Today"] * 20
    tokenizer = train_demo_tokenizer(corpus, bpe_vocab_size=400, chat_format=ChatFormat("llama31", "01 Jan 2025"))
    assert ChatEncoder(tokenizer).format == ChatFormat("llama31", "01 Jan 2025")
    cases = EDGE_CASES + [[{"role": "system", "content": " \n"}, *EDGE_CASES[0]]]  # a blank system prompt
    _assert_same_as_template_path(tokenizer, cases)
    _assert_preference_same(tokenizer, cases)
