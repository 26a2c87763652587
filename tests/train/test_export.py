"""Streamed export: bounded shards, bit-exact weights, validation, both unsharded and under FSDP2 (2 gloo ranks)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors import safe_open

from med42_train.runtime.rundir import sha256_tree
from med42_train.train.export import INDEX_NAME, ExportError, export_model
from tests.conftest import PROJECT_ROOT
from tests.train.export_worker import PROMPT, demo_tokenizer, model_that_stops


def _shard_tensors(export_dir) -> dict[str, dict[str, torch.Tensor]]:
    """{shard file: {name: tensor}} of an export."""
    shards = {}
    for path in sorted(export_dir.glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as handle:
            shards[path.name] = {name: handle.get_tensor(name) for name in handle.keys()}
    return shards


def _num_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _check_export(export_dir, report, reference: dict[str, torch.Tensor], max_shard_bytes: int, tied=()):
    shards = _shard_tensors(export_dir)
    assert len(shards) >= 3, "a small max_shard_size must split the model into several shards"
    for name, tensors in shards.items():
        assert _num_bytes(tensors.values()) <= max_shard_bytes, f"{name} exceeds the shard bound"
    index = json.loads((export_dir / INDEX_NAME).read_text())
    assert set(index["weight_map"].values()) == set(shards)
    exported = {name: t for tensors in shards.values() for name, t in tensors.items()}
    assert set(exported) == set(reference) - set(tied)
    for name, tensor in exported.items():
        assert tensor.dtype == reference[name].dtype and torch.equal(tensor, reference[name]), name
    # Rank 0 held at most one shard (the bound) at a time, a fraction of the model.
    assert report["peak_held_bytes"] <= max_shard_bytes < report["model_bytes"] / 2
    assert report["model_bytes"] == _num_bytes(exported.values())
    assert report["validated"] is True and report["sha256"] == sha256_tree(export_dir)
    assert report["stops_on"] == "<|eot_id|>" and report["num_shards"] == len(shards)


@pytest.mark.parametrize("tied", [False, True])
def test_single_process_export_streams_bounded_shards_with_identical_weights(tmp_path, tied):
    tokenizer = demo_tokenizer()
    model = model_that_stops(tokenizer, tie_word_embeddings=tied)
    reference = {name: t.clone() for name, t in model.state_dict().items()}
    max_shard_bytes = max(_num_bytes([t]) for t in reference.values()) + 1024
    report = export_model(model, tokenizer, tmp_path / "model", PROMPT, max_shard_bytes)
    _check_export(tmp_path / "model", report, reference, max_shard_bytes, tied=["lm_head.weight"] if tied else ())
    assert report["num_params"] == sum(t.numel() for t in reference.values())
    assert not (tmp_path / ".model.partial").exists()


def test_an_export_that_does_not_stop_is_refused_and_leaves_nothing(tmp_path):
    tokenizer = demo_tokenizer()
    model = model_that_stops(tokenizer)
    with torch.no_grad():
        model.model.embed_tokens.weight[:, 0] = 0.0  # undo the trick: a random model rambles on
    with pytest.raises(ExportError, match="did not stop"):
        export_model(model, tokenizer, tmp_path / "model", PROMPT, 1 << 20, max_new_tokens=8)
    assert not (tmp_path / "model").exists() and not (tmp_path / ".model.partial").exists()


def _run_export_worker(tmp_path, max_shard_bytes: int, *extra: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
                             "-m", "tests.train.export_worker", str(tmp_path), str(max_shard_bytes), *extra],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]


def test_fsdp2_export_on_two_ranks_streams_bounded_shards_with_identical_weights(tmp_path):
    max_shard_bytes = 80_000  # above the largest tensor (embedding / LM head, ~71 kB), a third of the model
    _run_export_worker(tmp_path, max_shard_bytes)
    reference = torch.load(tmp_path / "reference.pt")
    report = json.loads((tmp_path / "report.json").read_text())
    _check_export(tmp_path / "model", report, reference, max_shard_bytes)


def test_other_ranks_outwait_a_validation_longer_than_the_training_group_timeout(tmp_path):
    """Rank 0 validates for 9 s, the training group times out after 3 s: rank 1 waits on the export's own group
    (export.wait_timeout_s) instead, and both ranks finish with the export."""
    _run_export_worker(tmp_path, 80_000, "9")
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["validated"] is True and (tmp_path / "model" / INDEX_NAME).is_file()
