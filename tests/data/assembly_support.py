"""Helpers for the data-stage tests: small recipes written into a temporary folder, a fixed tokenizer (so cache
keys do not follow the corpus), synthetic records."""

from __future__ import annotations

import json
import random
from pathlib import Path

import yaml

from med42_train.config import load_config
from med42_train.models.tokenizer import train_demo_tokenizer

VOCABULARY = ("patient fever cough dose tablet renal hepatic insulin glucose pressure chronic acute infection "
              "therapy nausea pain cardiac lung kidney liver blood test daily weekly treatment symptom diagnosis "
              "history allergy vaccine rash anemia sodium potassium").split()


def random_text(rng: random.Random, num_words: int) -> str:
    return " ".join(rng.choice(VOCABULARY) for _ in range(num_words))


def alpaca_records(num_records: int, seed: int, num_words: int = 40) -> list[dict]:
    """Distinct instruction/output records (random words: no two are near-duplicates)."""
    rng = random.Random(seed)
    return [{"instruction": f"Question {seed}-{i}: {random_text(rng, num_words // 2)}?", "input": "",
             "output": random_text(rng, num_words)} for i in range(num_records)]


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_recipe(folder: Path, sft: dict, preference: dict | None = None, clean: dict | None = None) -> Path:
    recipe = {"name": "test", "seed": 7, "on_error": "skip", "sft": sft, "preference": preference or {},
              "clean": clean or {}}
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def save_fixed_tokenizer(folder: Path) -> Path:
    """A demo-style tokenizer saved once: with model.name_or_path pointing here the tokenizer (and so the cache
    key) does not change when a source changes."""
    rng = random.Random(0)
    corpus = [random_text(rng, 30) for _ in range(200)] + ["Question? What is the dose, in mg."] * 20
    train_demo_tokenizer(corpus, bpe_vocab_size=600).save_pretrained(str(folder))
    return folder


def data_config(run_dir: Path, recipe: Path, tokenizer_dir: Path, *overrides: str):
    return load_config([f"run_dir={run_dir}", f"data.recipe={recipe}", f"model.name_or_path={tokenizer_dir}",
                        "logger.wandb=false", *overrides])
