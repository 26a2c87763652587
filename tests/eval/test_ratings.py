"""Bradley-Terry ratings: recovery of known ratings from simulated games, and an independent reference fit."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import minimize

from med42_train.eval.ratings import GameTable, fit_ratings, rate, win_rate_matrix


def _simulate(true: dict[str, float], games_per_pair: int, tie_rate: float, seed: int) -> list[tuple]:
    """Games whose expected score (win 1, tie 1/2) is exactly the Elo probability, ties included: a tie with
    probability tie_rate, else a win for the first with the probability that keeps E[score] = p."""
    rng = np.random.default_rng(seed)
    names, games = list(true), []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            p = 1 / (1 + 10 ** ((true[b] - true[a]) / 400))
            p_win_given_no_tie = (p - tie_rate / 2) / (1 - tie_rate)
            for _ in range(games_per_pair):
                if rng.random() < tie_rate:
                    games.append((a, b, "tie"))
                else:
                    games.append((a, b, "a" if rng.random() < p_win_given_no_tie else "b"))
    return games


def test_recovers_known_ratings_within_bootstrap_intervals():
    true = {"m1": 1150.0, "m2": 1050.0, "m3": 950.0, "m4": 850.0}  # mean 1000, the anchor
    table = GameTable.from_games(list(true), _simulate(true, games_per_pair=600, tie_rate=0.2, seed=0))
    result = rate(table, num_rounds=200, seed=1)
    assert [row["model"] for row in result["leaderboard"]] == ["m1", "m2", "m3", "m4"]
    for row in result["leaderboard"]:
        assert row["ci_low"] <= true[row["model"]] <= row["ci_high"], row
        assert row["ci_high"] - row["ci_low"] < 80  # 1800 games per model: intervals of a few tens of points
    assert result["unbounded"] == []


def _reference_ratings(models, games):
    """Direct maximisation of the BT likelihood with ties as half a win each way (scipy, not the code under test)."""
    index = {m: k for k, m in enumerate(models)}

    def negative_log_likelihood(theta):
        total = 0.0
        for a, b, outcome in games:
            p = 1 / (1 + 10 ** ((theta[index[b]] - theta[index[a]]) / 400))
            score = {"a": 1.0, "b": 0.0, "tie": 0.5}[outcome]
            total -= score * np.log(p) + (1 - score) * np.log(1 - p)
        return total

    theta = minimize(negative_log_likelihood, np.zeros(len(models)), method="BFGS", options={"gtol": 1e-9}).x
    return theta - theta.mean() + 1000


def test_matches_reference_fit_on_a_fixed_table():
    models = ["x", "y", "z"]
    games = ([("x", "y", "a")] * 7 + [("x", "y", "b")] * 3 + [("x", "y", "tie")] * 2
             + [("z", "y", "a")] * 4 + [("y", "z", "a")] * 5 + [("y", "z", "tie")] * 3
             + [("x", "z", "a")] * 6 + [("z", "x", "a")] * 2 + [("x", "z", "tie")])
    ours = fit_ratings(GameTable.from_games(models, games))
    np.testing.assert_allclose(ours, _reference_ratings(models, games), atol=0.05)
    assert ours.mean() == pytest.approx(1000)


def test_win_rate_matrix_counts_ties_in_the_denominator():
    games = [("x", "y", "a")] * 3 + [("y", "x", "a")] + [("x", "y", "tie")] * 2
    rates = win_rate_matrix(GameTable.from_games(["x", "y", "z"], games))
    assert rates[0, 1] == pytest.approx(3 / 6) and rates[1, 0] == pytest.approx(1 / 6)
    assert np.isnan(rates[0, 2])  # never played


def test_unbeaten_model_is_flagged_and_bad_games_refused():
    table = GameTable.from_games(["x", "y"], [("x", "y", "a")] * 4)
    assert set(rate(table, num_rounds=0, seed=0)["unbounded"]) == {"x", "y"}
    with pytest.raises(ValueError, match="bad game"):
        GameTable.from_games(["x", "y"], [("x", "q", "a")])
