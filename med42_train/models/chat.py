"""Meta's Llama 3 Instruct chat format, and the training variant of its template that marks what is supervised.

Rendered text (Meta, Llama 3 model card):
    <|begin_of_text|><|start_header_id|>system<|end_header_id|>\\n\\n{content}<|eot_id|>
    <|start_header_id|>user<|end_header_id|>\\n\\n{content}<|eot_id|>
    <|start_header_id|>assistant<|end_header_id|>\\n\\n{content}<|eot_id|>
The training template produces the same tokens as Meta's and wraps each assistant turn's content and its
<|eot_id|> in {% generation %} tags, which is what transformers' `return_assistant_tokens_mask` reads
(FACTS.md: without the tags the mask is silently all ones or empty).
"""

from __future__ import annotations

from transformers import GenerationConfig, PreTrainedTokenizerBase

BOS = "<|begin_of_text|>"
EOS_TEXT = "<|end_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOT = "<|eot_id|>"

# Meta's Llama 3 Instruct template, verbatim (Meta-Llama-3-8B-Instruct tokenizer_config.json).
META_LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' "
    "+ message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 "
    "== 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt "
    "%}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

TRAINING_LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] | trim + '<|eot_id|>' }}{%- endgeneration %}"
    "{%- else %}"
    "{{- message['content'] | trim + '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}"
)


def llama3_special_tokens() -> list[str]:
    """The 256 Llama 3 special tokens in id order (offset 128000 in Meta's vocabulary)."""
    named = {0: BOS, 1: EOS_TEXT, 6: START_HEADER, 7: END_HEADER, 9: EOT}
    tokens, reserved = [], 0
    for offset in range(256):
        if offset in named:
            tokens.append(named[offset])
        else:
            tokens.append(f"<|reserved_special_token_{reserved}|>")
            reserved += 1
    return tokens


def pad_token_for(vocab: dict[str, int]) -> str:
    """A pad token distinct from both EOS tokens, so padding can never mask a real end of turn."""
    for candidate in ("<|finetune_right_pad_id|>", "<|reserved_special_token_0|>"):
        if candidate in vocab:
            return candidate
    raise ValueError("tokenizer has neither <|finetune_right_pad_id|> nor <|reserved_special_token_0|> for padding")


def stop_token_ids(tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Generation must stop on both <|end_of_text|> and <|eot_id|> (Meta's Llama 3 Instruct generation config)."""
    return [tokenizer.convert_tokens_to_ids(EOS_TEXT), tokenizer.convert_tokens_to_ids(EOT)]


def generation_config(tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    """What every export ships: greedy by default, stopping on every end-of-turn token of the chat format."""
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=stop_token_ids(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=256,
    )
