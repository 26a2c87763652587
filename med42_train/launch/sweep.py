"""Hydra multirun sweeps of the CPU stages, e.g. on Slurm through hydra-submitit-launcher (one job per point):

    python -m med42_train.launch.sweep -m +stage=data data.max_length=4096,8192 'run_dir=runs/len${data.max_length}' \
        hydra/launcher=submitit_slurm hydra.launcher.timeout_min=240 hydra.launcher.cpus_per_task=32 \
        hydra.sweep.dir=runs/sweeps/length

`med42 <stage>` composes its config with Hydra's compose API (no outputs/ folder, no working-directory change);
a sweep needs @hydra.main, whose launcher plugins turn `-m` into jobs. Each point is the same stage code and
the same schema checks as `med42 <stage>`. Only stages outside DISTRIBUTED_STAGES: a training stage needs
torchrun on every node, which the Slurm chain (`med42 pipeline launcher=slurm`) sets up and submitit does not.
Give each point its own run_dir (interpolate the swept keys), or the stages of one run_dir refuse each other.
"""

from __future__ import annotations

import importlib

import hydra
from omegaconf import DictConfig, open_dict

from med42_train.config import CONFIG_DIR, STAGES, ConfigError, finalize_config
from med42_train.launch.local import DISTRIBUTED_STAGES
from med42_train.stages import STAGE_MODULES

SWEEPABLE_STAGES = tuple(stage for stage in STAGES if stage not in DISTRIBUTED_STAGES)


def run_point(composed: DictConfig) -> dict:
    """One point of the sweep: the stage named by `+stage=...`, with this point's config."""
    with open_dict(composed):
        stage = composed.pop("stage", None)
    if stage not in SWEEPABLE_STAGES:
        raise ConfigError(f"+stage={stage}: a sweep runs one of {', '.join(SWEEPABLE_STAGES)} (training stages "
                          "need torchrun on every node: use `med42 pipeline launcher=slurm`)")
    cfg = finalize_config(composed)
    importlib.import_module(STAGE_MODULES[stage]).run(cfg)
    return {"stage": stage, "run_dir": cfg.run_dir}


@hydra.main(config_path=str(CONFIG_DIR), config_name="config", version_base="1.3")
def main(composed: DictConfig) -> dict:
    return run_point(composed)


if __name__ == "__main__":
    main()
