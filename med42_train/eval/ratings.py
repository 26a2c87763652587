"""Bradley-Terry ratings on the Elo scale, as Chatbot Arena computes them, with bootstrap intervals.

P(a beats b) = 1 / (1 + 10 ** ((R_b - R_a) / 400)); the ratings are the maximum-likelihood fit of that model, a
logistic regression without intercept or penalty (scikit-learn), one feature per model (+ln 10 for the first
of a pair, -ln 10 for the second). A tie counts as half a win each way (Arena duplicates every game and splits
a tie into one win per side; halving those weights gives the same estimate). Ratings are anchored so that their
mean is `anchor` (1000 here; Arena pins one model instead).

Bootstrap: Arena resamples games with replacement. The fit only sees outcome counts per (pair, outcome), so a
resample is one multinomial draw of those counts: the same distribution, drawn in microseconds instead of
rebuilding a table of games, and 1000 rounds fit in seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

BASE, SCALE = 10.0, 400.0  # Chatbot Arena's Elo scale
OUTCOMES = ("a", "b", "tie")  # a: the first model of the pair won; b: the second; tie


@dataclass
class GameTable:
    """Outcome counts: counts[k] = (wins of first, wins of second, ties) for pairs[k] = (i, j), i < j."""

    models: list[str]
    pairs: list[tuple[int, int]]
    counts: np.ndarray  # shape (num_pairs, 3), float (bootstrap draws reuse the same table)

    @classmethod
    def from_games(cls, models: list[str], games: list[tuple[str, str, str]]) -> "GameTable":
        """Games as (model_a, model_b, outcome) with outcome in OUTCOMES; models not in `models` are refused."""
        index = {name: k for k, name in enumerate(models)}
        table: dict[tuple[int, int], list[float]] = {}
        for model_a, model_b, outcome in games:
            if model_a not in index or model_b not in index or model_a == model_b or outcome not in OUTCOMES:
                raise ValueError(f"bad game ({model_a!r}, {model_b!r}, {outcome!r}): models must be two of "
                                 f"{models} and the outcome one of {OUTCOMES}")
            i, j = index[model_a], index[model_b]
            row = table.setdefault((min(i, j), max(i, j)), [0.0, 0.0, 0.0])
            won = {"a": 0, "b": 1, "tie": 2}[outcome]
            row[2 if won == 2 else (won if i < j else 1 - won)] += 1
        pairs = sorted(table)
        counts = np.array([table[p] for p in pairs], dtype=float).reshape(-1, 3)
        return cls(list(models), pairs, counts)

    @property
    def num_games(self) -> int:
        return int(self.counts.sum())


def fit_ratings(table: GameTable, counts: np.ndarray | None = None, anchor: float = 1000.0) -> np.ndarray:
    """Maximum-likelihood Elo ratings (one per model, mean = anchor) for the table's counts (or other counts
    over the same pairs, for the bootstrap)."""
    from sklearn.linear_model import LogisticRegression

    counts = table.counts if counts is None else counts
    num_pairs, num_models = len(table.pairs), len(table.models)
    features = np.zeros((2 * num_pairs, num_models))
    for k, (i, j) in enumerate(table.pairs):
        features[[k, num_pairs + k], i] = math.log(BASE)
        features[[k, num_pairs + k], j] = -math.log(BASE)
    labels = np.r_[np.ones(num_pairs), np.zeros(num_pairs)]  # row k: first won; row num_pairs + k: second won
    weights = np.r_[counts[:, 0] + counts[:, 2] / 2, counts[:, 1] + counts[:, 2] / 2]
    # C=inf: no penalty (scikit-learn 1.8+ spelling of penalty=None), as Arena fits it.
    model = LogisticRegression(C=np.inf, fit_intercept=False, tol=1e-8, max_iter=1000)
    model.fit(features, labels, sample_weight=weights)
    ratings = SCALE * model.coef_[0]
    return ratings - ratings.mean() + anchor


def bootstrap_ratings(table: GameTable, num_rounds: int, seed: int, anchor: float = 1000.0) -> np.ndarray:
    """(num_rounds, num_models) ratings, each fit to one multinomial resample of all the games."""
    rng = np.random.default_rng(seed)
    flat = table.counts.ravel()
    draws = rng.multinomial(table.num_games, flat / flat.sum(), size=num_rounds)
    return np.stack([fit_ratings(table, draw.reshape(table.counts.shape), anchor) for draw in draws])


def _pair_matrices(table: GameTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(wins[i, j] of i over j, ties[i, j], games[i, j]) between every two models."""
    num_models = len(table.models)
    wins, ties, games = (np.zeros((num_models, num_models)) for _ in range(3))
    for (i, j), (wins_i, wins_j, num_ties) in zip(table.pairs, table.counts):
        wins[i, j], wins[j, i] = wins_i, wins_j
        ties[i, j] = ties[j, i] = num_ties
        games[i, j] = games[j, i] = wins_i + wins_j + num_ties
    return wins, ties, games


def _share(part: np.ndarray, games: np.ndarray) -> np.ndarray:
    return np.where(games > 0, part / np.where(games > 0, games, 1), np.nan)


def win_rate_matrix(table: GameTable) -> np.ndarray:
    """rates[i, j] = wins of i over j / games between them (ties in the denominator); NaN where none were played."""
    wins, _, games = _pair_matrices(table)
    return _share(wins, games)


def tie_rate_matrix(table: GameTable) -> np.ndarray:
    """ties between i and j / games between them; NaN where none were played."""
    _, ties, games = _pair_matrices(table)
    return _share(ties, games)


def unbeaten_or_winless(table: GameTable) -> list[str]:
    """Models that won every game or lost every game they played: their MLE is unbounded (the fit stops at a
    large finite value), so the report flags them instead of presenting the number as an estimate."""
    num_models = len(table.models)
    scores, games = np.zeros(num_models), np.zeros(num_models)
    for (i, j), (wins_i, wins_j, ties) in zip(table.pairs, table.counts):
        scores[i] += wins_i + ties / 2
        scores[j] += wins_j + ties / 2
        games[i] += wins_i + wins_j + ties
        games[j] += wins_i + wins_j + ties
    return [table.models[k] for k in range(num_models) if games[k] > 0 and scores[k] in (0, games[k])]


def rate(table: GameTable, num_rounds: int, seed: int, anchor: float = 1000.0) -> dict:
    """The leaderboard: rating, 95% bootstrap interval and games per model, best first, plus the win-rate matrix."""
    ratings = fit_ratings(table, anchor=anchor)
    samples = bootstrap_ratings(table, num_rounds, seed, anchor) if num_rounds > 0 else ratings[None, :]
    lower, upper = np.percentile(samples, [2.5, 97.5], axis=0)
    games = np.zeros(len(table.models))
    for (i, j), row in zip(table.pairs, table.counts):
        games[[i, j]] += row.sum()
    order = np.argsort(-ratings)
    board = [{"model": table.models[k], "rating": float(ratings[k]), "ci_low": float(lower[k]),
              "ci_high": float(upper[k]), "num_games": int(games[k])} for k in order]
    return {"leaderboard": board, "models": table.models, "win_rate": _nan_to_none(win_rate_matrix(table)),
            "tie_rate": _nan_to_none(tie_rate_matrix(table)),
            "num_games": table.num_games, "bootstrap_rounds": num_rounds, "anchor": anchor,
            "unbounded": unbeaten_or_winless(table)}


def _nan_to_none(matrix: np.ndarray) -> list[list]:
    """JSON has no NaN: an unplayed pair is null."""
    return [[None if np.isnan(value) else float(value) for value in row] for row in matrix]
