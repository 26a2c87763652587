"""Cache keys: a task's key depends on its own definition and data, the protocol, never on the other tasks."""

from __future__ import annotations

from med42_train.config import load_config
from med42_train.eval import cache
from med42_train.eval.checkpoints import RunModel
from med42_train.eval.task_defs import definition_hash

MODEL = RunModel("sft", "/models/sft", "ab" * 32, "sft")


def test_a_task_key_ignores_the_other_tasks_and_the_models(tmp_path):
    one = load_config([f"run_dir={tmp_path}", "eval.tasks=[med42_demo_mcqa_full]"])
    two = load_config([f"run_dir={tmp_path}", "eval.tasks=[med42_demo_mcqa_full,med42_demo_mcqa_letter]",
                       "eval.models=[base]", f"eval.cache_dir={tmp_path / 'elsewhere'}"])
    assert cache.protocol_hash(one) == cache.protocol_hash(two)
    assert cache.entry_dir(one, MODEL, "med42_demo_mcqa_full").name == \
        cache.entry_dir(two, MODEL, "med42_demo_mcqa_full").name


def test_the_protocol_and_the_data_file_change_the_key(tmp_path):
    base = load_config([f"run_dir={tmp_path}"])
    for override in ("eval.limit=3", "eval.system_prompt=Be brief.", "eval.apply_chat_template=false",
                     "model.dtype=bfloat16", "eval.batch_size=4"):
        assert cache.protocol_hash(load_config([f"run_dir={tmp_path}", override])) != cache.protocol_hash(base)
    data = tmp_path / "eval.jsonl"
    data.write_text('{"question": "q", "options": {"A": "a", "B": "b"}, "answer_idx": "A"}\n')
    local = definition_hash("med42_demo_mcqa_full", {"demo_mcqa": str(data)})
    assert local != definition_hash("med42_demo_mcqa_full", {})
    data.write_text('{"question": "q", "options": {"A": "a", "B": "b"}, "answer_idx": "B"}\n')
    assert definition_hash("med42_demo_mcqa_full", {"demo_mcqa": str(data)}) != local
    assert definition_hash("med42_demo_mcqa_full", {}) != definition_hash("med42_demo_mcqa_letter", {})


def test_a_model_without_a_content_hash_is_never_cached(tmp_path):
    cfg = load_config([f"run_dir={tmp_path}"])
    assert cache.entry_dir(cfg, RunModel("base", "meta-llama/Meta-Llama-3-8B-Instruct", None, "data"),
                           "med42_demo_mcqa_full") is None


def test_an_entry_round_trips_with_its_samples(tmp_path):
    result = {"results": {"t": {"acc,none": 0.5}}, "protocol": {"variant": "full"},
              "samples": {"t": [{"doc_id": 0, "arguments": [["ctx", "Liver"]]}]}}
    cache.store(tmp_path / "entry", result)
    assert cache.load(tmp_path / "entry") == result
    assert cache.load(tmp_path / "missing") is None
