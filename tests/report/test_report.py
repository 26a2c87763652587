"""The run report: every section and figure on one self-contained page, from a full or a partial run directory."""

from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from med42_train.config import load_config
from med42_train.report import stage as report_stage

SECTIONS = ("overview", "data", "training", "mcqa", "elo", "manifests")


class PageParser(HTMLParser):
    """Section ids, images (alt, src) and every href/src that would reach outside the page."""

    def __init__(self):
        super().__init__()
        self.sections, self.images, self.links, self.external = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        if tag == "img":
            self.images.append((attrs.get("alt"), attrs.get("src", "")))
        if tag == "a":
            self.links.append(attrs.get("href", ""))
        if tag in ("script", "link") or any(str(v).startswith(("http:", "https:", "//")) for k, v in attrs.items()
                                            if k in ("src", "href")):
            self.external.append((tag, attrs))


def _parse(path: Path) -> PageParser:
    parser = PageParser()
    parser.feed(path.read_text())
    return parser


def _write(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload))


def _complete(run_dir: Path, stage: str, outputs: dict, figures: dict | None = None) -> None:
    _write(run_dir / stage / "manifest.json", {"stage": stage, "config_hash": "x", "inputs": {}, "outputs": outputs,
                                               "figures": figures or {}, "timings": {"wall_s": 1.5}})
    (run_dir / stage / "COMPLETE").write_text("x\n")


def _history(num_steps: int, sources=("medqa",)) -> list[dict]:
    return [{"step": s, "loss": 2.0 / s, "learning_rate": 1e-5, "grad_norm": 1.0, "train/tokens_per_s": 900.0,
             **{f"train/loss/{name}": 2.1 / s for name in sources}} for s in range(1, num_steps + 1)]


@pytest.fixture
def partial_run(tmp_path) -> Path:
    """data + sft + DPO in the iterations layout (two iterations) + eval; no elo stage."""
    run_dir = tmp_path / "run"
    sources = {"medqa": {"read": 10, "kept": 8, "selected": 8, "num_tokens": 900, "share": 1.0,
                         "sampling_factor": 1.0, "dropped_by_reason": {"contaminated:demo_mcqa": 2}}}
    _complete(run_dir, "data", {}, {"sft_sources": sources, "preference_sources": {}})
    _complete(run_dir, "sft", {"model": {"path": "m"}})
    _write(run_dir / "sft" / "log_history.json", _history(4))
    iterations = [{"iteration": k, "dir": str(run_dir / "dpo" / f"iter_{k}"), "model": {"path": "m"}} for k in (1, 2)]
    _complete(run_dir, "dpo", {"model": {"path": "m"}, "iterations": iterations})
    for k in (1, 2):
        _complete(run_dir / "dpo", f"iter_{k}", {})
        _write(run_dir / "dpo" / f"iter_{k}" / "log_history.json",
               [{"step": s, "loss": 0.69, "rewards/margins": 0.1 * s, "learning_rate": 1e-6} for s in (1, 2)])
    _complete(run_dir, "eval", {})
    _write(run_dir / "eval" / "summary.json", {"sft": {"t1": {"acc": 0.5, "acc_stderr": 0.1}}})
    return run_dir


def _render(run_dir: Path) -> Path:
    cfg = load_config([f"run_dir={run_dir}", "logger.wandb=false"])
    report_stage.run(cfg)
    return run_dir / "report" / "report.html"


def test_partial_run_renders_with_notes_and_every_dpo_iteration(partial_run):
    page = _parse(_render(partial_run))
    assert page.sections == list(SECTIONS) and page.external == []
    assert [alt for alt, _ in page.images] == ["training-0", "training-1", "training-2"]  # SFT + 2 DPO iterations
    assert all(src.startswith("data:image/png;base64,") for _, src in page.images)
    html = (partial_run / "report" / "report.html").read_text()
    assert "No complete elo stage in this run." in html and "contaminated:demo_mcqa" in html
    assert "50.00 ± 10.00" in html and "Med42-v2 card" in html
    assert "../dpo/iter_2/manifest.json" in page.links and "../eval/summary.json" in page.links
    markdown = (partial_run / "report" / "report.md").read_text()
    assert "## Clinical Elo tournament" in markdown and "](figures/training-1.png)" in markdown
    assert all((partial_run / "report" / "figures" / f"training-{k}.png").is_file() for k in range(3))


def test_old_single_folder_dpo_layout_still_plots(partial_run):
    manifest = json.loads((partial_run / "dpo" / "manifest.json").read_text())
    del manifest["outputs"]["iterations"]
    _write(partial_run / "dpo" / "manifest.json", manifest)
    _write(partial_run / "dpo" / "log_history.json", [{"step": 1, "loss": 0.7}, {"step": 2, "loss": 0.6}])
    page = _parse(_render(partial_run))
    assert [alt for alt, _ in page.images] == ["training-0", "training-1"]


def test_demo_report_has_every_section_and_figure(demo_run):
    html_path = demo_run / "report" / "report.html"
    page = _parse(html_path)
    assert page.sections == list(SECTIONS) and page.external == []
    alts = [alt for alt, _ in page.images]
    assert "elo-ratings" in alts and "win-rate" in alts and "training-0" in alts  # SFT curves
    assert len([a for a in alts if a.startswith("training-")]) >= 2  # SFT + at least one DPO run
    ratings = json.loads((demo_run / "elo" / "ratings.json").read_text())
    html = html_path.read_text()
    for row in ratings["leaderboard"]:
        assert row["model"] in html
    manifest = json.loads((demo_run / "report" / "manifest.json").read_text())
    assert set(manifest["inputs"]) == {"data", "sft", "dpo", "eval", "elo"}
    assert f"report: {html_path}" in (demo_run / "pipeline.log").read_text()
    logged = {p.name.split("_")[0] for p in demo_run.glob("wandb/offline-run-*/files/media/images/report/*.png")}
    assert {"elo-ratings", "win-rate", "training-0"} <= logged  # the figures also went to W&B


def test_demo_report_renders_in_headless_chromium(demo_run, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium)")
    shot = tmp_path / "report.png"
    # No network: the page must not need it (its assets are inline).
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--proxy-server=127.0.0.1:9", f"--screenshot={shot}", "--window-size=1300,3000",
                    (demo_run / "report" / "report.html").as_uri()], check=True, capture_output=True, timeout=120)
    assert shot.stat().st_size > 50_000  # a rendered page with figures, not a blank canvas
