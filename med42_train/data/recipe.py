"""Recipes (data_recipes/*.yaml): which sources, in which upstream format, how many samples each, how to clean.

A recipe is YAML whose sources are a mapping keyed by source name (order = recipe order), so that Hydra-style
overrides reach any key: `sft.medqa.samples=20000`, a new source `sft.my_src={format:alpaca,path:/x.json}`, or
`~sft.medqa` to drop one. `load_recipe` applies the overrides with OmegaConf, then validates every key; a
mistake raises ConfigError naming the recipe file, the key and the fix. data_recipes/README.md documents the
schema.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from omegaconf import DictConfig, OmegaConf

from med42_train.config import ConfigError
from med42_train.data.formats import OPTION_CHOICES, PREFERENCE_FORMATS, SFT_FORMATS

POLICIES = ("fail", "skip")
CATEGORIES = ("medical", "general")
PHI_POLICIES = ("report", "mask", "drop")
TOP_KEYS = ("name", "seed", "on_error", "sft", "preference", "clean")
SOURCE_KEYS = ("category", "format", "path", "hub", "samples", "tokens", "on_error", "id_field", "format_options",
               "iteration")
HUB_KEYS = ("id", "split", "config", "format")
BENCHMARK_KEYS = ("path", "hub", "format", "format_options")


@dataclass(frozen=True)
class HubLocation:
    """A dataset on the Hugging Face hub, read with datasets.load_dataset(id, config, split=split, streaming=True).

    `format` is the layout of the hub rows when it differs from the local file's (e.g. MMLU's original CSV
    locally, cais/mmlu rows on the hub); None means the same as the source's format.
    """

    id: str
    split: str = "train"
    config: Optional[str] = None
    format: Optional[str] = None


@dataclass(frozen=True, kw_only=True)  # keywords only: a positional call cannot silently swap two fields
class Source:
    name: str
    kind: str  # 'sft' | 'preference'
    category: str = "medical"  # medical | general
    format: str  # a key of SFT_FORMATS or PREFERENCE_FORMATS (the layout of the local file)
    path: Optional[Path] = None  # local copy; read when it exists, else the hub location
    hub: Optional[HubLocation] = None
    samples: Optional[int] = None  # target records; more than available up-samples; None (and no tokens) keeps all
    tokens: Optional[int] = None  # target supervised tokens instead of records
    on_error: str = "fail"  # bad records: 'fail' raises SourceError, 'skip' drops and counts them
    id_field: Optional[str] = None  # field whose duplicate values are bad input (duplicate_id)
    format_options: dict = field(default_factory=dict)  # keyword arguments of the format adapter
    iteration: int = 0  # DPO iteration a preference source feeds (1..); 0 for SFT sources


@dataclass(frozen=True)
class Benchmark:
    """An evaluation set the training data is decontaminated against."""

    name: str
    path: Optional[Path]
    hub: Optional[HubLocation]
    format: str
    format_options: dict = field(default_factory=dict)

    def as_source(self) -> Source:
        """A Source for reading the benchmark's items with sources.iter_examples (bad items are skipped)."""
        return Source(name=f"benchmark:{self.name}", kind="sft", format=self.format, path=self.path, hub=self.hub,
                      on_error="skip", format_options=self.format_options)


@dataclass(frozen=True)
class NearDedupSpec:
    enabled: bool = True
    threshold: float = 0.85  # estimated Jaccard similarity of word shingles above which two samples are one
    num_perm: int = 128
    shingle_words: int = 5


@dataclass(frozen=True)
class DecontamSpec:
    ngram_words: int = 13  # a shared 13-word n-gram marks contamination (the GPT-3 / Med42-v1 convention)
    benchmarks: tuple[Benchmark, ...] = ()


@dataclass(frozen=True)
class CleanSpec:
    exact_dedup: bool = True
    near_dedup: NearDedupSpec = NearDedupSpec()
    decontamination: DecontamSpec = DecontamSpec()
    phi_policy: str = "report"  # report | mask | drop


@dataclass(frozen=True)
class Recipe:
    name: str
    seed: int
    sft: tuple[Source, ...]
    preference: tuple[Source, ...]
    clean: CleanSpec
    path: Path
    overrides: tuple[str, ...] = ()

    @property
    def sources(self) -> tuple[Source, ...]:
        return self.sft + self.preference


