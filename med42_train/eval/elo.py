"""The `elo` stage: every model answers the question set, a judge compares them pairwise, Bradley-Terry rates them.

Launch: med42 elo run_dir=runs/demo            (after eval; `med42 pipeline` runs it)
Writes <run_dir>/elo/answers/<model>.jsonl, judgments.jsonl (every judgment, appended as it is made: a killed
run resumes without re-judging), ratings.json (leaderboard with 95% bootstrap intervals, win-rate matrix, judging
counts), leaderboard.md, manifest.json, COMPLETE. Answers are also cached in elo.cache_dir per model export hash.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from omegaconf import DictConfig

from med42_train.config import ConfigError
from med42_train.eval.answers import answer_all, load_questions, questions_path
from med42_train.eval.checkpoints import RunModel, check_model_labels, is_stage_label, run_models
from med42_train.eval.judge import HFJudge, JudgmentStore
from med42_train.eval.ratings import GameTable, rate
from med42_train.eval.tournament import play, schedule
from med42_train.runtime.log import get_logger
from med42_train.runtime.rundir import begin_stage, finish_stage, sha256_file, sha256_tree
from med42_train.runtime.wandb_run import start_run

log = get_logger()


def stage_inputs(cfg: DictConfig) -> dict[str, dict[str, str]]:
    return _resolve(cfg)[2]


def run(cfg: DictConfig) -> None:
    models, judge_model, inputs = _resolve(cfg)
    check_judge_template(judge_model.path, cfg.model.trust_remote_code)  # before hours of answer generation
    stage = begin_stage(cfg, "elo", inputs)
    if stage is None:
        return
    cfg, wandb_run, timings_s = stage.cfg, start_run(stage.cfg, "elo"), {}

    # ---- answers: every model, the card's system prompt and sampling, cached per export hash
    started, questions = time.time(), load_questions(cfg)
    answers, num_generated = {}, {}
    for model in models:
        answers[model.label], num_generated[model.label] = answer_all(cfg, model, questions)
        _write_answers(stage.dir / "answers" / f"{model.label}.jsonl", model, questions, answers[model.label])
    timings_s["answers"] = round(time.time() - started, 2)

    # ---- judging: both orders per game, appended to judgments.jsonl batch by batch
    started = time.time()
    judge = HFJudge(judge_model.path, judge_model.sha256, cfg.elo.judge, cfg.model.trust_remote_code, cfg.seed)
    labels = [model.label for model in models]
    games = schedule(labels, list(questions), cfg.elo.questions_per_pair, cfg.seed)
    outcomes, judging = play(games, questions, answers, judge, JudgmentStore(stage.dir / "judgments.jsonl"),
                             cfg.elo.judge.rubric, cfg.elo.judge.batch_size)
    timings_s["judging"] = round(time.time() - started, 2)

    # ---- ratings: Bradley-Terry on the Elo scale, bootstrap intervals, win-rate matrix
    started = time.time()
    result = rate(GameTable.from_games(labels, outcomes), cfg.elo.bootstrap_rounds, cfg.seed, cfg.elo.anchor_rating)
    timings_s["ratings"] = round(time.time() - started, 2)
    result.update(judging=judging, judge=judge_model.label, num_questions=len(questions),
                  answers_generated=num_generated, outcomes=_outcome_totals(outcomes))
    (stage.dir / "ratings.json").write_text(json.dumps(result, indent=2))
    table = leaderboard_table(result)
    print(table)
    (stage.dir / "leaderboard.md").write_text(table + "\n")
    wandb_run.log({f"elo/{row['model']}/rating": row["rating"] for row in result["leaderboard"]}
                  | {f"elo/judging/{key}": value for key, value in judging.items()})
    outputs = {"ratings": {"path": str(stage.dir / "ratings.json")},
               "judgments": {"path": str(stage.dir / "judgments.jsonl")},
               "answers": {"path": str(stage.dir / "answers")},
               "models": {m.label: {"path": m.path, "sha256": m.sha256} for m in models}}
    figures = {"leaderboard": result["leaderboard"], "judging": judging, "phase_timings_s": timings_s}
    finish_stage(stage, outputs, figures, wandb_run_id=wandb_run.id)
    wandb_run.finish()


def _resolve(cfg: DictConfig) -> tuple[list[RunModel], RunModel, dict[str, dict[str, str]]]:
    """(models in the tournament, the judge, the manifest inputs): stage models, extra folders, the question file."""
    check_model_labels(list(cfg.elo.models), "elo.models")
    check_model_labels(list(cfg.elo.extra_models), "elo.extra_models")
    models, inputs = run_models(cfg, [*cfg.elo.models, *cfg.elo.extra_models])
    judge = _judge_model(cfg, inputs)
    path = questions_path(cfg)
    inputs["questions"] = {"path": str(path), "sha256": sha256_file(path)}
    return models, judge, inputs


def _judge_model(cfg: DictConfig, inputs: dict) -> RunModel:
    name = str(cfg.elo.judge.name_or_path)
    if is_stage_label(name):  # one of this run's models; for `dpo` the last iteration
        judge_models, judge_inputs = run_models(cfg, [name])
        inputs.update(judge_inputs)
        last = judge_models[-1]
        return RunModel(f"{last.label} (this run)", last.path, last.sha256, last.stage)
    if Path(name).expanduser().is_dir():
        path = Path(name).expanduser().resolve()
        inputs["judge"] = {"path": str(path), "sha256": sha256_tree(path)}
        return RunModel(path.name, str(path), inputs["judge"]["sha256"], None)
    return RunModel(name, name, None, None)  # a hub id: resolved (and cached) by transformers


def check_judge_template(path: str, trust_remote_code: bool) -> None:
    """The judge is prompted through its own chat template: refuse one without it, before any model loads."""
    from transformers import AutoTokenizer

    if not AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code).chat_template:
        raise ConfigError(f"elo.judge.name_or_path={path!r} has no chat template (tokenizer_config.json "
                          "chat_template): use a chat/instruct judge such as prometheus-eval/prometheus-8x7b-v2.0")


def _write_answers(path: Path, model: RunModel, questions: dict[str, str], answers: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        for qid, question in questions.items():
            handle.write(json.dumps({"id": qid, "question": question, "answer": answers[qid],
                                     "model": model.label, "model_sha256": model.sha256}) + "\n")


def _outcome_totals(outcomes: list[tuple[str, str, str]]) -> dict[str, int]:
    kinds = [outcome for _, _, outcome in outcomes]
    return {"decisive": kinds.count("a") + kinds.count("b"), "ties": kinds.count("tie")}


def leaderboard_table(result: dict) -> str:
    """Markdown: rank, model, rating with its 95% interval, games."""
    lines = ["| rank | model | Elo | 95% interval | games |", "|---|---|---|---|---|"]
    for rank, row in enumerate(result["leaderboard"], start=1):
        flag = " (unbounded: won or lost every game)" if row["model"] in result["unbounded"] else ""
        lines.append(f"| {rank} | {row['model']}{flag} | {row['rating']:.0f} | "
                     f"{row['ci_low']:.0f} to {row['ci_high']:.0f} | {row['num_games']} |")
    return "\n".join(lines)
