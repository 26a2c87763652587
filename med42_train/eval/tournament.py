"""The tournament: which (question, model pair) games are played, and playing them through a cached judge.

A game is one question answered by two models, judged in both orders (two judgments); its outcome follows the
both-orders rule in judge.py. Every judgment is keyed by the judge's identity, the question and the two
displayed answers' hashes, so a killed run, or a run with one new model, judges only what it lacks.
"""

from __future__ import annotations

import hashlib
import itertools
import random
from dataclasses import dataclass
from typing import Optional

from med42_train.eval.judge import Judge, JudgmentStore, both_orders_outcome, decide, judge_prompt


@dataclass(frozen=True)
class Game:
    question_id: str
    model_a: str
    model_b: str


def schedule(models: list[str], question_ids: list[str], questions_per_pair: Optional[int], seed: int) -> list[Game]:
    """All model pairs on every question, or on a seeded sample of `questions_per_pair` questions per pair."""
    games = []
    for pair_index, (model_a, model_b) in enumerate(itertools.combinations(models, 2)):
        chosen = question_ids
        if questions_per_pair is not None and questions_per_pair < len(question_ids):
            chosen = random.Random(f"{seed}-{model_a}-{model_b}").sample(question_ids, questions_per_pair)
        games += [Game(qid, model_a, model_b) for qid in chosen]
    return games


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def judgment_key(judge_key: str, question_id: str, shown_a: str, shown_b: str) -> str:
    return f"{judge_key}:{question_id}:{_text_hash(shown_a)}:{_text_hash(shown_b)}"


def play(games: list[Game], questions: dict[str, str], answers: dict[str, dict[str, str]], judge: Judge,
         store: JudgmentStore, rubric: str, batch_size: int) -> tuple[list[tuple[str, str, str]], dict]:
    """(games as (model_a, model_b, outcome), counts): judges the missing orders in batches, appending each batch
    to the store before the next, then reads every outcome back from the store."""
    wanted = {}  # key -> (question_id, model shown as A, model shown as B), both orders of every game
    for game in games:
        for shown_a, shown_b in ((game.model_a, game.model_b), (game.model_b, game.model_a)):
            key = judgment_key(judge.key, game.question_id, answers[shown_a][game.question_id],
                               answers[shown_b][game.question_id])
            wanted[key] = (game.question_id, shown_a, shown_b)
    missing = [key for key in wanted if key not in store.records]
    for start in range(0, len(missing), batch_size):
        batch = missing[start:start + batch_size]
        prompts = [judge_prompt(questions[q], answers[a][q], answers[b][q], rubric)
                   for q, a, b in (wanted[key] for key in batch)]
        verdicts = decide(judge, prompts)
        store.add([{"key": key, "question_id": wanted[key][0], "model_a": wanted[key][1],
                    "model_b": wanted[key][2], "verdict": v.label, "source": v.source, "text": v.text,
                    "logprob_a": v.logprob_a, "logprob_b": v.logprob_b} for key, v in zip(batch, verdicts)])
    outcomes = []
    for game in games:
        first, second = (store.records[judgment_key(judge.key, game.question_id, answers[a][game.question_id],
                                                    answers[b][game.question_id])]["verdict"]
                         for a, b in ((game.model_a, game.model_b), (game.model_b, game.model_a)))
        outcomes.append((game.model_a, game.model_b, both_orders_outcome(first, second)))
    return outcomes, _counts(wanted, store, len(missing))


def _counts(wanted: dict, store: JudgmentStore, num_judged_now: int) -> dict:
    sources = [store.records[key]["source"] for key in wanted]
    return {"num_judgments": len(wanted), "num_judged_this_run": num_judged_now,
            "num_reused": len(wanted) - num_judged_now, "num_logprob_fallbacks": sources.count("logprobs"),
            "num_parsed": sources.count("text"), "num_torn_lines_dropped": store.num_torn_lines}
