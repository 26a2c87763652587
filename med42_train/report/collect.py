"""What the report shows, read from a run directory defensively: a stage that is missing, incomplete or written
in an older layout (one DPO folder instead of iter_<k>/) yields a note on the page, never a crash."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


from med42_train.runtime.rundir import COMPLETE, MANIFEST, STARTED

UPSTREAM_STAGES = ("data", "sft", "dpo", "eval", "elo")


@dataclass
class StageInfo:
    name: str
    state: str  # complete | incomplete | absent
    manifest: Optional[dict] = None
    manifest_link: Optional[str] = None  # relative to the report folder
    wall_s: Optional[float] = None


@dataclass
class Curve:
    """One training run's log history (SFT, or one DPO iteration)."""

    title: str
    history: list[dict] = field(default_factory=list)


def read_json(path: Path) -> Optional[Any]:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def stage_info(run_dir: Path, name: str) -> StageInfo:
    directory = Path(run_dir) / name
    if not directory.is_dir():
        return StageInfo(name, "absent")
    manifest = read_json(directory / MANIFEST)
    state = "complete" if (directory / COMPLETE).is_file() and manifest is not None else "incomplete"
    wall_s = (manifest or {}).get("timings", {}).get("wall_s")
    link = f"../{name}/{MANIFEST}" if manifest is not None else None
    return StageInfo(name, state, manifest if state == "complete" else None, link, wall_s)


def manifest_links(run_dir: Path) -> list[tuple[str, str]]:
    """(label, relative link) for every manifest in the run: each stage's and each DPO iteration's."""
    links = [(name, f"../{name}/{MANIFEST}") for name in UPSTREAM_STAGES if (Path(run_dir) / name / MANIFEST).is_file()]
    for path in sorted((Path(run_dir) / "dpo").glob(f"iter_*/{MANIFEST}")):
        links.append((f"dpo {path.parent.name}", f"../dpo/{path.parent.name}/{MANIFEST}"))
    return links


def training_curves(run_dir: Path, stages: dict[str, StageInfo]) -> list[Curve]:
    """SFT's log history, then one per DPO iteration (outputs.iterations), or DPO's own in the one-folder layout."""
    curves = []
    if stages["sft"].state == "complete":
        curves.append(Curve("SFT", read_json(Path(run_dir) / "sft" / "log_history.json") or []))
    dpo = stages["dpo"].manifest
    if dpo is not None:
        iterations = dpo.get("outputs", {}).get("iterations") or []
        for it in iterations:
            folder = Path(it.get("dir") or Path(run_dir) / "dpo" / f"iter_{it.get('iteration')}")
            curves.append(Curve(f"DPO iteration {it.get('iteration')}", read_json(folder / "log_history.json") or []))
        if not iterations:
            curves.append(Curve("DPO", read_json(Path(run_dir) / "dpo" / "log_history.json") or []))
    return curves


def data_mixture(manifest: Optional[dict]) -> dict[str, list[dict]]:
    """{'sft': rows, 'preference': rows}: per source what was read, dropped (by reason), kept and selected."""
    if manifest is None:
        return {}
    figures = manifest.get("figures", {})
    tables = {}
    for kind in ("sft", "preference"):
        sources = figures.get(f"{kind}_sources") or {}
        tables[kind] = [{"source": name, **{k: info.get(k) for k in ("read", "kept", "selected", "num_tokens",
                                                                     "share", "sampling_factor")},
                         "dropped": info.get("dropped_by_reason") or {}} for name, info in sources.items()]
    return tables


def removals(mixture: dict[str, list[dict]]) -> dict[str, int]:
    """Records cleaning removed, by reason, over every source."""
    totals: dict[str, int] = {}
    for rows in mixture.values():
        for row in rows:
            for reason, count in row["dropped"].items():
                totals[reason] = totals.get(reason, 0) + int(count)
    return dict(sorted(totals.items(), key=lambda item: -item[1]))


def mcqa_scores(run_dir: Path) -> Optional[dict]:
    """eval/summary.json as {model: {task: {metric: value}}}; anything else is shown flattened, not guessed at."""
    summary = read_json(Path(run_dir) / "eval" / "summary.json")
    if not isinstance(summary, dict):
        return None
    return {str(model): tasks for model, tasks in summary.items() if isinstance(tasks, dict)}


def eval_files(run_dir: Path) -> list[tuple[str, str]]:
    """(name, relative link) of the eval stage's top-level tables (summary, comparison, any paper comparison)."""
    folder = Path(run_dir) / "eval"
    return [(p.name, f"../eval/{p.name}") for p in sorted(folder.glob("*")) if p.suffix in (".json", ".md", ".csv")
            and p.name not in (MANIFEST, STARTED)]  # the stage's own bookkeeping is linked elsewhere or not at all


def paper_figures() -> dict:
    """The card's MCQA table and Elo ratings, from the one copy the eval stage compares with (eval/paper_results.yaml)."""
    from med42_train.eval.compare import paper

    figures = paper()
    columns = list(dict.fromkeys(figures["columns"].values()))
    rows = {name: [row["scores"].get(column) for column in columns] for name, row in figures["models"].items()}
    return {"mcqa": {"columns": columns, "rows": rows}, "elo": figures["elo"]}
