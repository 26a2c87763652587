"""The real judge's log-probability fallback on the demo's tiny base model, against transformers' own scores."""

from __future__ import annotations

import math

import torch
from omegaconf import OmegaConf

from med42_train.config import JudgeConfig
from med42_train.eval.judge import HFJudge, decide


def test_label_logprobs_match_generate_scores(demo_run):
    judge = HFJudge(str(demo_run / "data" / "base_model"), None, OmegaConf.structured(JudgeConfig(dtype="float32",
                    max_new_tokens=4, batch_size=2)), trust_remote_code=False, seed=0)
    prompt, text = "Compare these two replies.", "Both are short."
    (logprob_a, logprob_b), = judge.label_logprobs([prompt], [text])
    rendered = judge.tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                   add_generation_prompt=True)
    context_ids = judge.tokenizer(f"{rendered}{text} [RESULT]", add_special_tokens=False, return_tensors="pt")
    # transformers' own next-token scores (greedy, one step): an independent path to the same distribution
    out = judge.model.generate(**context_ids, max_new_tokens=1, do_sample=False, output_scores=True,
                               return_dict_in_generate=True, pad_token_id=judge.tokenizer.pad_token_id)
    next_logprobs = torch.log_softmax(out.scores[0][0].float(), dim=-1)
    for label, ours in (("A", logprob_a), ("B", logprob_b)):
        full = judge.tokenizer(f"{rendered}{text} [RESULT] {label}", add_special_tokens=False)["input_ids"]
        assert len(full) == context_ids["input_ids"].shape[1] + 1  # the demo BPE makes " A" one token here
        assert math.isclose(ours, float(next_logprobs[full[-1]]), abs_tol=1e-4) and ours < 0
    verdicts = decide(judge, [prompt])  # the tiny model writes no verdict: the fallback decides, and says so
    assert verdicts[0].source == "logprobs" and verdicts[0].label in ("A", "B")
