"""CPU/gloo compatibility for accelerate's FSDP path, so CI exercises the real FSDP2 code of the trainers.

accelerate 1.15 enters its FSDP branch in `AcceleratorState.__init__` only for the GPU-like MULTI_* distributed
types, so on CPU processes an FSDP plugin silently degrades to DDP (`MULTI_CPU`, `is_fsdp_enabled=False`).
Nothing else in the FSDP2 path needs a GPU (FACTS.md: with MULTI_CPU admitted, TRL's SFTTrainer runs
`fully_shard` on 2 gloo processes and writes sharded DCP checkpoints). This module admits MULTI_CPU exactly
there and changes nothing for CUDA runs: `apply_cpu_fsdp_shim` is called only when the backend is gloo.
"""

from __future__ import annotations

import functools

_APPLIED = False


def apply_cpu_fsdp_shim() -> None:
    """After accelerate builds its state, promote MULTI_CPU + an FSDP plugin to DistributedType.FSDP."""
    global _APPLIED
    if _APPLIED:
        return
    from accelerate.state import AcceleratorState
    from accelerate.utils import DistributedType

    original_init = AcceleratorState.__init__

    @functools.wraps(original_init)
    def init_admitting_cpu_fsdp(self, *args, fsdp_plugin=None, **kwargs):
        original_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        # Every later AcceleratorState() copies PartialState's MULTI_CPU back over distributed_type, so the
        # promotion is re-applied whenever a plugin is known, not only on the call that brought it.
        plugin = fsdp_plugin if fsdp_plugin is not None else getattr(self, "fsdp_plugin", None)
        if plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            # Same assignments accelerate makes for MULTI_GPU in its FSDP branch.
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = plugin

    AcceleratorState.__init__ = init_admitting_cpu_fsdp
    _APPLIED = True
