"""W&B offline files from a real pipeline: one run per stage (rank 0 only), train/ metrics, no secrets."""

from __future__ import annotations

from tests.conftest import PLANTED_SECRET


def _runs(run_dir):
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def test_one_offline_run_per_stage_written_by_rank_zero_only(demo_run):
    runs = _runs(demo_run)
    # Two processes train SFT and each DPO iteration; a second rank logging would add runs beyond these.
    expected = ["demo-data", "demo-dpo-iter1", "demo-dpo-iter2", "demo-elo", "demo-eval", "demo-report", "demo-sft"]
    assert len(runs) == len(expected)
    names = []
    for run in runs:
        (record_file,) = run.glob("run-*.wandb")
        data = record_file.read_bytes()
        names.append(next(name for name in expected if name.encode() in data))
    assert sorted(names) == expected


def test_metrics_are_namespaced(demo_run):
    blobs = {run: next(run.glob("run-*.wandb")).read_bytes() for run in _runs(demo_run)}
    assert any(b"train/loss" in blob and b"demo-sft" in blob for blob in blobs.values())
    assert any(b"data/num_sft_samples" in blob for blob in blobs.values())
    assert any(b"eval/sft/med42_demo_mcqa_full/acc" in blob for blob in blobs.values())
    assert any(b"eval/table" in blob for blob in blobs.values())  # the model x task table


def test_the_api_key_is_never_written_anywhere_in_the_run_dir(demo_run):
    for path in demo_run.rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000:
            assert PLANTED_SECRET.encode() not in path.read_bytes(), path
