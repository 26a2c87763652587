"""The harness's LM as the eval stage builds it: the scored continuation is the answer alone, after one BOS."""

from __future__ import annotations

import pytest

from med42_train.eval.harness import AnswerBoundary

LIVER_QUESTION = [{"role": "user", "content": "Which organ makes bile?\n\nA. Heart\nB. Liver"}]


@pytest.fixture(scope="module")
def real_llama3_lms(llama3_tokenizer):
    """A tiny Llama with the real Llama 3 tokenizer in the harness's HFLM, plain and with our answer boundary."""
    import torch
    from lm_eval.models.huggingface import HFLM
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(llama3_tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, bos_token_id=llama3_tokenizer.bos_token_id)
    model = LlamaForCausalLM(config).eval()
    ours = type("Med42HFLM", (AnswerBoundary, HFLM), {})
    return (HFLM(pretrained=model, tokenizer=llama3_tokenizer, device="cpu"),
            ours(pretrained=model, tokenizer=llama3_tokenizer, device="cpu"))


def test_the_answer_is_scored_alone_after_the_chat_formatted_question(real_llama3_lms, llama3_tokenizer):
    plain, ours = real_llama3_lms
    context = ours.apply_chat_template(LIVER_QUESTION)
    meta_ids = llama3_tokenizer.apply_chat_template(LIVER_QUESTION, add_generation_prompt=True, tokenize=True,
                                                    return_dict=False)
    context_ids, continuation_ids = ours._encode_pair(context, "Liver")
    assert context_ids == meta_ids  # the prompt exactly as Meta's format tokenizes it for generation
    assert continuation_ids == llama3_tokenizer.encode("Liver", add_special_tokens=False)
    assert [*context_ids, *continuation_ids].count(llama3_tokenizer.bos_token_id) == 1
    # The harness alone moves the assistant header's "\n\n" into every scored continuation.
    _, plain_continuation = plain._encode_pair(context, "Liver")
    assert llama3_tokenizer.decode(plain_continuation) == "\n\nLiver"


def test_the_boundary_keeps_the_token_sequence_and_moves_only_the_split(real_llama3_lms):
    """Same tokens in the same order: log-likelihood of the answer is unchanged up to the shared \\n\\n term."""
    plain, ours = real_llama3_lms
    context = ours.apply_chat_template(LIVER_QUESTION)
    assert sum(plain._encode_pair(context, "Liver"), []) == sum(ours._encode_pair(context, "Liver"), [])
