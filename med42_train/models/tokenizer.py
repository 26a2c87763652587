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


def save_tokenizer(tokenizer: PreTrainedTokenizerFast, out_dir: Path) -> Path:
    tokenizer.save_pretrained(str(out_dir))
    return Path(out_dir)
