"""The harness's LM as the eval stage builds it: the scored continuation is the answer alone, after one BOS."""

from __future__ import annotations

import types

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
    assert context == ("<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nWhich organ makes bile?\n\n"
                       "A. Heart\nB. Liver<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
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


class _Recorder:
    """Stands in for the harness's HFLM / VLLM: records the arguments the eval stage passes."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.tokenizer = types.SimpleNamespace(chat_template=None)


def test_multi_gpu_settings_pass_through_to_the_harness(monkeypatch, tmp_path):
    """Untested on GPUs here: this checks only that the settings reach lm-eval's own arguments."""
    import sys

    import lm_eval.models.huggingface
    from omegaconf import open_dict

    from med42_train.config import load_config
    from med42_train.eval.harness import build_lm

    import med42_train.models.tokenizer

    monkeypatch.setattr(lm_eval.models.huggingface, "HFLM", _Recorder)
    # No tokenizer in the empty folder: the family template comes from a stand-in, and must reach the LM.
    monkeypatch.setattr(med42_train.models.tokenizer, "chat_template_for_model", lambda *_: "FAMILY TEMPLATE")
    monkeypatch.setitem(sys.modules, "lm_eval.models.vllm_causallms", types.SimpleNamespace(VLLM=_Recorder))
    cfg = load_config([f"run_dir={tmp_path}", "experiment=med42_v2_70b"])
    sharded = build_lm(cfg, str(tmp_path))
    assert sharded.kwargs["parallelize"] is True and "device" not in sharded.kwargs
    assert isinstance(sharded, AnswerBoundary) and sharded.kwargs["dtype"] == "bfloat16"
    assert sharded.tokenizer.chat_template == "FAMILY TEMPLATE"
    with open_dict(cfg):
        cfg.eval.backend, cfg.eval.tensor_parallel_size = "vllm", 8
    vllm = build_lm(cfg, str(tmp_path))
    assert vllm.kwargs["tensor_parallel_size"] == 8 and isinstance(vllm, AnswerBoundary)
    assert vllm.tokenizer.chat_template == "FAMILY TEMPLATE"
