"""The elo stage in the demo pipeline: answers, judgments, ratings, the counts in the manifest."""

from __future__ import annotations

import json

import pytest

from med42_train.config import ConfigError, load_config
from tests.conftest import SMALL_RUN_OVERRIDES


def test_demo_elo_outputs(demo_run):
    elo = demo_run / "elo"
    ratings = json.loads((elo / "ratings.json").read_text())
    models = [row["model"] for row in ratings["leaderboard"]]
    assert models and set(models) == set(ratings["models"]) and "base" in models and "sft" in models
    num_pairs = len(models) * (len(models) - 1) // 2
    assert ratings["num_games"] == num_pairs * ratings["num_questions"]
    judgments = [json.loads(line) for line in (elo / "judgments.jsonl").read_text().splitlines()]
    assert len(judgments) == ratings["judging"]["num_judgments"] <= 2 * ratings["num_games"]
    judging = ratings["judging"]
    assert judging["num_parsed"] + judging["num_logprob_fallbacks"] == judging["num_judgments"]
    for model in models:
        lines = (elo / "answers" / f"{model}.jsonl").read_text().splitlines()
        assert len(lines) == ratings["num_questions"]
    for row in ratings["leaderboard"]:
        assert row["ci_low"] <= row["rating"] <= row["ci_high"]
    manifest = json.loads((elo / "manifest.json").read_text())
    assert "questions" in manifest["inputs"] and manifest["figures"]["judging"] == judging


@pytest.mark.parametrize("override, message", [
    ("elo.top_p=1.5", "elo.top_p"),
    ("elo.models=[base]", "two or more"),
    ("elo.bootstrap_rounds=-1", "elo.bootstrap_rounds"),
    ("report.figure_format=gif", "report.figure_format"),
])
def test_bad_elo_and_report_overrides_fail_at_composition(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config([override])


def test_card_sampling_reaches_the_8b_experiment():
    cfg = load_config(["experiment=med42_v2_8b"])
    assert (cfg.elo.temperature, cfg.elo.top_k, cfg.elo.top_p, cfg.elo.max_new_tokens) == (0.4, 150, 0.75, 512)
    assert cfg.elo.judge.name_or_path == "prometheus-eval/prometheus-8x7b-v2.0"
    assert "Relevance" in cfg.elo.judge.rubric and cfg.elo.system_prompt.startswith("You are a helpful, respectful")


def test_killed_elo_stage_resumes_without_rejudging(demo_run, tmp_path):
    """A copy of the demo run whose elo stage was killed half-way through judging: the re-run judges only the
    missing half and reproduces the ratings (greedy judge, answers from the shared cache)."""
    import shutil

    from med42_train.eval import elo

    run_dir = tmp_path / "run"
    shutil.copytree(demo_run, run_dir, ignore=shutil.ignore_patterns("checkpoints", "wandb", "report"))
    original = json.loads((run_dir / "elo" / "ratings.json").read_text())
    for name in ("COMPLETE", "manifest.json", "ratings.json", "started.json"):  # as if killed while judging
        (run_dir / "elo" / name).unlink()
    lines = (run_dir / "elo" / "judgments.jsonl").read_text().splitlines()
    kept = len(lines) // 2
    (run_dir / "elo" / "judgments.jsonl").write_text("\n".join(lines[:kept]) + "\n")
    cfg = load_config([f"run_dir={run_dir}", "logger.wandb=false", *SMALL_RUN_OVERRIDES,
                       f"elo.cache_dir={demo_run.parent / '.cache' / 'elo'}"])  # the demo run's answer cache
    elo.run(cfg)
    resumed = json.loads((run_dir / "elo" / "ratings.json").read_text())
    assert resumed["judging"]["num_reused"] == kept
    assert resumed["judging"]["num_judged_this_run"] == len(lines) - kept
    assert sum(resumed["answers_generated"].values()) == 0  # every answer came from the cache
    ratings = [r["rating"] for r in resumed["leaderboard"]]
    assert ratings == pytest.approx([r["rating"] for r in original["leaderboard"]])


def test_judge_without_chat_template_is_refused_before_any_model_loads(tmp_path):
    from transformers import PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models

    from med42_train.eval.elo import check_judge_template

    PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
                            ).save_pretrained(str(tmp_path))
    with pytest.raises(ConfigError, match="no chat template"):
        check_judge_template(str(tmp_path), trust_remote_code=False)
