"""Llama 3.1's chat format: our training template renders Meta's 3.1 template's text byte for byte (date lines
included, any configured date), masks assistant content + <|eot_id|> only, and the family follows the vocabulary."""

from __future__ import annotations

import hashlib

import pytest
from omegaconf import OmegaConf

from med42_train.config import ConfigError, load_config, validate
from med42_train.models.chat import (TRAINING_LLAMA3_TEMPLATE, ChatFormat,
                                     format_of_template, llama3_special_tokens, stop_token_ids)
from med42_train.models.meta_templates import META_LLAMA31_TEMPLATE
from med42_train.models.tokenizer import chat_template_for_model, resolve_chat_format, train_demo_tokenizer
from tests.conftest import LLAMA31_NAMED_IDS
from tests.models.test_chat import DIALOG, _assert_mask_is_assistant_content_plus_eot

FIRST_USER = DIALOG[1]
CONVERSATIONS = {
    "system, multi-turn": DIALOG,
    "no system": DIALOG[1:],
    "single turn, untrimmed": [{"role": "user", "content": "  Dose?\r\n"}, {"role": "assistant", "content": "\n5 mg "}],
    "empty system": [{"role": "system", "content": "  "}, *DIALOG[1:3]],
}
PROMPTS = {"system prompt": DIALOG[:2], "no system": DIALOG[1:2], "multi-turn": DIALOG[:4]}
CONFIGURED_DATE = "04 Dec 2026"


@pytest.fixture(scope="module")
def demo31_tokenizer():
    corpus = [m["content"] for m in DIALOG] * 20 + ["Cutting Knowledge Date: December 2023 Today"] * 20
    return train_demo_tokenizer(corpus, bpe_vocab_size=400, chat_format=ChatFormat("llama31"))


def test_metas_template_is_the_verbatim_july_2024_text():
    # The digest of the text as copied (meta_templates.py): an accidental edit of the reference fails here.
    assert hashlib.sha256(META_LLAMA31_TEMPLATE.encode()).hexdigest() == (
        "e10ca381b1ccc5cf9db52e371f3b6651576caee0a630b452e2816b2d404d4b65")
    assert '{%- set date_string = "26 Jul 2024" %}' in META_LLAMA31_TEMPLATE


def _assert_renders_as_meta(tokenizer, date=None):
    """Text (and ids) of our template == Meta's, for every conversation and prompt; `date` as Meta is given it."""
    metas_kwargs = {} if date is None else {"date_string": date}
    for name, messages in [*CONVERSATIONS.items(), *PROMPTS.items()]:
        generation_prompt = name in PROMPTS
        ours = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        metas = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt,
                                              chat_template=META_LLAMA31_TEMPLATE, **metas_kwargs)
        assert ours == metas, name
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=generation_prompt, return_dict=True)
        assert list(ids["input_ids"]) == tokenizer(metas, add_special_tokens=False)["input_ids"], name


def test_demo_31_template_renders_metas_text_with_the_date_lines(demo31_tokenizer):
    _assert_renders_as_meta(demo31_tokenizer)
    text = demo31_tokenizer.apply_chat_template(DIALOG[1:3], tokenize=False)
    assert text.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
                           "December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user")


def test_configured_date_renders_as_metas_template_given_that_date(demo31_tokenizer):
    original = demo31_tokenizer.chat_template
    demo31_tokenizer.chat_template = ChatFormat("llama31", CONFIGURED_DATE).template
    try:
        _assert_renders_as_meta(demo31_tokenizer, date=CONFIGURED_DATE)
        assert f"Today Date: {CONFIGURED_DATE}\n\n" in demo31_tokenizer.apply_chat_template(DIALOG, tokenize=False)
        # Like Meta's, the template still honours an explicit date_string.
        assert "Today Date: 01 Jan 2025\n" in demo31_tokenizer.apply_chat_template(
            DIALOG, tokenize=False, date_string="01 Jan 2025")
    finally:
        demo31_tokenizer.chat_template = original


def test_31_mask_is_assistant_content_and_eot_only(demo31_tokenizer, llama31_tokenizer):
    for tokenizer in (demo31_tokenizer, llama31_tokenizer):
        for messages in CONVERSATIONS.values():
            _assert_mask_is_assistant_content_plus_eot(tokenizer, messages)


