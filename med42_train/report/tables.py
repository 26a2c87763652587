"""Table rows for the report templates: values formatted here, markup left to the templates."""

from __future__ import annotations

from typing import Optional

SHOWN_METRICS = ("acc", "acc_norm")


def _percent(value) -> str:
    return f"{100 * value:.2f}" if isinstance(value, (int, float)) else "-"


def mcqa_table(scores: Optional[dict]) -> Optional[dict]:
    """{'columns', 'rows'} from eval's {model: {task: {metric: value}}}: accuracy (%) per task and metric, with
    +- the standard error where the harness gave one. None when there are no scores."""
    if not scores:
        return None
    columns = sorted({(task, metric) for tasks in scores.values() for task, metrics in tasks.items()
                      if isinstance(metrics, dict) for metric in metrics if metric in SHOWN_METRICS})
    rows = []
    for model, tasks in scores.items():
        cells = []
        for task, metric in columns:
            metrics = tasks.get(task) if isinstance(tasks.get(task), dict) else {}
            stderr = metrics.get(f"{metric}_stderr")
            spread = f" ± {100 * stderr:.2f}" if isinstance(stderr, (int, float)) else ""
            cells.append(_percent(metrics.get(metric)) + (spread if metric in metrics else ""))
        rows.append([model, *cells])
    return {"columns": ["model", *(f"{task} {metric}" for task, metric in columns)], "rows": rows}


def paper_mcqa_table(paper: Optional[dict]) -> Optional[dict]:
    if not paper:
        return None
    mcqa = paper["mcqa"]
    rows = [[model, *("-" if v is None else f"{v:.2f}" for v in values)] for model, values in mcqa["rows"].items()]
    return {"columns": ["model", *mcqa["columns"]], "rows": rows}


def elo_rows(ratings: Optional[dict], paper: Optional[dict]) -> dict:
    """This run's leaderboard rows (rank, model, rating, interval, games, note) and the card's."""
    run_rows = []
    for rank, row in enumerate((ratings or {}).get("leaderboard", []), start=1):
        note = "unbounded: won or lost every game" if row["model"] in ratings.get("unbounded", []) else ""
        run_rows.append({"rank": rank, "model": row["model"], "rating": f"{row['rating']:.0f}",
                         "interval": f"{row['ci_low']:.0f} to {row['ci_high']:.0f}", "games": row["num_games"],
                         "note": note})
    paper_rows = [{"rank": rank, "model": model, "rating": rating}
                  for rank, (model, rating) in enumerate((paper or {}).get("elo", {}).items(), start=1)]
    return {"run": run_rows, "paper": paper_rows}
