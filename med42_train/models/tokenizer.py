"""The training tokenizer: Llama 3's vocabulary (or the demo's BPE) with the training chat template."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from omegaconf import DictConfig
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from med42_train.models.chat import BOS, EOT, TRAINING_LLAMA3_TEMPLATE, llama3_special_tokens, pad_token_for


def train_demo_tokenizer(texts: Iterable[str], bpe_vocab_size: int) -> PreTrainedTokenizerFast:
    """Byte-level BPE learned from the demo corpus, with the 256 Llama 3 special tokens appended in order."""
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
    core.add_special_tokens(llama3_special_tokens())
    return finalize(PreTrainedTokenizerFast(tokenizer_object=core))


def load_base_tokenizer(cfg: DictConfig) -> PreTrainedTokenizerFast:
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.name_or_path, trust_remote_code=cfg.model.trust_remote_code)
    return finalize(tokenizer)


def finalize(tokenizer: PreTrainedTokenizerFast) -> PreTrainedTokenizerFast:
    """Llama 3 chat conventions: BOS from the template only, EOS = <|eot_id|>, a pad distinct from both EOS."""
    tokenizer.bos_token = BOS
    tokenizer.eos_token = EOT
    tokenizer.pad_token = pad_token_for(tokenizer.get_vocab())
    tokenizer.chat_template = TRAINING_LLAMA3_TEMPLATE
    tokenizer.padding_side = "right"
    tokenizer.model_max_length = 1 << 20  # lengths are enforced by the data stage, not by silent truncation
    return tokenizer


# Meta's Llama 3 pre-tokenizer split pattern (llama-models, models/llama3/tokenizer.py).
LLAMA3_PAT_STR = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
    r"|\s+(?!\S)|\s+"
)


def tokenizer_from_tiktoken(model_file: Path, tokenizer_config: Path, out_dir: Path) -> PreTrainedTokenizerFast:
    """An HF fast tokenizer from Meta's original `tokenizer.model` (tiktoken ranks) plus the special tokens of
    an HF tokenizer_config.json, for checkpoints distributed in Meta's format."""
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
    return finalize(PreTrainedTokenizerFast.from_pretrained(str(out_dir)))