def test_tools_are_refused_rather_than_rendered_unlike_meta(demo31_tokenizer):
    tool = {"type": "function", "function": {"name": "dose", "description": "d", "parameters": {"type": "object"}}}
    with pytest.raises(Exception, match="renders no tools"):
        demo31_tokenizer.apply_chat_template(DIALOG, tools=[tool], tokenize=False)
    with pytest.raises(Exception, match="renders no tool turns"):
        demo31_tokenizer.apply_chat_template([FIRST_USER, {"role": "ipython", "content": "42"}], tokenize=False)


def test_real_31_vocabulary_selects_the_31_format_stop_ids_and_pad(llama31_tokenizer, llama3_tokenizer):
    assert {llama31_tokenizer.convert_tokens_to_ids(t): t for t in LLAMA31_NAMED_IDS.values()} == LLAMA31_NAMED_IDS
    assert format_of_template(llama31_tokenizer.chat_template) == ChatFormat("llama31")
    assert stop_token_ids(llama31_tokenizer) == [128001, 128008, 128009]  # Meta's 3.1 generation_config.json
    assert llama31_tokenizer.pad_token_id == 128004  # <|finetune_right_pad_id|>
    def ordinary(tokenizer):
        return {t: i for t, i in tokenizer.get_vocab().items() if i < 128000}
    assert ordinary(llama31_tokenizer) == ordinary(llama3_tokenizer)  # only special-token names differ
    assert llama3_tokenizer.chat_template == TRAINING_LLAMA3_TEMPLATE
    assert stop_token_ids(llama3_tokenizer) == [128001, 128009]


def test_real_31_tokenizer_renders_metas_text_and_ids(llama31_tokenizer):
    _assert_renders_as_meta(llama31_tokenizer)


def test_demo_31_special_tokens_carry_the_public_31_ids():
    tokens = llama3_special_tokens("llama31")
    assert len(set(tokens)) == 256
    assert {128000 + tokens.index(t): t for t in LLAMA31_NAMED_IDS.values()} == LLAMA31_NAMED_IDS
    assert tokens[5] == "<|reserved_special_token_2|>" and tokens[255] == "<|reserved_special_token_247|>"


def _model_cfg(**overrides):
    return OmegaConf.create({"chat_family": "auto", "chat_date": "26 Jul 2024", "trust_remote_code": False,
                             **overrides})


def test_family_from_vocabulary_or_config(llama31_tokenizer, llama3_tokenizer):
    vocab31, vocab3 = llama31_tokenizer.get_vocab(), llama3_tokenizer.get_vocab()
    assert resolve_chat_format(_model_cfg(), vocab31, "b") == ChatFormat("llama31")
    assert resolve_chat_format(_model_cfg(), vocab3, "b") == ChatFormat("llama3")
    assert resolve_chat_format(_model_cfg(chat_date=CONFIGURED_DATE), vocab31, "b").date == CONFIGURED_DATE
    with pytest.raises(ConfigError, match="has no <\\|eom_id\\|>"):
        resolve_chat_format(_model_cfg(chat_family="llama31"), vocab3, "b")
    assert resolve_chat_format(_model_cfg(chat_family="llama3"), vocab31, "b").family == "llama3"  # warns


@pytest.mark.parametrize("override, fix", [("model.chat_date='4 Dec 2026'", "two-digit day"),
                                           ("model.chat_date=2026-12-04", "model.chat_date"),
                                           ("model.chat_family=llama3.1", "auto, llama3, llama31")])
def test_bad_chat_settings_fail_at_config_time(override, fix):
    with pytest.raises(ConfigError, match=fix):
        validate(load_config(["experiment=med42_v2_8b_llama31", override]))


def test_eval_template_is_the_family_training_template(llama31_tokenizer, tmp_path):
    """A 3.1 base as released (Meta's own template) is evaluated with the format its fine-tunes carry."""
    base = tmp_path / "base"
    llama31_tokenizer.save_pretrained(str(base))
    saved = base / "chat_template.jinja"
    saved.write_text(META_LLAMA31_TEMPLATE)  # what the hub's 3.1 Instruct tokenizer carries
    template = chat_template_for_model(_model_cfg(chat_date=CONFIGURED_DATE), str(base))
    assert template == ChatFormat("llama31", CONFIGURED_DATE).template
    assert chat_template_for_model(_model_cfg(), str(base)) == llama31_tokenizer.chat_template
