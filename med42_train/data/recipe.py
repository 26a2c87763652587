"""Recipes (data_recipes/*.yaml): which sources, in which upstream format, how many samples each."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import yaml

from med42_train.config import RECIPE_DIR, ConfigError
from med42_train.data.formats import PREFERENCE_FORMATS, SFT_FORMATS


@dataclass(frozen=True)
class Source:
    name: str
    path: Path
    format: str
    category: str = "medical"
    samples: Optional[int] = None  # None keeps every record; more than available up-samples by repetition


@dataclass(frozen=True)
class Recipe:
    name: str
    seed: int
    sft: tuple[Source, ...]
    preference: tuple[Source, ...]
    path: Path


def load_recipe(path: Path) -> Recipe:
    raw = yaml.safe_load(Path(path).read_text())
    sft = tuple(_source(entry, SFT_FORMATS, path) for entry in raw.get("sft") or [])
    preference = tuple(_source(entry, PREFERENCE_FORMATS, path) for entry in raw.get("preference") or [])
    return Recipe(name=raw.get("name", Path(path).stem), seed=int(raw.get("seed", 0)), sft=sft,
                  preference=preference, path=Path(path))


def _source(entry: dict[str, Any], formats: dict, recipe_file: Path) -> Source:
    name = entry.get("name", "?")
    if entry.get("format") not in formats:
        raise ConfigError(f"recipe {recipe_file}: source '{name}' has format {entry.get('format')!r}; "
                          f"known formats: {sorted(formats)}")
    path = Path(entry["path"])
    return Source(name=name, path=path if path.is_absolute() else RECIPE_DIR / path, format=entry["format"],
                  category=entry.get("category", "medical"), samples=entry.get("samples"))


def read_records(source: Source) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line or index, record) from a JSON array or a JSON-lines file; errors name the file and line."""
    text = source.path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        yield from enumerate(json.loads(text))
        return
    for line_number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield line_number, json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{source.path}:{line_number}: malformed JSON ({err.msg})") from None


def select(items: list, target: Optional[int], seed: int) -> list:
    """Down-sample without replacement, or up-sample by whole repetitions plus a seeded remainder."""
    if target is None or target == len(items):
        return items
    rng = random.Random(seed)
    repeats, remainder = divmod(target, len(items))
    return items * repeats + rng.sample(items, remainder)
