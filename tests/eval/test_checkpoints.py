"""The run's models by label: base, SFT, every DPO iteration (new layout) or the single DPO export (old)."""

from __future__ import annotations

import json

import pytest

from med42_train.config import ConfigError, load_config
from med42_train.eval.checkpoints import check_model_labels, run_models


def _stage(run_dir, stage, outputs):
    folder = run_dir / stage
    folder.mkdir(parents=True)
    (folder / "manifest.json").write_text(json.dumps({"config_hash": "c", "inputs": {}, "outputs": outputs}))
    (folder / "COMPLETE").write_text("x\n")


def _model(run_dir, name):
    return {"path": str(run_dir / name), "sha256": f"sha-{name}", "validated": True}


@pytest.fixture
def run_dir(tmp_path):
    _stage(tmp_path, "data", {"base_model": _model(tmp_path, "data/base_model")})
    _stage(tmp_path, "sft", {"model": _model(tmp_path, "sft/model")})
    return tmp_path


def test_each_dpo_iteration_is_a_model_in_order(run_dir):
    iterations = [{"iteration": k, "dir": str(run_dir / f"dpo/iter_{k}"),
                   "model": _model(run_dir, f"dpo/iter_{k}/model")} for k in (1, 2, 3)]
    _stage(run_dir, "dpo", {"model": iterations[-1]["model"], "iterations": iterations})
    models, inputs = run_models(load_config([f"run_dir={run_dir}"]), ["base", "sft", "dpo"])
    assert [m.label for m in models] == ["base", "sft", "dpo_iter1", "dpo_iter2", "dpo_iter3"]
    assert models[3].path == str(run_dir / "dpo/iter_2/model") and models[3].sha256 == "sha-dpo/iter_2/model"
    assert set(inputs) == {"data", "sft", "dpo"}


def test_a_dpo_stage_without_iterations_gives_one_model(run_dir):
    _stage(run_dir, "dpo", {"model": _model(run_dir, "dpo/model")})
    models, _ = run_models(load_config([f"run_dir={run_dir}"]), ["dpo"])
    assert [(m.label, m.stage) for m in models] == [("dpo", "dpo")]


def test_a_local_folder_is_labelled_by_its_name_and_hashed(tmp_path):
    folder = tmp_path / "Llama3-Med42-8B"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (model,), inputs = run_models(load_config([f"run_dir={tmp_path / 'run'}"]), [str(folder)])
    assert (model.label, model.stage, inputs) == ("Llama3-Med42-8B", None, {})
    assert model.sha256 and len(model.sha256) == 64


def test_unknown_labels_and_duplicate_folder_names_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="teacher"):
        check_model_labels(["base", "teacher"])
    for parent in ("a", "b"):
        (tmp_path / parent / "sft").mkdir(parents=True)
    with pytest.raises(ConfigError, match="two models are labelled 'sft'"):
        run_models(load_config([f"run_dir={tmp_path / 'run'}"]), [str(tmp_path / "a/sft"), str(tmp_path / "b/sft")])
