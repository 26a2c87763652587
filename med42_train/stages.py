"""The stage registry: command name -> module exposing `run(cfg)` (and `stage_inputs(cfg)` for pipeline stages)."""

STAGE_MODULES = {
    "data": "med42_train.data.assemble",
    "sft": "med42_train.train.sft",
    "dpo": "med42_train.train.dpo",
    "eval": "med42_train.eval.mcqa",
    "elo": "med42_train.eval.elo",
    "report": "med42_train.report.stage",
    "pipeline": "med42_train.launch.local",
}

# Stages that do their work once, in one process: under torchrun every rank would repeat it and race on files.
SINGLE_PROCESS_STAGES = ("data", "eval", "elo", "report", "pipeline")
