"""Streamed export under FSDP2, run by tests/train/test_export.py as
`torchrun --nproc-per-node 2 -m tests.train.export_worker OUT_DIR MAX_SHARD_BYTES [SLOW_RANK0_S]`.

With SLOW_RANK0_S, the training group's timeout is a third of it and rank 0's validation sleeps that long.

Rank 0 also writes the full state dict gathered the ordinary way (get_model_state_dict), as the reference the
test compares the export with, and the export's report."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path

import torch
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard
from transformers import LlamaConfig, LlamaForCausalLM

from med42_train.models.chat import EOT
from med42_train.models.tokenizer import train_demo_tokenizer
from med42_train.runtime.dist import dist_info, init_distributed
from med42_train.train.export import export_model

TEXTS = ["What is the first-line treatment for hypertension?", "A thiazide or an ACE inhibitor."] * 20
PROMPT = "What is the first-line treatment for hypertension?"


def demo_tokenizer():
    return train_demo_tokenizer(TEXTS, bpe_vocab_size=300)


def model_that_stops(tokenizer, tie_word_embeddings: bool = False, seed: int = 0, hidden_size: int = 32,
                     intermediate_size: int = 64, num_hidden_layers: int = 2) -> LlamaForCausalLM:
    """A random tiny Llama whose greedy reply is <|eot_id|> at once, so the export validation passes.

    With attention and MLP outputs zeroed the residual stream is the token embedding; embedding dimension 0 is
    large for every token, so after the final RMSNorm it dominates, and the <|eot_id|> row of the LM head reads
    it most. Every other weight stays random, so the export is still compared on real values.
    """
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size,
                                         intermediate_size=intermediate_size, num_hidden_layers=num_hidden_layers,
                                         num_attention_heads=4, num_key_value_heads=2,
                                         tie_word_embeddings=tie_word_embeddings))
    eot = tokenizer.convert_tokens_to_ids(EOT)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        model.model.embed_tokens.weight[:, 0] = 10.0
        if tie_word_embeddings:  # the LM head is the embedding: <|eot_id|>'s row reads dimension 0 twice as much
            model.model.embed_tokens.weight[eot, 0] = 20.0
        else:
            model.lm_head.weight[:, 0] = 0.0
            model.lm_head.weight[eot, 0] = 10.0
    model.config.use_cache = False
    return model


def _slow_validation(delay_s: float) -> None:
    """Rank 0's validation takes `delay_s` longer: longer than the training group's timeout in that test."""
    import time

    from med42_train.train import export

    validate = export.validate_export

    def slow(*args, **kwargs):
        time.sleep(delay_s)
        return validate(*args, **kwargs)

    export.validate_export = slow


def main(out_dir: Path, max_shard_bytes: int, slow_rank0_s: float = 0.0) -> None:
    if slow_rank0_s:  # a training group whose timeout is shorter than rank 0's validation
        torch.distributed.init_process_group("gloo", timeout=timedelta(seconds=slow_rank0_s / 3))
        _slow_validation(slow_rank0_s)
    init_distributed("gloo")
    tokenizer = demo_tokenizer()
    model = model_that_stops(tokenizer)
    for layer in model.model.layers:
        fully_shard(layer)
    fully_shard(model)
    report = export_model(model, tokenizer, out_dir / "model", PROMPT, max_shard_bytes,
                          wait_timeout_s=10 * slow_rank0_s or 14400.0)
    reference = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if dist_info().is_main:
        torch.save(reference, out_dir / "reference.pt")
        (out_dir / "report.json").write_text(json.dumps(report))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), *map(float, sys.argv[3:]))
