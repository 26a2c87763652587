"""Meta's Llama 3 and Llama 3.1 Instruct chat formats, and the training variants of their templates that mark what
is supervised. The family is chosen from the base tokenizer's vocabulary (3.1 added <|eom_id|>) or model.chat_family.

Rendered text (Meta, Llama 3 model card):
    <|begin_of_text|><|start_header_id|>system<|end_header_id|>\\n\\n{content}<|eot_id|>
    <|start_header_id|>user<|end_header_id|>\\n\\n{content}<|eot_id|>
    <|start_header_id|>assistant<|end_header_id|>\\n\\n{content}<|eot_id|>
The training template produces the same tokens as Meta's and wraps each assistant turn's content and its
<|eot_id|> in {% generation %} tags, which is what transformers' `return_assistant_tokens_mask` reads
(FACTS.md: without the tags the mask is silently all ones or empty).

Llama 3.1 (Meta's 3.1 template, meta_templates.py) always opens with a system block whose first lines are
    Cutting Knowledge Date: December 2023\\nToday Date: {date}\\n\\n
followed by the system prompt (empty when the conversation has none); the rest is rendered as Llama 3's. Its
training template reproduces that text for conversations of system/user/assistant turns (the only roles the data
stage produces) and refuses tools, tool calls and tool/ipython turns rather than render them differently from Meta.
3.1 also stops on <|eom_id|> (end of message, after a built-in tool call).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from transformers import GenerationConfig, PreTrainedTokenizerBase

from med42_train.config import ConfigError, check_chat_format

BOS = "<|begin_of_text|>"
EOS_TEXT = "<|end_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOT = "<|eot_id|>"
EOM = "<|eom_id|>"  # Llama 3.1 only: end of a message that hands over to a tool
FAMILIES = ("llama3", "llama31")
META_LLAMA31_DATE = "26 Jul 2024"  # the default Today Date of Meta's 3.1 template (July 2024 release)

# Meta's Llama 3 Instruct template, verbatim (Meta-Llama-3-8B-Instruct tokenizer_config.json).
META_LLAMA3_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' "
    "+ message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 "
    "== 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt "
    "%}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

# One turn of the training templates (header, then the content and its <|eot_id|>, supervised for the assistant),
# and the generation prompt after the last one: the same in the Llama 3 and 3.1 formats.
_TURNS_AND_GENERATION_PROMPT = (
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] | trim + '<|eot_id|>' }}{%- endgeneration %}"
    "{%- else %}"
    "{{- message['content'] | trim + '<|eot_id|>' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{%- endif %}"
)

TRAINING_LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
) + _TURNS_AND_GENERATION_PROMPT

# The 3.1 training template: Meta's 3.1 text for tool-less conversations, the date baked in (and still overridable
# through `date_string`, as in Meta's), {% generation %} tags as in the Llama 3 one. @TODAY@ is substituted.
_TRAINING_LLAMA31_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if (tools is defined and tools is not none) or builtin_tools is defined or custom_tools is defined %}"
    "{{- raise_exception('the training chat template renders no tools: Meta\\'s 3.1 template would') }}"
    "{%- endif %}"
    "{%- if not date_string is defined %}{%- set date_string = \"@TODAY@\" %}{%- endif %}"
    "{%- if messages and messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content'] | trim %}{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\nToday Date: '"
    " + date_string + '\n\n' + system_message + '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{%- if message['role'] in ['tool', 'ipython'] or 'tool_calls' in message %}"
    "{{- raise_exception('the training chat template renders no tool turns: Meta\\'s 3.1 template would') }}"
    "{%- endif %}"
) + _TURNS_AND_GENERATION_PROMPT
_BAKED_DATE = re.compile(r'\{%- set date_string = "([^"]*)" %\}')


@dataclass(frozen=True)
class ChatFormat:
    """A base family's chat format: which template the project trains and evaluates with, and its stop tokens."""

    family: str = "llama3"  # llama3 | llama31
    date: str = META_LLAMA31_DATE  # llama31 only: the Today Date line (Meta's default unless model.chat_date)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ConfigError(f"model.chat_family={self.family!r} is not a format: use one of {', '.join(FAMILIES)}")
        check_chat_format(self.family, self.date)

    @property
    def template(self) -> str:
        if self.family == "llama3":
            return TRAINING_LLAMA3_TEMPLATE
        return _TRAINING_LLAMA31_TEMPLATE.replace("@TODAY@", self.date)

    @property
    def system_preamble(self) -> str:
        """What opens the system block before the system prompt (3.1's date lines; nothing for Llama 3)."""
        if self.family == "llama3":
            return ""
        return f"Cutting Knowledge Date: December 2023\nToday Date: {self.date}\n\n"

    @property
    def stop_tokens(self) -> tuple[str, ...]:
        """Meta's generation_config.json eos ids: [128001, 128009] for 3, [128001, 128008, 128009] for 3.1."""
        return (EOS_TEXT, EOT) if self.family == "llama3" else (EOS_TEXT, EOM, EOT)


def family_of_vocab(vocab: dict[str, int]) -> str:
    """Llama 3.1's vocabulary is Llama 3's with reserved tokens renamed; <|eom_id|> (128008) exists only in 3.1."""
    return "llama31" if EOM in vocab else "llama3"


def format_of_template(template: str | None) -> ChatFormat | None:
    """The project's training format a template text is exactly, or None (any other template)."""
    if template == TRAINING_LLAMA3_TEMPLATE:
        return ChatFormat("llama3")
    match = _BAKED_DATE.search(template or "")
    if match is None:
        return None
    try:
        candidate = ChatFormat("llama31", match.group(1))
    except ValueError:
        return None
    return candidate if candidate.template == template else None


def llama3_special_tokens(family: str = "llama3") -> list[str]:
    """The 256 Llama 3 (or 3.1) special tokens in id order (offset 128000 in Meta's vocabulary). 3.1 names three of
    Llama 3's reserved tokens (transformers' convert_llama_weights_to_hf.py, DEFAULT_LLAMA_SPECIAL_TOKENS["3.1"]) and
    numbers the remaining reserved ones on."""
    named = {0: BOS, 1: EOS_TEXT, 6: START_HEADER, 7: END_HEADER, 9: EOT}
    if family == "llama31":
        named.update({4: "<|finetune_right_pad_id|>", 8: EOM, 10: "<|python_tag|>"})
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
    """Generation stops on every end token of the family: <|end_of_text|> and <|eot_id|> (Meta's Llama 3 Instruct
    generation config), plus <|eom_id|> for 3.1 (Meta's 3.1 generation config)."""
    family = family_of_vocab(tokenizer.get_vocab())
    return [tokenizer.convert_tokens_to_ids(token) for token in ChatFormat(family).stop_tokens]


def generation_config(tokenizer: PreTrainedTokenizerBase) -> GenerationConfig:
    """What every export ships: greedy by default, stopping on every end-of-turn token of the chat format."""
    return GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=stop_token_ids(tokenizer),
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
        max_new_tokens=256,
    )
