"""`med42 <stage> [hydra overrides]`: compose and validate the config, then hand it to the stage. Thin on purpose."""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from omegaconf import OmegaConf

from med42_train.config import ConfigError, load_config, load_frozen_config
from med42_train.data.sources import SourceError
from med42_train.launch.local import StageFailedError
from med42_train.runtime.dist import dist_info
from med42_train.runtime.preemption import PREEMPTED_EXIT_CODE, Preempted
from med42_train.runtime.rundir import StageConflictError, StageInputError
from med42_train.stages import SINGLE_PROCESS_STAGES, STAGE_MODULES

def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="med42",
        description="Med42-v2 training pipeline. Stages: data, sft, dpo, eval, elo, report, pipeline (all of them "
                    "in order).",
        epilog="Examples: med42 pipeline experiment=demo | med42 sft run_dir=runs/x sft.learning_rate=1e-5",
    )
    parser.add_argument("stage", choices=sorted([*STAGE_MODULES, "doctor"]),
                        help="a stage, `pipeline` (all of them), or `doctor` (checks this machine first)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, key=value (see configs/)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("--dry-run", action="store_true",
                        help="data: print the mixture plan (per source: records, target, sampling factor, "
                             "estimated tokens, share) and exit without tokenizing or writing anything; "
                             "pipeline launcher=slurm: render the sbatch scripts without submitting them")
    parser.add_argument("--config", type=Path, metavar="FROZEN_YAML",
                        help="read this resolved config (what `launcher=slurm` froze at submit time) instead of "
                             "composing configs/; overrides then are plain key=value pairs applied on top")
    parser.add_argument("--status", action="store_true",
                        help="pipeline launcher=slurm: the state of each job of the last chain; exit 1 if one failed")
    return parser.parse_intermixed_args(argv)  # flags may come before or after the overrides


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        if args.stage == "doctor":
            from med42_train.doctor import run_doctor

            return run_doctor(args.overrides)
        cfg = load_frozen_config(args.config, args.overrides) if args.config else load_config(args.overrides)
        if args.stage in SINGLE_PROCESS_STAGES and dist_info().world_size > 1:
            raise ConfigError(f"`{args.stage}` runs in one process (the pipeline launches torchrun itself for "
                              f"sft and dpo): run `med42 {args.stage} ...` without torchrun")
        if args.print_config:
            print(OmegaConf.to_yaml(cfg))
            return 0
        stage = importlib.import_module(STAGE_MODULES[args.stage])
        if args.status:
            return _print_chain_status(cfg)
        if args.dry_run and args.stage == "pipeline":
            stage.run(cfg, args.overrides, dry_run=True)
            return 0
        if args.dry_run:
            if not hasattr(stage, "dry_run"):
                raise ConfigError(f"--dry-run is only for `med42 data`, not `med42 {args.stage}`")
            print(stage.dry_run(cfg))
            return 0
        # The pipeline forwards the command line to the stages it launches; a stage needs only the config.
        stage.run(cfg, args.overrides) if args.stage == "pipeline" else stage.run(cfg)
    except (ConfigError, StageInputError, StageConflictError, SourceError) as err:  # the message names the fix
        print(f"med42 {args.stage}: error: {err}", file=sys.stderr)
        return 2
    except StageFailedError as err:
        print(f"med42 {args.stage}: {err}", file=sys.stderr)
        return 1
    except Preempted as err:
        print(f"med42 {args.stage}: preempted: {err}", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    return 0


def _print_chain_status(cfg) -> int:
    from med42_train.launch.slurm import chain_status

    report, failed = chain_status(cfg)
    print(report)
    return 1 if failed else 0
