"""The `report` stage: one self-contained HTML page (and a markdown twin) for a run directory.

Launch: med42 report run_dir=runs/demo          (last in `med42 pipeline`)
Writes <run_dir>/report/report.html (figures and styles inline: it opens offline, from anywhere), report.md
(figures linked from figures/), figures/*.png, manifest.json, COMPLETE. Shows whatever the run holds: a stage
that is missing or incomplete gets a note, not an error.
"""

from __future__ import annotations

import base64
import time
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from omegaconf import DictConfig

from med42_train.report import collect, figures
from med42_train.report.tables import elo_rows, mcqa_table, paper_mcqa_table
from med42_train.runtime.log import get_logger
from med42_train.runtime.rundir import begin_stage, finish_stage, stage_input
from med42_train.runtime.wandb_run import start_run

log = get_logger()
TEMPLATE_DIR = Path(__file__).parent / "templates"


def stage_inputs(cfg: DictConfig) -> dict[str, dict[str, str]]:
    """Every COMPLETE upstream stage: the report changes when any of them does, and renders without the rest."""
    return {name: stage_input(cfg, name)[1] for name in collect.UPSTREAM_STAGES
            if collect.stage_info(Path(cfg.run_dir), name).state == "complete"}


def run(cfg: DictConfig) -> None:
    stage = begin_stage(cfg, "report", stage_inputs(cfg))
    if stage is None:
        return
    cfg, wandb_run = stage.cfg, start_run(stage.cfg, "report")
    context, rendered = build_context(cfg, stage.dir / "figures")
    environment = Environment(loader=FileSystemLoader(TEMPLATE_DIR), undefined=StrictUndefined,
                              autoescape=select_autoescape(["html.j2"]), trim_blocks=True, lstrip_blocks=True)
    html_path, md_path = stage.dir / "report.html", stage.dir / "report.md"
    html_path.write_text(environment.get_template("report.html.j2").render(**context))
    md_path.write_text(environment.get_template("report.md.j2").render(**context))
    _log_figures(wandb_run, rendered, stage.dir)
    outputs = {"html": {"path": str(html_path)}, "markdown": {"path": str(md_path)},
               "figures": {f["name"]: {"path": str(stage.dir / f["file"])} for f in rendered}}
    finish_stage(stage, outputs, {"num_figures": len(rendered), "sections": context["sections"]},
                 wandb_run_id=wandb_run.id)
    wandb_run.finish()
    log.info("report: %s", html_path)


def build_context(cfg: DictConfig, figure_dir: Path) -> tuple[dict, list[dict]]:
    """Everything the templates show, and the figures made for it."""
    run_dir = Path(cfg.run_dir)
    stages = {name: collect.stage_info(run_dir, name) for name in collect.UPSTREAM_STAGES}
    paper = collect.paper_figures() if cfg.report.show_paper else None
    mixture = collect.data_mixture(stages["data"].manifest)
    ratings = collect.read_json(run_dir / "elo" / "ratings.json") if stages["elo"].state == "complete" else None
    made = _make_figures(cfg, figure_dir, collect.training_curves(run_dir, stages), ratings)
    context = {
        "title": cfg.report.title or f"{cfg.name} run report", "run_dir": str(run_dir),
        "generated_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "stages": list(stages.values()),
        "mixture": mixture, "removals": collect.removals(mixture),
        "training_figures": [f for f in made if f["kind"] == "training"],
        "mcqa": mcqa_table(collect.mcqa_scores(run_dir)), "paper_mcqa": paper_mcqa_table(paper),
        "eval_files": collect.eval_files(run_dir),
        "elo": elo_rows(ratings, paper), "ratings": ratings,
        "elo_figures": [f for f in made if f["kind"] == "elo"],
        "manifests": collect.manifest_links(run_dir),
        "sections": ["overview", "data", "training", "mcqa", "elo", "manifests"],
    }
    return context, made


def _make_figures(cfg: DictConfig, figure_dir: Path, curves: list, ratings) -> list[dict]:
    specs = [("training", f"training-{k}", curve.title, figures.training_figure(curve.title, curve.history))
             for k, curve in enumerate(curves)]
    if ratings and ratings.get("leaderboard"):
        specs.append(("elo", "elo-ratings", "Elo ratings", figures.elo_figure(ratings["leaderboard"])))
        specs.append(("elo", "win-rate", "Pairwise win rates",
                      figures.win_rate_figure(ratings["models"], ratings["win_rate"],
                                                              ratings.get("tie_rate"))))
    figure_dir.mkdir(parents=True, exist_ok=True)
    made = []
    for kind, name, title, figure in specs:
        if figure is None:
            continue
        (figure_dir / f"{name}.png").write_bytes(figures.to_bytes(figure, "png", cfg.report.figure_dpi))
        inline = figures.to_bytes(figure, cfg.report.figure_format, cfg.report.figure_dpi)
        mime = "image/svg+xml" if cfg.report.figure_format == "svg" else "image/png"
        made.append({"kind": kind, "name": name, "title": title, "file": f"figures/{name}.png",
                     "src": f"data:{mime};base64,{base64.b64encode(inline).decode()}"})
        figures.close(figure)
    return made


def _log_figures(wandb_run, made: list[dict], stage_dir: Path) -> None:
    if wandb_run.id is None:  # the no-op run: nothing to log, and no wandb import
        return
    import wandb

    wandb_run.log({f"report/{f['name']}": wandb.Image(str(stage_dir / f["file"])) for f in made})
