"""Judging mechanics with scripted judges: position bias, the log-probability fallback, resuming."""

from __future__ import annotations

import json
import re

import pytest

from med42_train.eval.judge import (JudgmentStore, both_orders_outcome, decide, judge_prompt, parse_verdict)
from med42_train.eval.tournament import play, schedule

QUESTIONS = {f"q{k}": f"Question {k} about hypertension?" for k in range(4)}
ANSWERS = {name: {q: f"{name} answers {q} at length {k}" for k, q in enumerate(QUESTIONS)}
           for name in ("good", "bad", "meh")}


class ScriptedJudge:
    """Writes `[RESULT] X` where X comes from `choose(prompt)` (or raw text), counts every prompt it sees."""

    key = "scripted"

    def __init__(self, choose, fail_after=None, logprobs=(0.0, -1.0)):
        self.choose, self.fail_after, self.logprobs = choose, fail_after, logprobs
        self.seen: list[str] = []
        self.num_logprob_calls = 0

    def generate(self, prompts):
        if self.fail_after is not None and len(self.seen) + len(prompts) > self.fail_after:
            raise KeyboardInterrupt("killed")  # what a SIGINT mid-run looks like to the code
        self.seen += prompts
        return [self.choose(p) for p in prompts]

    def label_logprobs(self, prompts, texts):
        self.num_logprob_calls += len(prompts)
        return [self.logprobs] * len(prompts)


def _shown(prompt: str, which: str) -> str:
    return re.search(rf"###Response {which}:\n(\w+) answers", prompt).group(1)


def prefers_good(prompt: str) -> str:
    return "Fine feedback. [RESULT] " + ("A" if _shown(prompt, "A") == "good" else "B")


def test_prompt_is_prometheus_relative_without_reference():
    prompt = judge_prompt("Q?", "first", "second", "[Rubric?]")
    assert prompt.startswith("You are a fair judge assistant assigned to deliver insightful feedback")
    assert "###Response A:\nfirst\n\n###Response B:\nsecond\n\n###Score Rubric:\n[Rubric?]\n\n###Feedback: " in prompt
    assert "Reference Answer" not in prompt


def test_verdict_parsing_and_both_orders_rule():
    assert parse_verdict("blah [RESULT] B") == "B" and parse_verdict("x [RESULT] (A)") == "A"
    assert parse_verdict("no verdict here") is None and parse_verdict("[RESULT] C") is None
    assert both_orders_outcome("A", "B") == "a" and both_orders_outcome("B", "A") == "b"
    assert both_orders_outcome("A", "A") == "tie" and both_orders_outcome("B", "B") == "tie"


def test_always_first_judge_gives_only_ties(tmp_path):
    judge = ScriptedJudge(lambda prompt: "Response A is better. [RESULT] A")
    games = schedule(list(ANSWERS), list(QUESTIONS), None, seed=0)
    outcomes, counts = play(games, QUESTIONS, ANSWERS, judge, JudgmentStore(tmp_path / "j.jsonl"), "r", 3)
    assert len(outcomes) == 3 * 4 and {o for _, _, o in outcomes} == {"tie"}
    assert counts["num_judgments"] == 24 and counts["num_logprob_fallbacks"] == 0


def test_consistent_judge_gives_wins(tmp_path):
    games = schedule(list(ANSWERS), list(QUESTIONS), None, seed=0)
    outcomes, _ = play(games, QUESTIONS, ANSWERS, ScriptedJudge(prefers_good), JudgmentStore(tmp_path / "j"), "r", 5)
    for model_a, model_b, outcome in outcomes:
        expected = "a" if model_a == "good" else "b" if model_b == "good" else "tie"
        assert outcome == expected


def test_malformed_output_falls_back_to_logprobs_and_is_counted(tmp_path):
    judge = ScriptedJudge(lambda prompt: "I think the first one. RESULT: maybe", logprobs=(-3.0, -0.5))
    verdicts = decide(judge, ["p1", "p2"])
    assert [(v.label, v.source) for v in verdicts] == [("B", "logprobs")] * 2 and judge.num_logprob_calls == 2
    games = schedule(["good", "bad"], ["q0", "q1"], None, seed=0)
    _, counts = play(games, QUESTIONS, ANSWERS, judge, JudgmentStore(tmp_path / "j.jsonl"), "r", 4)
    assert counts["num_logprob_fallbacks"] == 4 and counts["num_parsed"] == 0


def test_killed_run_resumes_without_rejudging(tmp_path):
    path = tmp_path / "judgments.jsonl"
    games = schedule(list(ANSWERS), list(QUESTIONS), None, seed=0)
    killed = ScriptedJudge(prefers_good, fail_after=10)
    with pytest.raises(KeyboardInterrupt):
        play(games, QUESTIONS, ANSWERS, killed, JudgmentStore(path), "r", 4)
    done = [json.loads(line)["key"] for line in path.read_text().splitlines()]
    assert len(done) == 8  # two batches of 4 were written before the third was killed
    with open(path, "a") as handle:
        handle.write('{"key": "torn')  # a write cut short by the kill
    resumed = ScriptedJudge(prefers_good)
    store = JudgmentStore(path)
    outcomes, counts = play(games, QUESTIONS, ANSWERS, resumed, store, "r", 4)
    assert len(resumed.seen) == 24 - 8 and counts["num_reused"] == 8 and counts["num_torn_lines_dropped"] == 1
    again = ScriptedJudge(prefers_good)
    assert play(games, QUESTIONS, ANSWERS, again, JudgmentStore(path), "r", 4)[0] == outcomes and again.seen == []


def test_budget_per_pair_samples_questions():
    games = schedule(["x", "y", "z"], list(QUESTIONS), 2, seed=1)
    assert len(games) == 3 * 2
    assert games == schedule(["x", "y", "z"], list(QUESTIONS), 2, seed=1)  # seeded
