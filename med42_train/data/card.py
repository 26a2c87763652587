"""The data card (data_card.md, for a human) and the W&B table + artifact of the data stage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from med42_train.runtime.wandb_run import NullRun

TABLE_COLUMNS = ("kind", "source", "category", "read", "kept", "dropped", "selected", "sampling_factor",
                 "num_tokens", "num_supervised_tokens", "share", "cache")


def table_rows(sources: list[dict[str, Any]]) -> list[list[Any]]:
    """The per-source table, one list per source in TABLE_COLUMNS order (dropped as 'reason: n, ...')."""
    return [[_dropped(row) if column == "dropped" else row[column] for column in TABLE_COLUMNS] for row in sources]


def render_card(summary: dict[str, Any]) -> str:
    """Markdown: what went in, what was dropped and why, decontamination, PHI, recipe and hashes."""
    sections = [
        f"# Data card: {summary['recipe']['name']}\n",
        "Written by the `data` stage beside manifest.json (the machine-readable version of everything below).\n",
        "## Mixture\n", _mixture_table(summary["sources"]),
        "\n`read` = `kept` + dropped (every reason below); `selected` is after sampling to the recipe's target "
        "(`sampling_factor` = selected / kept); tokens, supervised tokens (assistant content + `<|eot_id|>`) and "
        "share are of the selected samples.\n",
        "## Dropped, and why\n", _dropped_section(summary["sources"]),
        "## Decontamination\n", _decontamination_section(summary["decontamination"]),
        "## PHI / PII screen\n", _phi_section(summary["phi"]),
        "## Recipe\n", _recipe_section(summary["recipe"]),
        "## Build\n", _build_section(summary),
    ]
    return "\n".join(sections) + "\n"


def _mixture_table(sources: list[dict[str, Any]]) -> str:
    header = ["kind", "source", "category", "read", "kept", "dropped", "selected", "factor", "tokens",
              "supervised tokens", "share", "cache"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in sources:
        cells = [row["kind"], row["source"], row["category"], f"{row['read']:,}", f"{row['kept']:,}",
                 f"{sum(row['dropped_by_reason'].values()):,}", f"{row['selected']:,}",
                 f"{row['sampling_factor']:.3g}", f"{row['num_tokens']:,}", f"{row['num_supervised_tokens']:,}",
                 f"{row['share']:.1%}", row["cache"]]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _dropped_section(sources: list[dict[str, Any]]) -> str:
    lines = [f"- **{row['source']}**: {_dropped(row)} (details: `{row['rejects_file']}`)"
             for row in sources if row["dropped_by_reason"]]
    return ("\n".join(lines) if lines else "Nothing was dropped.") + "\n"


def _decontamination_section(report: dict[str, Any]) -> str:
    if not report:
        return "No benchmarks configured: nothing was checked for contamination.\n"
    lines = ["| benchmark | items indexed | items matched | training samples removed |", "|---|---|---|---|"]
    lines += [f"| {name} | {entry['items_indexed']:,} | {entry['items_matched']:,} | {entry['samples_removed']:,} |"
              for name, entry in report.items()]
    examples = [f"- {name}: item `{e['item_id']}` in {e['position']}: \"{e['ngram']}\""
                for name, entry in report.items() for e in entry["examples"]]
    return "\n".join(lines) + "\n" + ("\nExamples (matched n-gram):\n" + "\n".join(examples) + "\n" if examples else "")


def _phi_section(report: dict[str, Any]) -> str:
    lines = [f"Policy: **{report['policy']}** (report: counted only; mask: identifiers replaced by [KIND]; "
             f"drop: samples removed). Samples with a finding: {report['samples_with_phi']:,}."]
    if report["hits_by_kind"]:
        lines.append("Findings by kind: " + ", ".join(f"{k} {v:,}" for k, v in sorted(report["hits_by_kind"].items())))
    lines.append("The screen finds structured identifiers only (emails, phones, SSN/MRN-like numbers, dates of "
                 "birth, street addresses); it is not a de-identification.")
    return "\n\n".join(lines) + "\n"


def _recipe_section(recipe: dict[str, Any]) -> str:
    overrides = ", ".join(f"`{o}`" for o in recipe["overrides"]) or "none"
    return (f"File `{recipe['path']}` (sha256 `{recipe['sha256'][:16]}`), seed {recipe['seed']}, "
            f"overrides: {overrides}.\n\n```json\n{json.dumps(recipe['clean'], indent=2, default=str)}\n```\n")


def _build_section(summary: dict[str, Any]) -> str:
    hashes = "\n".join(f"- {name}: `{record.get('sha256', '')[:16]}` {record.get('path', '')}"
                       for name, record in summary["hashes"].items())
    return (f"Peak RSS {summary['peak_rss_mib']:,.0f} MiB; cache hits {summary['cache']['hits']}, misses "
            f"{summary['cache']['misses']} (cache folder `{summary['cache']['dir']}`).\n\n{hashes}\n")


def _dropped(row: dict[str, Any]) -> str:
    return ", ".join(f"{reason}: {count:,}" for reason, count in sorted(row["dropped_by_reason"].items())) or "-"


def log_to_wandb(wandb_run, sources: list[dict[str, Any]], files: list[Path]) -> None:
    """A wandb.Table of the per-source table and an artifact holding the manifest and the card."""
    if isinstance(wandb_run, NullRun):
        return
    import wandb

    wandb_run.log({"data/sources": wandb.Table(columns=list(TABLE_COLUMNS), data=table_rows(sources))})
    artifact = wandb.Artifact(name=f"{wandb_run.name}-manifest".replace("/", "-"), type="data-manifest")
    for path in files:
        artifact.add_file(str(path))
    wandb_run.log_artifact(artifact)
