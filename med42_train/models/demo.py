"""The embedded demo model: a tiny Llama 3-architecture network with deterministic random initialisation."""

from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from med42_train.models.chat import generation_config, stop_token_ids


def build_demo_model(cfg: DictConfig, tokenizer: PreTrainedTokenizerFast, out_dir: Path) -> Path:
    """Write a tiny Llama (safetensors), its tokenizer and generation config to out_dir."""
    tiny = cfg.model.tiny
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=tiny.hidden_size,
        intermediate_size=tiny.intermediate_size,
        num_hidden_layers=tiny.num_hidden_layers,
        num_attention_heads=tiny.num_attention_heads,
        num_key_value_heads=tiny.num_key_value_heads,
        max_position_embeddings=tiny.max_position_embeddings,
        rope_theta=500000.0,  # Llama 3's RoPE base
        rms_norm_eps=1e-5,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=stop_token_ids(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(cfg.seed)
    model = LlamaForCausalLM(config)
    model.generation_config = generation_config(tokenizer)
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    return Path(out_dir)
