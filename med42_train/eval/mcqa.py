"""The `eval` stage: lm-evaluation-harness on the base, SFT and DPO models; a comparison table at the end.

Launch: med42 eval run_dir=runs/demo
Writes <run_dir>/eval/tasks/ (the installed task YAMLs), <run_dir>/eval/<model>/results.json and
samples_<task>.jsonl (every scored request), summary.json, comparison.md.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import yaml
from omegaconf import DictConfig

from med42_train.config import RECIPE_DIR, ConfigError
from med42_train.runtime.log import get_logger
from med42_train.runtime.rundir import begin_stage, finish_stage, stage_input
from med42_train.runtime.wandb_run import start_run

log = get_logger()
TASK_DIR = Path(__file__).parent / "tasks"
MODEL_STAGES = {"base": "data", "sft": "sft", "dpo": "dpo"}


def stage_inputs(cfg: DictConfig) -> dict[str, dict[str, str]]:
    return _models_to_evaluate(cfg)[1]


def run(cfg: DictConfig) -> None:
    models, inputs = _models_to_evaluate(cfg)
    stage = begin_stage(cfg, "eval", inputs)
    if stage is None:
        return
    cfg, wandb_run = stage.cfg, start_run(stage.cfg, "eval")
    task_dir = install_tasks(list(cfg.eval.tasks), stage.dir / "tasks")

    scores = {}
    for label, path in models.items():
        results = evaluate_model(cfg, path, task_dir)
        _write_results(stage.dir / label, results)
        scores[label] = {task: _task_scores(results["results"][task]) for task in cfg.eval.tasks}
        wandb_run.log({f"eval/{label}/{task}/{metric}": value
                       for task, metrics in scores[label].items() for metric, value in metrics.items()})

    table = comparison_table(scores)
    print(table)
    (stage.dir / "comparison.md").write_text(table + "\n")
    (stage.dir / "summary.json").write_text(json.dumps(scores, indent=2))
    outputs = {"summary": {"path": str(stage.dir / "summary.json")}, "models": models}
    finish_stage(stage, outputs, {"scores": scores}, wandb_run_id=wandb_run.id)
    wandb_run.finish()


def _models_to_evaluate(cfg: DictConfig) -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    models, inputs = {}, {}
    for label in cfg.eval.models:
        manifest, record = stage_input(cfg, MODEL_STAGES[label])
        outputs = manifest["outputs"]
        models[label] = outputs["base_model"]["path"] if label == "base" else outputs["model"]["path"]
        inputs[MODEL_STAGES[label]] = record
    return models, inputs


def install_tasks(task_names: list[str], out_dir: Path) -> Path:
    """Copy the shipped task YAMLs, with data files made absolute, into the stage folder."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in task_names:
        source = TASK_DIR / f"{name}.yaml"
        if not source.is_file():
            available = sorted(p.stem for p in TASK_DIR.glob("*.yaml"))
            raise ConfigError(f"eval.tasks: no task definition {source.name}; shipped tasks: {available}")
        task = yaml.safe_load(source.read_text())
        files = task.get("dataset_kwargs", {}).get("data_files", {})
        for split, path in files.items():
            files[split] = str(path if Path(path).is_absolute() else RECIPE_DIR / path)
        (out_dir / source.name).write_text(yaml.safe_dump(task, sort_keys=False))
    return out_dir


def evaluate_model(cfg: DictConfig, model_path: str, task_dir: Path) -> dict:
    import torch
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from med42_train.models.tokenizer import chat_template_for_model

    if Path(model_path).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local model: never reach for the hub
    device = "cuda" if torch.cuda.is_available() else "cpu"
    log.info("evaluating %s on %s", model_path, list(cfg.eval.tasks))
    return simple_evaluate(
        model="hf",
        model_args={"pretrained": model_path, "dtype": cfg.model.dtype,
                    "trust_remote_code": cfg.model.trust_remote_code,
                    # the family's training template for every model, the base included (lm-eval passes these
                    # to tokenizer.apply_chat_template)
                    "chat_template_args": {"chat_template": chat_template_for_model(cfg.model, model_path)}},
        tasks=list(cfg.eval.tasks),
        task_manager=TaskManager(include_path=str(task_dir)),
        num_fewshot=cfg.eval.num_fewshot,
        apply_chat_template=cfg.eval.apply_chat_template,
        system_instruction=cfg.eval.system_prompt,
        batch_size=cfg.eval.batch_size,
        limit=cfg.eval.limit,
        device=device,
        random_seed=cfg.seed,
        log_samples=True,  # every scored request, written beside the results for inspection
    )


def _write_results(out_dir: Path, results: dict) -> None:
    """results.json (scores and harness config) and, per task, samples_<task>.jsonl (each scored request)."""
    out_dir.mkdir(exist_ok=True)
    for task, samples in results.pop("samples", {}).items():
        with open(out_dir / f"samples_{task}.jsonl", "w") as handle:
            for sample in samples:
                handle.write(json.dumps(sample, default=str) + "\n")
    (out_dir / "results.json").write_text(json.dumps(results, indent=2, default=str))


def _task_scores(task_result: dict) -> dict[str, float]:
    return {key.split(",")[0]: float(value) for key, value in task_result.items()
            if key.split(",")[0] in ("acc", "acc_norm", "acc_stderr") and isinstance(value, (int, float))}


def comparison_table(scores: dict[str, dict[str, dict[str, float]]]) -> str:
    """Markdown table: one row per model; per task, accuracy (%) and length-normalised accuracy when known."""
    tasks = sorted({task for per_model in scores.values() for task in per_model})
    lines = ["| model | " + " | ".join(f"{t} acc (acc_norm)" for t in tasks) + " |", "|---|" + "---|" * len(tasks)]
    for label, per_task in scores.items():
        lines.append(f"| {label} | " + " | ".join(_cell(per_task[t]) for t in tasks) + " |")
    return "\n".join(lines)


def _cell(metrics: dict[str, float]) -> str:
    normalised = f" ({100 * metrics['acc_norm']:.2f})" if "acc_norm" in metrics else ""
    return f"{100 * metrics['acc']:.2f}{normalised}"
