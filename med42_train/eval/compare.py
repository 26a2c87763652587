"""Scores per model and task, and the markdown table that puts them beside the paper's (paper_results.yaml)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Optional

import yaml

from med42_train.eval.checkpoints import RunModel

PAPER_FILE = Path(__file__).parent / "paper_results.yaml"
METRICS = ("acc", "acc_stderr", "acc_norm", "acc_norm_stderr")


@lru_cache(maxsize=1)
def paper() -> dict[str, Any]:
    return yaml.safe_load(PAPER_FILE.read_text())


def task_scores(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """{task or subtask: {acc, acc_stderr, acc_norm, acc_norm_stderr}} from one task's share of lm-eval results."""
    scores = {}
    for name, metrics in result["results"].items():
        scores[name] = {key.split(",")[0]: float(value) for key, value in metrics.items()
                        if key.split(",")[0] in METRICS and isinstance(value, (int, float))}
    return scores


def paper_model(experiment: str, model: RunModel, last_label: Optional[str]) -> Optional[str]:
    """The paper row a model is compared with: base / last DPO iteration of the experiment, or a folder alias."""
    roles = paper().get("experiments", {}).get(experiment, {})
    if model.label == "base" and "base" in roles:
        return roles["base"]
    if model.label == last_label and model.stage == "dpo" and "final" in roles:
        return roles["final"]
    for name, row in paper()["models"].items():
        if model.label.lower() in (alias.lower() for alias in row.get("aliases", [])):
            return name
    return None


def paper_score(paper_row: Optional[str], task: str) -> Optional[float]:
    column = paper()["columns"].get(task)
    if paper_row is None or column is None:
        return None
    return paper()["models"][paper_row]["scores"].get(column)


def comparison_table(scores: dict[str, dict[str, dict[str, float]]], paper_rows: dict[str, Optional[str]]) -> str:
    """One row per model x task (groups first, then their subtasks); accuracies in %, the paper's beside ours."""
    lines = ["| model | task | acc (%) | ± stderr | acc_norm (%) | paper row | paper (%) | Δ (points) |",
             "|---|---|---|---|---|---|---|---|"]
    for label, per_task in scores.items():
        for task, metrics in per_task.items():
            lines.append(_row(label, task, metrics, paper_rows.get(label)))
    return "\n".join(lines)


def _row(label: str, task: str, metrics: dict[str, float], paper_row: Optional[str]) -> str:
    acc = 100 * metrics["acc"]
    reference = paper_score(paper_row, task)
    cells = [label, task, f"{acc:.2f}", _pct(metrics.get("acc_stderr")), _pct(metrics.get("acc_norm")),
             paper_row if reference is not None else "—", f"{reference:.2f}" if reference is not None else "—",
             f"{acc - reference:+.2f}" if reference is not None else "—"]
    return "| " + " | ".join(cells) + " |"


def _pct(value: Optional[float]) -> str:
    return f"{100 * value:.2f}" if isinstance(value, float) else "—"
