"""Committed memory of a non-zero rank through accelerate's real FSDP2 prepare with mixed precision on, run by
tests/train/test_memory_options.py as
`torchrun --nproc-per-node 2 -m tests.train.prepare_memory_worker OUT_DIR MODEL_DIR`.

MODEL_DIR holds a saved bf16 model (rank 0 reads it); every rank loads it with load_model under
`fsdp.cpu_ram_efficient_loading=true fsdp.mixed_precision=true`, then runs accelerate's fsdp2_prepare_model with
an Accelerator whose mixed_precision is "bf16" (the branch that upcasts trainable parameters to fp32). The config
check refusing mixed precision on gloo is bypassed on purpose: the policy's compute cast needs CUDA, but the
upcast-and-load path measured here is the same code on CPU. Each rank writes its peak RSS growth (MiB)."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

import torch
from omegaconf import open_dict


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(out_dir: Path, model_dir: str) -> None:
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model

    from med42_train.config import load_config
    from med42_train.runtime.compat import apply_cpu_fsdp_shim
    from med42_train.runtime.dist import dist_info, init_distributed
    from med42_train.train.common import load_model

    init_distributed("gloo")
    apply_cpu_fsdp_shim()
    cfg = load_config(["fsdp.cpu_ram_efficient_loading=true", "launcher.backend=gloo", "model.dtype=bfloat16"])
    with open_dict(cfg):
        cfg.fsdp.mixed_precision = True  # see the module docstring
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, cpu_ram_efficient_loading=True,
                                            transformer_cls_names_to_wrap=["LlamaDecoderLayer"],
                                            auto_wrap_policy="transformer_based_wrap")
    accelerator = Accelerator(cpu=True, mixed_precision="bf16", fsdp_plugin=plugin)
    assert accelerator.mixed_precision == "bf16" and accelerator.distributed_type == DistributedType.FSDP
    before_mib = _peak_rss_mib()
    model = load_model(cfg, model_dir)
    loaded_mib = _peak_rss_mib()
    model = fsdp2_prepare_model(accelerator, model)
    fp32_model_mib = sum(p.numel() for p in model.parameters()) * 4 / 2**20
    dtypes = sorted({str(p.dtype) for p in model.parameters()})
    report = {"rank": dist_info().rank, "fp32_model_mib": fp32_model_mib, "dtypes": dtypes,
              "load_growth_mib": loaded_mib - before_mib, "prepare_growth_mib": _peak_rss_mib() - loaded_mib}
    (out_dir / f"rank{dist_info().rank}.json").write_text(json.dumps(report))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2])
