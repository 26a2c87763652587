"""The training tokenizer: Llama 3's or 3.1's vocabulary (or the demo's BPE) with its family's training template."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional

from omegaconf import DictConfig
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from med42_train.config import ConfigError
from med42_train.models.chat import (BOS, EOT, ChatFormat, family_of_vocab, format_of_template,
                                     llama3_special_tokens, pad_token_for)
from med42_train.runtime.log import get_logger

log = get_logger()


def train_demo_tokenizer(texts: Iterable[str], bpe_vocab_size: int,
                         chat_format: ChatFormat = ChatFormat()) -> PreTrainedTokenizerFast:
    """Byte-level BPE learned from the demo corpus, with the 256 Llama 3 (or 3.1) special tokens appended in order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=bpe_vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    core.add_special_tokens(llama3_special_tokens(chat_format.family))
    return finalize(PreTrainedTokenizerFast(tokenizer_object=core), chat_format)


def demo_chat_format(model_cfg: DictConfig) -> ChatFormat:
    """The demo builds its own vocabulary: Llama 3's unless model.chat_family asks for 3.1."""
    family = "llama3" if model_cfg.chat_family == "auto" else model_cfg.chat_family
    return ChatFormat(family, model_cfg.chat_date)


def load_base_tokenizer(cfg: DictConfig) -> PreTrainedTokenizerFast:
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.name_or_path, trust_remote_code=cfg.model.trust_remote_code)
    return finalize(tokenizer, resolve_chat_format(cfg.model, tokenizer.get_vocab(), str(cfg.model.name_or_path)))


def resolve_chat_format(model_cfg: DictConfig, vocab: dict[str, int], name: str) -> ChatFormat:
    """model.chat_family (auto: from the vocabulary) and model.chat_date, checked against the base's vocabulary."""
    detected = family_of_vocab(vocab)
    family = detected if model_cfg.chat_family == "auto" else model_cfg.chat_family
    if family == "llama31" and detected != "llama31":
        raise ConfigError(f"model.chat_family=llama31 but {name}'s tokenizer has no <|eom_id|>: it is a Llama 3 "
                          f"vocabulary; set model.chat_family=auto (or llama3), or point model.name_or_path at 3.1")
    if family == "llama3" and detected == "llama31":
        log.warning("model.chat_family=llama3 on %s, a Llama 3.1 vocabulary: training and evaluating off the "
                    "base's own format (Meta's 3.1 template); set model.chat_family=auto unless that is the aim", name)
    return ChatFormat(family, model_cfg.chat_date)


def chat_template_for_model(model_cfg: DictConfig, name_or_path: str) -> str:
    """The training template of the model's family, for evaluation: every model of a run (the base included, whose
    own tokenizer carries Meta's template, default date, tools and all) is scored in the one format its fine-tunes
    were trained in. The family comes from the model's own vocabulary and model.chat_family / model.chat_date."""
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=model_cfg.trust_remote_code)
    return resolve_chat_format(model_cfg, tokenizer.get_vocab(), name_or_path).template


def finalize(tokenizer: PreTrainedTokenizerFast, chat_format: Optional[ChatFormat] = None) -> PreTrainedTokenizerFast:
    """Llama 3 chat conventions: BOS from the template only, EOS = <|eot_id|>, a pad distinct from every EOS, and
    the family's training template. Without a format: the one the tokenizer already carries (a saved training
    tokenizer reloaded), else its vocabulary's family with Meta's default date."""
    chat_format = (chat_format or format_of_template(tokenizer.chat_template)
                   or ChatFormat(family_of_vocab(tokenizer.get_vocab())))
    tokenizer.bos_token = BOS
    tokenizer.eos_token = EOT
    tokenizer.pad_token = pad_token_for(tokenizer.get_vocab())
    tokenizer.chat_template = chat_format.template
    tokenizer.padding_side = "right"
    tokenizer.model_max_length = 1 << 20  # lengths are enforced by the data stage, not by silent truncation
    return tokenizer


# Meta's Llama 3 pre-tokenizer split pattern (llama-models, models/llama3/tokenizer.py).
LLAMA3_PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)


def tokenizer_from_tiktoken(model_file: Path, tokenizer_config: Path, out_dir: Path,
                            chat_format: Optional[ChatFormat] = None) -> PreTrainedTokenizerFast:
    """An HF fast tokenizer from Meta's original `tokenizer.model` (tiktoken ranks) plus the special tokens of
    an HF tokenizer_config.json, for checkpoints distributed in Meta's format (3 or 3.1: the ranks are the same)."""
    import json

    import tiktoken.load
    from tiktoken import Encoding
    from transformers.integrations.tiktoken import convert_tiktoken_to_fast

    added = json.loads(Path(tokenizer_config).read_text())["added_tokens_decoder"]
    encoding = Encoding(
        name="llama3",
        pat_str=LLAMA3_PAT_STR,
        mergeable_ranks=tiktoken.load.load_tiktoken_bpe(str(model_file)),
        special_tokens={entry["content"]: int(token_id) for token_id, entry in added.items()},
    )
    convert_tiktoken_to_fast(encoding, str(out_dir))
    return finalize(PreTrainedTokenizerFast.from_pretrained(str(out_dir)), chat_format)
