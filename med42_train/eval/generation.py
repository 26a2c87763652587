"""Batched chat generation for the elo stage: vLLM when it is installed and a GPU is present, else transformers.

Both paths render the same prompts (the model's own chat template, generation prompt appended) and stop on the
same tokens (`<|eot_id|>` and `<|end_of_text|>`, or the model's own EOS ids for a non-Llama judge).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from med42_train.runtime.log import get_logger

log = get_logger()
LLAMA3_STOP_TOKENS = ("<|eot_id|>", "<|end_of_text|>")


@dataclass(frozen=True)
class Sampling:
    """Decoding settings; temperature 0 means greedy."""

    temperature: float
    top_k: int
    top_p: float
    max_new_tokens: int
    seed: int


def use_vllm() -> bool:
    import torch

    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def load_causal_lm(path: str, dtype: str, trust_remote_code: bool):
    """(model, tokenizer) with left padding for batched generation; offline for a local folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if Path(path).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local model: never reach for the hub
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype),
                                                 trust_remote_code=trust_remote_code, use_safetensors=True)
    return model.to(device).eval(), tokenizer


def stop_ids(tokenizer) -> list[int]:
    """The Llama 3 stop tokens the tokenizer knows, plus its own EOS (a Mistral-based judge has only </s>)."""
    ids = {tokenizer.convert_tokens_to_ids(t) for t in LLAMA3_STOP_TOKENS if t in tokenizer.get_vocab()}
    return sorted(ids | ({tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()))


def render_chat(tokenizer, conversations: list[list[dict]]) -> list[str]:
    return [tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            for messages in conversations]


def generate(model, tokenizer, prompts: list[str], sampling: Sampling, batch_size: int) -> list[str]:
    """Completions of already-rendered prompts, in batches (left-padded), seeded once per call."""
    import torch
    from transformers import set_seed

    set_seed(sampling.seed)
    completions: list[str] = []
    for start in range(0, len(prompts), batch_size):
        # The chat template already wrote <|begin_of_text|>: no second BOS.
        batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                          add_special_tokens=False).to(model.device)
        with torch.no_grad():
            output = model.generate(**batch, **_generate_kwargs(tokenizer, sampling))
        new_tokens = output[:, batch["input_ids"].shape[1]:]
        completions += tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    return completions


def _generate_kwargs(tokenizer, sampling: Sampling) -> dict:
    kwargs = {"max_new_tokens": sampling.max_new_tokens, "eos_token_id": stop_ids(tokenizer),
              "pad_token_id": tokenizer.pad_token_id}
    if sampling.temperature <= 0:
        return {**kwargs, "do_sample": False, "top_k": None, "top_p": None, "temperature": None}
    return {**kwargs, "do_sample": True, "temperature": sampling.temperature, "top_k": sampling.top_k,
            "top_p": sampling.top_p}


def generate_vllm(path: str, dtype: str, prompts: list[str], sampling: Sampling,
                  trust_remote_code: bool, tensor_parallel_size: Optional[int] = None) -> list[str]:
    """The same prompts and stop tokens through vLLM (GPU only; not exercised on CPU CI)."""
    import torch
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    llm = LLM(model=path, dtype=dtype, seed=sampling.seed, trust_remote_code=trust_remote_code,
              tensor_parallel_size=tensor_parallel_size or max(torch.cuda.device_count(), 1))
    params = SamplingParams(temperature=sampling.temperature, top_k=sampling.top_k if sampling.temperature > 0
                            else -1, top_p=sampling.top_p if sampling.temperature > 0 else 1.0,
                            max_tokens=sampling.max_new_tokens, stop_token_ids=stop_ids(tokenizer),
                            seed=sampling.seed)
    # Token ids, not text: vLLM would otherwise add a second BOS in front of the rendered template.
    token_prompts = [{"prompt_token_ids": tokenizer(p, add_special_tokens=False)["input_ids"]} for p in prompts]
    outputs = llm.generate(token_prompts, params)
    return [out.outputs[0].text for out in outputs]
