"""Recipes: the shipped ones load, overrides change and add sources, bad values fail naming the key."""

from __future__ import annotations

import json
import re

import pytest

from med42_train.config import RECIPE_DIR, ConfigError, load_config, stage_config_hash
from med42_train.data.recipe import load_recipe
from med42_train.data.sources import Example, iter_examples

MED42_V2 = RECIPE_DIR / "med42_v2_sft.yaml"
PAPER_SFT_SOURCES = {  # MED42_V2_RECIPE.md, "Data mixture"
    "medmcqa": 180462, "medical_flashcards": 30106, "stackexchange": 64246, "medqa": 11290, "cord19": 17721,
    "pubmedqa": 499, "headqa": 2657, "mediqa": 1950, "sciq": 11679, "pubmed_causal": 2169, "opengpt": 66026,
    "medquad": 14553, "mmlu_medical": 244, "niv2": 11447, "pubhealth": 9804, "medical_instruction_120k": 120000,
    "aci_bench": 87, "mts_dialog": 2602, "slimorca_t0": 109235, "slimorca_flan": 109169, "slimorca_cot": 74172,
    "ultrachat": 50953,
}
GENERAL = {"slimorca_t0", "slimorca_flan", "slimorca_cot", "ultrachat"}


def test_med42_v2_recipe_has_the_papers_22_sources_with_their_targets():
    recipe = load_recipe(MED42_V2)
    assert {s.name: s.samples for s in recipe.sft} == PAPER_SFT_SOURCES
    assert {s.name for s in recipe.sft if s.category == "general"} == GENERAL
    assert all(s.path is not None and (s.hub or s.path) for s in recipe.sft)
    lines = [line for line in MED42_V2.read_text().splitlines() if re.match(r"\s+samples: \d", line)]
    assert len(lines) == 22 and all("# paper:" in line for line in lines)  # every paper number says so


def test_med42_v2_recipe_has_three_dpo_iterations_and_every_benchmark():
    recipe = load_recipe(MED42_V2)
    by_iteration = {}
    for source in recipe.preference:
        by_iteration.setdefault(source.iteration, []).append(source.name)
    assert by_iteration == {1: ["ultrafeedback_binarized", "snorkel_stage1"], 2: ["snorkel_stage2"],
                            3: ["snorkel_stage3"]}
    assert [s.hub.split for s in recipe.preference[1:]] == [f"train_iteration_{i}" for i in (1, 2, 3)]
    benchmarks = {b.name for b in recipe.clean.decontamination.benchmarks}
    mmlu = {f"mmlu_{s}" for s in ("anatomy", "clinical_knowledge", "college_biology", "college_medicine",
                                  "medical_genetics", "professional_medicine")}
    assert benchmarks == {"medqa_test", "medmcqa_dev", "pubmedqa_test", "mmlu_pro_health", "usmle"} | mmlu
    assert recipe.clean.decontamination.ngram_words == 13 and recipe.clean.phi_policy == "report"


def test_demo_recipe_reads_its_files_and_its_benchmark():
    recipe = load_recipe(RECIPE_DIR / "demo.yaml")
    assert [s.name for s in recipe.sft] == ["medical_flashcards", "medqa", "dialogues"]
    assert all(s.path.is_file() and s.on_error == "fail" for s in recipe.sources)
    (benchmark,) = recipe.clean.decontamination.benchmarks
    items = list(iter_examples(benchmark.as_source()))
    assert len(items) == 100 and all(isinstance(i, Example) for i in items)


def test_overrides_change_a_target_add_a_source_and_drop_one(tmp_path):
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps([{"instruction": "q", "input": "", "output": "a"}]))
    recipe = load_recipe(MED42_V2, ["sft.medqa.samples=20000", f"sft.my_src={{format:alpaca,path:{extra}}}",
                                    "~sft.cord19", "sft.medmcqa.format_options.cop_base=1",
                                    "preference.snorkel_stage3.iteration=4", "clean.phi.policy=mask"])
    sources = {s.name: s for s in recipe.sft}
    assert sources["medqa"].samples == 20000 and "cord19" not in sources
    assert list(sources)[-1] == "my_src" and sources["my_src"].path == extra and sources["my_src"].samples is None
    assert sources["medmcqa"].format_options == {"cop_base": 1}
    assert recipe.preference[-1].iteration == 4 and recipe.clean.phi_policy == "mask"
    assert recipe.overrides[0] == "sft.medqa.samples=20000"
    assert [type(i) for i in iter_examples(sources["my_src"])] == [Example]


@pytest.mark.parametrize("override, key, fix", [
    ("sft.medqa.format=medqa_v9", "sft.medqa.format", "medmcqa"),
    ("sft.medqa.samples=-5", "sft.medqa.samples", "whole number"),
    ("sft.medqa.samples=lots", "sft.medqa.samples", "whole number"),
    ("sft.medqa.tokens=1000", "sft.medqa", "keep one target"),
    ("sft.medqa.sampels=10", "sft.medqa.sampels", "samples"),
    ("sft.medqa.on_error=ignore", "sft.medqa.on_error", "skip"),
    ("sft.medqa.category=surgery", "sft.medqa.category", "general"),
    ("sft.medmcqa.format_options.cop_base=2", "sft.medmcqa.format_options.cop_base", "[0, 1]"),
    ("sft.medmcqa.format_options.base=1", "sft.medmcqa.format_options.base", "cop_base"),
    ("sft.medqa.iteration=2", "sft.medqa.iteration", "preference"),
    ("sft.new={format:alpaca}", "sft.new", "hub location"),
    ("preference.snorkel_stage2.format=alpaca", "preference.snorkel_stage2.format", "ultrafeedback_hub"),
    ("clean.phi.policy=erase", "clean.phi.policy", "mask"),
    ("clean.near_dedup.threshold=1.5", "clean.near_dedup.threshold", "0.85"),
    ("clean.decontamination.benchmarks.x={path:a.jsonl}", "clean.decontamination.benchmarks.x.format", "medqa"),
    ("seed=-1", "seed", "whole number"),
])
def test_bad_recipe_values_fail_naming_the_key_and_the_fix(override, key, fix):
    with pytest.raises(ConfigError) as err:
        load_recipe(MED42_V2, [override])
    message = str(err.value)
    assert f"'{key}'" in message and fix in message and str(MED42_V2) in message


def test_unparsable_and_dangling_overrides_are_config_errors():
    with pytest.raises(ConfigError, match="cannot parse override"):
        load_recipe(MED42_V2, ["sft.medqa.samples=[1,"])
    with pytest.raises(ConfigError, match="deletes a key the recipe does not have"):
        load_recipe(MED42_V2, ["~sft.no_such_source"])


def test_paths_are_relative_to_the_recipe_file(tmp_path):
    (tmp_path / "data").mkdir()
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text("sft:\n  a: {format: alpaca, path: data/a.json}\n")
    assert load_recipe(recipe_file).sft[0].path == tmp_path / "data" / "a.json"


def test_recipe_overrides_reach_the_data_stage_config_hash(tmp_path):
    base = load_config([f"run_dir={tmp_path}"])
    changed = load_config([f"run_dir={tmp_path}", 'data.recipe_overrides=["sft.medqa.samples=5"]'])
    assert list(changed.data.recipe_overrides) == ["sft.medqa.samples=5"]
    assert stage_config_hash(base, "data") != stage_config_hash(changed, "data")
    assert stage_config_hash(base, "sft") == stage_config_hash(changed, "sft")
    recipe = load_recipe(RECIPE_DIR / "demo.yaml", changed.data.recipe_overrides)
    assert recipe.sft[1].samples == 5
