"""The report's figures (matplotlib, headless): training curves, the Elo leaderboard, the win-rate heatmap.

Each figure is returned as bytes in the configured format (embedded inline in the HTML page) and written as a
PNG beside the report (linked from the markdown twin, logged to W&B).
"""

from __future__ import annotations

import io
import math

import matplotlib

matplotlib.use("Agg")  # no display on servers; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

# (panel title, keys to try in order): the HF Trainer's names, and ours with or without the train/ prefix.
CURVE_PANELS = (
    ("loss", ("loss",)),
    ("learning rate", ("learning_rate",)),
    ("grad norm", ("grad_norm",)),
    ("tokens/s", ("train/tokens_per_s", "tokens_per_s")),
    ("reward margin (DPO)", ("rewards/margins",)),
    ("reward accuracy (DPO)", ("rewards/accuracies",)),
)
SOURCE_LOSS_PREFIXES = ("train/loss/", "loss/")


def _series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    points = [(row["step"], row[key]) for row in history
              if isinstance(row.get(key), (int, float)) and isinstance(row.get("step"), (int, float))]
    return [p[0] for p in points], [p[1] for p in points]


def source_loss_keys(history: list[dict]) -> list[str]:
    keys = {key for row in history for key in row if key.startswith(SOURCE_LOSS_PREFIXES)}
    return sorted(keys)


def curve_panels(history: list[dict]) -> list[tuple[str, list[tuple[str, list, list]]]]:
    """[(panel title, [(line label, steps, values)])] for the metrics this history has."""
    panels = []
    for title, keys in CURVE_PANELS:
        key = next((k for k in keys if _series(history, k)[0]), None)
        if key is not None:
            panels.append((title, [(key, *_series(history, key))]))
    sources = [(key.split("/")[-1], *_series(history, key)) for key in source_loss_keys(history)]
    if any(steps for _, steps, _ in sources):
        panels.append(("loss per source", sources))
    return panels


def training_figure(title: str, history: list[dict]):
    """One row of small panels per training run; None when the history has nothing to plot."""
    panels = curve_panels(history)
    if not panels:
        return None
    columns = min(len(panels), 4)
    rows = math.ceil(len(panels) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.6 * rows), squeeze=False)
    for axis, (panel_title, lines) in zip(axes.flat, panels):
        for label, steps, values in lines:
            axis.plot(steps, values, marker="o", markersize=2.5, linewidth=1.2, label=label)
        axis.set_title(panel_title, fontsize=9)
        axis.set_xlabel("step", fontsize=8)
        axis.tick_params(labelsize=7)
        axis.grid(alpha=0.3)
        if len(lines) > 1:
            axis.legend(fontsize=6)
    for axis in list(axes.flat)[len(panels):]:
        axis.set_visible(False)
    figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    return figure


def elo_figure(leaderboard: list[dict]):
    """Ratings with their 95% bootstrap intervals, best at the top."""
    names = [row["model"] for row in leaderboard][::-1]
    ratings = np.array([row["rating"] for row in leaderboard][::-1])
    low = ratings - np.array([row["ci_low"] for row in leaderboard][::-1])
    high = np.array([row["ci_high"] for row in leaderboard][::-1]) - ratings
    figure, axis = plt.subplots(figsize=(6, 0.5 * len(names) + 1.2))
    axis.errorbar(ratings, range(len(names)), xerr=[low, high], fmt="o", capsize=4, color="#1f5f99")
    axis.set_yticks(range(len(names)), names, fontsize=9)
    axis.set_xlabel("Elo (Bradley-Terry MLE, 95% bootstrap interval)", fontsize=9)
    axis.grid(axis="x", alpha=0.3)
    axis.margins(x=0.15, y=0.2)
    figure.tight_layout()
    return figure


def win_rate_figure(models: list[str], win_rate: list[list], tie_rate: list[list] | None = None):
    """Heatmap like the card's: row model's wins over the column model / games between them (ties count);
    each cell also says which share of those games were ties (a position-biased judge gives only ties)."""
    rates = np.array(win_rate, dtype=float)  # None (an unplayed pair) becomes NaN
    ties = np.array(tie_rate, dtype=float) if tie_rate is not None else np.full_like(rates, np.nan)
    figure, axis = plt.subplots(figsize=(1.1 * len(models) + 2.2, 0.9 * len(models) + 1.6))
    image = axis.imshow(np.ma.masked_invalid(rates), cmap="RdYlGn", vmin=0, vmax=1)
    axis.set_xticks(range(len(models)), models, rotation=30, ha="right", fontsize=9)
    axis.set_yticks(range(len(models)), models, fontsize=9)
    axis.set_xlabel("opponent", fontsize=9)
    axis.set_ylabel("model", fontsize=9)
    for i in range(len(models)):
        for j in range(len(models)):
            text = "-" if np.isnan(rates[i, j]) else f"{rates[i, j]:.2f}"
            if not np.isnan(ties[i, j]):
                text += f"\nties {ties[i, j]:.2f}"
            dark = not np.isnan(rates[i, j]) and not 0.2 <= rates[i, j] <= 0.85  # the colormap's dark ends
            axis.text(j, i, text, ha="center", va="center", fontsize=8, color="white" if dark else "black")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="win rate")
    figure.tight_layout()
    return figure


def to_bytes(figure, fmt: str, dpi: int) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format=fmt, dpi=dpi, bbox_inches="tight")
    return buffer.getvalue()


def close(figure) -> None:
    plt.close(figure)
