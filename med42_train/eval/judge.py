"""Pairwise judging: Prometheus 2's relative-grading prompt, both orders, cached and resumable.

The prompt is Prometheus 2's relative grading template without a reference answer (prometheus-eval,
libs/prometheus-eval/prometheus_eval/prompts.py RELATIVE_PROMPT_WO_REF), sent as one user turn prefixed with
its relative system prompt through the judge's own chat template, as prometheus-eval's own judge does (the
Mistral-based judge has no system role). The rubric is the Med42-v2 card's.

Position bias: each pair is judged twice, A/B and B/A; a model wins only when it wins both, else it is a tie.
A verdict is parsed from `[RESULT] A|B`; when the text does not parse, the judge's log-probabilities of the
two labels after `[RESULT]` decide, and the fallback is counted.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Protocol

from med42_train.eval.generation import Sampling, generate, load_causal_lm, render_chat

REL_SYSTEM_PROMPT = ("You are a fair judge assistant assigned to deliver insightful feedback that compares individual "
                     "performances, highlighting how each stands relative to others within the same cohort.")
RELATIVE_PROMPT_WO_REF = """###Task Description:
An instruction (might include an Input inside it), a response to evaluate, and a score rubric representing a evaluation criteria are given.
1. Write a detailed feedback that assess the quality of two responses strictly based on the given score rubric, not evaluating in general.
2. After writing a feedback, choose a better response between Response A and Response B. You should refer to the score rubric.
3. The output format should look as follows: "(write a feedback for criteria) [RESULT] (A or B)"
4. Please do not generate any other opening, closing, and explanations.

###Instruction:
{instruction}

###Response A:
{response_A}

###Response B:
{response_B}

###Score Rubric:
{rubric}

###Feedback: """
RESULT_MARK = "[RESULT]"
_VERDICT = re.compile(r"\[RESULT\]\s*\(?\s*([AB])\b")


def judge_prompt(question: str, response_a: str, response_b: str, rubric: str) -> str:
    """The user turn the judge sees."""
    body = RELATIVE_PROMPT_WO_REF.format(instruction=question, response_A=response_a, response_B=response_b,
                                         rubric=rubric)
    return f"{REL_SYSTEM_PROMPT}\n\n{body}"


def parse_verdict(text: str) -> Optional[str]:
    """'A' or 'B' from the last `[RESULT] X` in the judge's text, None when there is none."""
    found = _VERDICT.findall(text)
    return found[-1] if found else None


def feedback_part(text: str) -> str:
    """The judge's text before its (possibly broken) verdict line, for the log-probability fallback."""
    return text.split(RESULT_MARK)[0].rstrip()


class Judge(Protocol):
    """What the tournament needs from a judge; tests script it, HFJudge runs a real causal LM."""

    key: str  # identity of the judge (model hash, prompt, decoding): part of every cached judgment's key

    def generate(self, prompts: list[str]) -> list[str]: ...

    def label_logprobs(self, prompts: list[str], texts: list[str]) -> list[tuple[float, float]]: ...


@dataclass(frozen=True)
class Verdict:
    label: str  # 'A' or 'B'
    source: str  # 'text' (parsed) or 'logprobs' (fallback)
    text: str
    logprob_a: Optional[float] = None
    logprob_b: Optional[float] = None


def decide(judge: Judge, prompts: list[str]) -> list[Verdict]:
    """One verdict per prompt: parsed from the text, else from the label log-probabilities."""
    texts = judge.generate(prompts)
    unparsed = [k for k, text in enumerate(texts) if parse_verdict(text) is None]
    fallback = dict(zip(unparsed, judge.label_logprobs([prompts[k] for k in unparsed],
                                                      [texts[k] for k in unparsed]))) if unparsed else {}
    verdicts = []
    for k, text in enumerate(texts):
        if k not in fallback:
            verdicts.append(Verdict(parse_verdict(text), "text", text))
            continue
        logprob_a, logprob_b = fallback[k]
        verdicts.append(Verdict("A" if logprob_a >= logprob_b else "B", "logprobs", text, logprob_a, logprob_b))
    return verdicts


def both_orders_outcome(first_order: str, second_order: str) -> str:
    """Outcome for (model_a, model_b) from the verdict with model_a shown as A and the one with it shown as B:
    'a' when model_a won both, 'b' when model_b won both, else 'tie'."""
    if first_order == "A" and second_order == "B":
        return "a"
    if first_order == "B" and second_order == "A":
        return "b"
    return "tie"


class HFJudge:
    """A local or hub causal LM as judge (transformers), greedy by default."""

    def __init__(self, path: str, sha256: Optional[str], judge_cfg, trust_remote_code: bool, seed: int):
        self.model, self.tokenizer = load_causal_lm(path, judge_cfg.dtype, trust_remote_code)
        self.sampling = Sampling(judge_cfg.temperature, 0, 1.0, judge_cfg.max_new_tokens, seed)
        self.batch_size = judge_cfg.batch_size
        identity = {"model": sha256 or path, "prompt": RELATIVE_PROMPT_WO_REF, "rubric": judge_cfg.rubric,
                    "sampling": self.sampling.__dict__}
        self.key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]

    def generate(self, prompts: list[str]) -> list[str]:
        rendered = render_chat(self.tokenizer, [[{"role": "user", "content": p}] for p in prompts])
        return generate(self.model, self.tokenizer, rendered, self.sampling, self.batch_size)

    def label_logprobs(self, prompts: list[str], texts: list[str]) -> list[tuple[float, float]]:
        rendered = render_chat(self.tokenizer, [[{"role": "user", "content": p}] for p in prompts])
        return [(self._continuation_logprob(f"{r}{feedback_part(t)} {RESULT_MARK}", " A"),
                 self._continuation_logprob(f"{r}{feedback_part(t)} {RESULT_MARK}", " B"))
                for r, t in zip(rendered, texts)]

    def _continuation_logprob(self, context: str, continuation: str) -> float:
        """Sum of the judge's log-probabilities of `continuation`'s tokens after `context`."""
        import torch

        context_ids = self.tokenizer(context, add_special_tokens=False)["input_ids"]
        full_ids = self.tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
        num_new = len(full_ids) - len(context_ids)  # BPE may merge across the boundary: score the tail tokens
        ids = torch.tensor([full_ids], device=self.model.device)
        with torch.no_grad():
            logprobs = torch.log_softmax(self.model(ids).logits[0, :-1].float(), dim=-1)
        targets = ids[0, 1:]
        picked = logprobs[torch.arange(len(targets)), targets][-num_new:]
        return float(picked.sum()) if num_new > 0 else -math.inf


class JudgmentStore:
    """judgments.jsonl: one line per judged prompt, appended and flushed per batch, so a killed run keeps every
    finished judgment and a re-run judges only what is missing. A torn last line (killed mid-write) is dropped."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        self.num_torn_lines = 0
        text = self.path.read_text() if self.path.is_file() else ""
        if text and not text.endswith("\n"):  # killed mid-write: cut the torn tail before appending again
            self.num_torn_lines = 1
            text = text[:text.rfind("\n") + 1]
            self.path.write_text(text)
        if text:
            for line in text.splitlines():
                try:
                    record = json.loads(line)
                    self.records[record["key"]] = record
                except (json.JSONDecodeError, KeyError):
                    self.num_torn_lines += 1

    def add(self, records: list[dict]) -> None:
        with open(self.path, "a") as handle:
            for record in records:
                handle.write(json.dumps(record) + "\n")
                self.records[record["key"]] = record
            handle.flush()
            os.fsync(handle.fileno())
