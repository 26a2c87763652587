"""The Llama 3 chat format and the assistant mask, on the demo tokenizer and on Meta's real Llama 3 tokenizer."""

from __future__ import annotations

import json

import pytest

from med42_train.data.tokenize import tokenize_preference, tokenize_sft
from med42_train.models.chat import BOS, EOT, META_LLAMA3_TEMPLATE, llama3_special_tokens
from med42_train.models.tokenizer import train_demo_tokenizer

DIALOG = [
    {"role": "system", "content": "You are a helpful, respectful and honest medical assistant."},
    {"role": "user", "content": "What does metformin do?"},
    {"role": "assistant", "content": "It lowers hepatic glucose production.  "},
    {"role": "user", "content": "Any common side effect?"},
    {"role": "assistant", "content": "Gastrointestinal upset, mostly diarrhoea."},
]


@pytest.fixture(scope="module")
def demo_tokenizer():
    corpus = [m["content"] for m in DIALOG] * 20 + ["The answer is B. Hypertension and diabetes."] * 20
    return train_demo_tokenizer(corpus, bpe_vocab_size=400)


def test_special_tokens_follow_llama3_order():
    tokens = llama3_special_tokens()
    assert len(tokens) == 256 and len(set(tokens)) == 256
    assert tokens.index(BOS) == 0 and tokens.index("<|start_header_id|>") == 6 and tokens.index(EOT) == 9


def _assert_mask_is_assistant_content_plus_eot(tokenizer, messages):
    input_ids, mask = tokenize_sft(tokenizer, messages)
    assert len(input_ids) == len(mask)
    assert input_ids.count(tokenizer.convert_tokens_to_ids(BOS)) == 1 and input_ids[0] == tokenizer.bos_token_id
    # Contiguous supervised spans, one per assistant turn, each decoding to the content then <|eot_id|>.
    spans, start = [], None
    for index, bit in enumerate(mask + [0]):
        if bit and start is None:
            start = index
        elif not bit and start is not None:
            spans.append(tokenizer.decode(input_ids[start:index]))
            start = None
    expected = [m["content"].strip() + EOT for m in messages if m["role"] == "assistant"]
    assert spans == expected


def test_demo_tokenizer_mask_covers_assistant_content_and_eot_only(demo_tokenizer):
    _assert_mask_is_assistant_content_plus_eot(demo_tokenizer, DIALOG)


def test_training_template_renders_exactly_metas_text(demo_tokenizer):
    ours = demo_tokenizer.apply_chat_template(DIALOG, tokenize=False)
    metas = demo_tokenizer.apply_chat_template(DIALOG, tokenize=False, chat_template=META_LLAMA3_TEMPLATE)
    assert ours == metas
    assert ours.startswith(BOS + "<|start_header_id|>system<|end_header_id|>\n\n")


def test_preference_completion_follows_the_prompt_and_ends_on_eot(demo_tokenizer):
    pair = {"prompt": DIALOG[1:2], "chosen": [DIALOG[2]], "rejected": [DIALOG[4]]}
    ids = tokenize_preference(demo_tokenizer, pair)
    assert demo_tokenizer.decode(ids["prompt_ids"]).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert demo_tokenizer.decode(ids["chosen_ids"]) == DIALOG[2]["content"].strip() + EOT
    assert demo_tokenizer.decode(ids["rejected_ids"]) == DIALOG[4]["content"].strip() + EOT


def test_real_llama3_ids_match_metas_expected_encodings(llama3_tokenizer, realdata):
    cases = json.loads((realdata / "llama3_tokenizer_expected_encodings.json").read_text())["cases"]
    dialog_case = next(c for c in cases if "chat_dialog" in c)
    ids = llama3_tokenizer.apply_chat_template(dialog_case["chat_dialog"], add_generation_prompt=True,
                                               tokenize=True, return_dict=True)["input_ids"]
    assert list(ids) == dialog_case["ids"]
    message_case = next(c for c in cases if "chat_message" in c)
    ids = llama3_tokenizer.apply_chat_template([message_case["chat_message"]], tokenize=True,
                                               return_dict=True)["input_ids"]
    assert list(ids)[1:] == message_case["ids"]  # Meta's single-message encoding has no BOS


def test_real_llama3_official_template_gives_the_same_ids_and_a_correct_mask(llama3_tokenizer, realdata):
    official = json.loads((realdata / "llama3_8b_instruct_tokenizer_config.json").read_text())["chat_template"]
    ours = llama3_tokenizer.apply_chat_template(DIALOG, tokenize=True, return_dict=True)["input_ids"]
    metas = llama3_tokenizer.apply_chat_template(DIALOG, tokenize=True, return_dict=True,
                                                 chat_template=official)["input_ids"]
    assert list(ours) == list(metas)
    assert llama3_tokenizer.convert_tokens_to_ids(EOT) == 128009
    _assert_mask_is_assistant_content_plus_eot(llama3_tokenizer, DIALOG)