def load_recipe(path: Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read a recipe file, apply Hydra-style dotlist overrides, validate, and resolve paths."""
    path = Path(path)
    raw = _apply_overrides(OmegaConf.load(path), overrides, path)
    check = _Checker(path)
    check.keys(raw, TOP_KEYS, "")
    on_error = check.choice(raw.get("on_error", "fail"), POLICIES, "on_error")
    sections = {kind: check.mapping(raw.get(kind), kind) for kind in ("sft", "preference")}
    return Recipe(
        name=str(raw.get("name", path.stem)),
        seed=check.integer(raw.get("seed", 0), "seed", minimum=0),
        sft=tuple(_source(name, entry, "sft", on_error, check) for name, entry in sections["sft"].items()),
        preference=tuple(_source(name, entry, "preference", on_error, check)
                         for name, entry in sections["preference"].items()),
        clean=_clean(check.mapping(raw.get("clean"), "clean"), check),
        path=path,
        overrides=tuple(overrides),
    )


def _apply_overrides(cfg: DictConfig, overrides: Sequence[str], path: Path) -> dict[str, Any]:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        parsed = OverridesParser.create().parse_overrides(list(overrides))
    except HydraException as err:
        raise ConfigError(f"recipe {path}: cannot parse override: {err}. Use key=value, e.g. "
                          f"sft.medqa.samples=20000 or sft.my_src={{format:alpaca,path:/data/x.json}}") from None
    for override in parsed:
        key = override.key_or_group
        if override.is_delete():
            parent_key, _, leaf = key.rpartition(".")
            parent = OmegaConf.select(cfg, parent_key) if parent_key else cfg
            if not isinstance(parent, DictConfig) or leaf not in parent:
                raise ConfigError(f"recipe {path}: override '~{key}' deletes a key the recipe does not have")
            del parent[leaf]
        else:  # a new key needs no '+': adding a source from the command line is the point
            OmegaConf.update(cfg, key, override.value(), merge=True, force_add=True)
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def _source(name: str, entry: Any, kind: str, default_policy: str, check: "_Checker") -> Source:
    where = f"{kind}.{name}"
    entry = check.mapping(entry, where)
    check.keys(entry, SOURCE_KEYS, where)
    formats = SFT_FORMATS if kind == "sft" else PREFERENCE_FORMATS
    fmt = check.choice(entry.get("format"), tuple(formats), f"{where}.format")
    hub = _hub(entry.get("hub"), formats, f"{where}.hub", check)
    local = check.path(entry.get("path"), f"{where}.path")
    if local is None and hub is None:
        raise check.error(f"{where}", "has neither 'path' nor 'hub'", "give a local path or a hub location")
    samples = check.integer(entry.get("samples"), f"{where}.samples", minimum=1, optional=True)
    tokens = check.integer(entry.get("tokens"), f"{where}.tokens", minimum=1, optional=True)
    if samples is not None and tokens is not None:
        raise check.error(f"{where}", "sets both 'samples' and 'tokens'", "keep one target (or neither = keep all)")
    if kind == "sft" and entry.get("iteration") is not None:
        raise check.error(f"{where}.iteration", "is set on an SFT source", "only preference sources have iterations")
    return Source(
        name=name, kind=kind, format=fmt, path=local, hub=hub,
        category=check.choice(entry.get("category", "medical"), CATEGORIES, f"{where}.category"),
        samples=samples, tokens=tokens,
        on_error=check.choice(entry.get("on_error", default_policy), POLICIES, f"{where}.on_error"),
        id_field=check.optional_str(entry.get("id_field"), f"{where}.id_field"),
        format_options=check.format_options(entry.get("format_options"), fmt, formats, where),
        iteration=0 if kind == "sft" else check.integer(entry.get("iteration", 1), f"{where}.iteration", minimum=1),
    )


def _hub(value: Any, formats: dict, where: str, check: "_Checker") -> Optional[HubLocation]:
    if value is None:
        return None
    if isinstance(value, str):  # shorthand: `hub: org/name` = its train split
        value = {"id": value}
    value = check.mapping(value, where)
    check.keys(value, HUB_KEYS, where)
    hub_format = value.get("format")
    if hub_format is not None:
        check.choice(hub_format, tuple(formats), f"{where}.format")
    dataset_id = check.optional_str(value.get("id"), f"{where}.id")
    if not dataset_id:
        raise check.error(f"{where}.id", "is missing", "set the hub dataset id, e.g. openlifescienceai/medmcqa")
    return HubLocation(id=dataset_id, split=str(value.get("split") or "train"),
                       config=check.optional_str(value.get("config"), f"{where}.config"), format=hub_format)


def _clean(raw: dict[str, Any], check: "_Checker") -> CleanSpec:
    check.keys(raw, ("exact_dedup", "near_dedup", "decontamination", "phi"), "clean")
    near = check.mapping(raw.get("near_dedup"), "clean.near_dedup")
    check.keys(near, ("enabled", "threshold", "num_perm", "shingle_words"), "clean.near_dedup")
    threshold = near.get("threshold", NearDedupSpec.threshold)
    if not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise check.error("clean.near_dedup.threshold", f"={threshold!r} is not in (0, 1]", "use e.g. 0.85")
    decontam = check.mapping(raw.get("decontamination"), "clean.decontamination")
    check.keys(decontam, ("ngram_words", "benchmarks"), "clean.decontamination")
    benchmarks = check.mapping(decontam.get("benchmarks"), "clean.decontamination.benchmarks")
    phi = check.mapping(raw.get("phi"), "clean.phi")
    check.keys(phi, ("policy",), "clean.phi")
    return CleanSpec(
        exact_dedup=check.boolean(raw.get("exact_dedup", True), "clean.exact_dedup"),
        near_dedup=NearDedupSpec(
            enabled=check.boolean(near.get("enabled", True), "clean.near_dedup.enabled"),
            threshold=float(threshold),
            num_perm=check.integer(near.get("num_perm", NearDedupSpec.num_perm), "clean.near_dedup.num_perm", 16),
            shingle_words=check.integer(near.get("shingle_words", NearDedupSpec.shingle_words),
                                        "clean.near_dedup.shingle_words", 1)),
        decontamination=DecontamSpec(
            ngram_words=check.integer(decontam.get("ngram_words", DecontamSpec.ngram_words),
                                      "clean.decontamination.ngram_words", 1),
            benchmarks=tuple(_benchmark(name, entry, check) for name, entry in benchmarks.items())),
        phi_policy=check.choice(phi.get("policy", "report"), PHI_POLICIES, "clean.phi.policy"),
    )


def _benchmark(name: str, entry: Any, check: "_Checker") -> Benchmark:
    where = f"clean.decontamination.benchmarks.{name}"
    entry = check.mapping(entry, where)
    check.keys(entry, BENCHMARK_KEYS, where)
    fmt = check.choice(entry.get("format"), tuple(SFT_FORMATS), f"{where}.format")
    hub = _hub(entry.get("hub"), SFT_FORMATS, f"{where}.hub", check)
    local = check.path(entry.get("path"), f"{where}.path")
    if local is None and hub is None:
        raise check.error(where, "has neither 'path' nor 'hub'", "give a local path or a hub location")
    return Benchmark(name=name, path=local, hub=hub, format=fmt,
                     format_options=check.format_options(entry.get("format_options"), fmt, SFT_FORMATS, where))


class _Checker:
    """Value checks whose errors name the recipe file and the full key."""

    def __init__(self, recipe_file: Path):
        self.recipe_file = recipe_file

    def error(self, key: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"recipe {self.recipe_file}: '{key}' {problem}. Fix: {fix} "
                           f"(schema: data_recipes/README.md).")

    def keys(self, mapping: dict, allowed: Sequence[str], where: str) -> None:
        for key in mapping:
            if key not in allowed:
                full = f"{where}.{key}" if where else key
                raise self.error(full, "is not a recipe key", f"use one of {list(allowed)}")

    def mapping(self, value: Any, key: str) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.error(key, f"is a {type(value).__name__}, not a mapping",
                             "write it as `name: {...}` entries (sources are keyed by name)")
        return value

    def choice(self, value: Any, allowed: Sequence[Any], key: str) -> Any:
        if value not in allowed:
            raise self.error(key, f"={value!r} is not allowed", f"use one of {list(allowed)}")
        return value

    def integer(self, value: Any, key: str, minimum: int = 0, optional: bool = False) -> Any:
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self.error(key, f"={value!r} is not an integer >= {minimum}", "write a whole number like 10_000")
        return value

    def boolean(self, value: Any, key: str) -> bool:
        if not isinstance(value, bool):
            raise self.error(key, f"={value!r} is not true/false", "write true or false")
        return value

    def optional_str(self, value: Any, key: str) -> Optional[str]:
        if value is not None and not isinstance(value, str):
            raise self.error(key, f"={value!r} is not a string", "quote it")
        return value

    def path(self, value: Any, key: str) -> Optional[Path]:
        """A path relative to the recipe file's folder (data_recipes/ for the shipped recipes)."""
        if value is None:
            return None
        local = Path(self.optional_str(value, key)).expanduser()
        return local if local.is_absolute() else (self.recipe_file.parent / local).resolve()

    def format_options(self, value: Any, fmt: str, formats: dict, where: str) -> dict:
        options = self.mapping(value, f"{where}.format_options")
        accepted = list(inspect.signature(formats[fmt]).parameters)[1:]  # the first parameter is the record
        for name, option in options.items():
            key = f"{where}.format_options.{name}"
            if name not in accepted:
                raise self.error(key, f"is not an option of format '{fmt}'", f"use one of {accepted or 'none'}")
            if (fmt, name) in OPTION_CHOICES:
                self.choice(option, OPTION_CHOICES[(fmt, name)], key)
        return dict(options)

