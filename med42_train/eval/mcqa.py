"""The `eval` stage: the MCQA suite (lm-evaluation-harness) on every checkpoint, beside the paper's table.

Launch: med42 eval run_dir=runs/demo            (the models of eval.models: base, sft, each DPO iteration)
        med42 eval run_dir=runs/ext 'eval.models=[/models/Llama3-Med42-8B]'   (a local folder, no other stage)
Writes <run_dir>/eval/tasks/ (the task definitions that ran), <run_dir>/eval/<model>/results.json (per task:
scores, harness config, protocol block) and samples_<task>.jsonl (every scored request), summary.json and
comparison.md. Results are cached per model x task in eval.cache_dir (eval/cache.py): after adding a task,
`med42 eval ... overwrite=true` evaluates only that task.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from omegaconf import DictConfig

from med42_train.eval import cache, compare, harness
from med42_train.eval.checkpoints import RunModel, run_models
from med42_train.eval.task_defs import TASK_DIR
from med42_train.runtime.log import get_logger
from med42_train.runtime.rundir import begin_stage, finish_stage
from med42_train.runtime.wandb_run import NullRun, start_run

log = get_logger()


def stage_inputs(cfg: DictConfig) -> dict[str, dict[str, str]]:
    return _models_and_inputs(cfg)[1]


def run(cfg: DictConfig) -> None:
    models, inputs = _models_and_inputs(cfg)
    stage = begin_stage(cfg, "eval", inputs)
    if stage is None:
        return
    cfg, wandb_run = stage.cfg, start_run(stage.cfg, "eval")
    task_dir = install_tasks(stage.dir / "tasks")

    scores, cache_hits = {}, {}
    for model in models:
        results, cache_hits[model.label] = results_for(cfg, model, task_dir)
        _write_model(stage.dir / model.label, results)
        scores[model.label] = {name: metrics for result in results.values()
                               for name, metrics in compare.task_scores(result).items()}

    last_dpo = next((m.label for m in reversed(models) if m.stage == "dpo"), None)
    paper_rows = {m.label: compare.paper_model(cfg.name, m, last_dpo) for m in models}
    table = compare.comparison_table(scores, paper_rows)
    print(table)
    (stage.dir / "comparison.md").write_text(table + "\n")
    (stage.dir / "summary.json").write_text(json.dumps(scores, indent=2))
    _log_wandb(wandb_run, scores, paper_rows)
    outputs = {"summary": {"path": str(stage.dir / "summary.json")},
               "models": {m.label: {"path": m.path, "sha256": m.sha256} for m in models}}
    finish_stage(stage, outputs, {"scores": scores, "cache_hits": cache_hits}, wandb_run_id=wandb_run.id)
    wandb_run.finish()


def _models_and_inputs(cfg: DictConfig) -> tuple[list[RunModel], dict[str, dict[str, str]]]:
    """The models to evaluate; local folders count among the stage's inputs by their content hash."""
    models, inputs = run_models(cfg, list(cfg.eval.models))
    for model in models:
        if model.stage is None:
            inputs[f"model:{model.label}"] = {"path": model.path, "sha256": model.sha256}
    return models, inputs


def install_tasks(out_dir: Path) -> Path:
    """A copy of the shipped task definitions in the stage folder: what ran is what is recorded."""
    shutil.rmtree(out_dir, ignore_errors=True)
    shutil.copytree(TASK_DIR, out_dir, ignore=shutil.ignore_patterns("__pycache__"))
    return out_dir


def results_for(cfg: DictConfig, model: RunModel, task_dir: Path) -> tuple[dict[str, dict], list[str]]:
    """task -> result for one model: cached entries as they are, the missing tasks in one harness run."""
    entries = {task: cache.entry_dir(cfg, model, task) for task in cfg.eval.tasks}
    results = {task: cached for task, entry in entries.items() if (cached := cache.load(entry)) is not None}
    missing = [task for task in cfg.eval.tasks if task not in results]
    log.info("%s: %d task(s) cached, evaluating %s", model.label, len(results), missing or "nothing")
    if missing:
        fresh = harness.evaluate(cfg, harness.build_lm(cfg, model.path), missing, task_dir)
        for task, result in fresh.items():
            cache.store(entries[task], result)
        results |= fresh
    return {task: results[task] for task in cfg.eval.tasks}, sorted(set(results) - set(missing))


def _write_model(out_dir: Path, results: dict[str, dict]) -> None:
    """results.json: per task, its scores, harness config and protocol; samples_<task>.jsonl beside it."""
    body = {task: cache.write_samples(out_dir, result) for task, result in results.items()}
    (out_dir / "results.json").write_text(json.dumps(body, indent=2, default=str))


def _log_wandb(wandb_run, scores: dict, paper_rows: dict) -> None:
    """Per-metric scalars eval/<model>/<task>/<metric> and one table of every model x task."""
    rows = []
    for label, per_task in scores.items():
        wandb_run.log({f"eval/{label}/{task}/{metric}": value
                       for task, metrics in per_task.items() for metric, value in metrics.items()})
        rows += [[label, task, metrics.get("acc"), metrics.get("acc_stderr"), metrics.get("acc_norm"),
                  compare.paper_score(paper_rows.get(label), task)] for task, metrics in per_task.items()]
    if not isinstance(wandb_run, NullRun):
        import wandb

        columns = ["model", "task", "acc", "acc_stderr", "acc_norm", "paper_acc_pct"]
        wandb_run.log({"eval/table": wandb.Table(columns=columns, data=rows)})
