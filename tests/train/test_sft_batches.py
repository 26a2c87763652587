"""What SFTTrainer really feeds the model from our pre-tokenized data: labels only on assistant tokens,
padding-free packed rows whose position_ids restart per sample, and no attention mask (which would make sdpa
let packed samples see each other)."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM
from trl import SFTConfig, SFTTrainer

from med42_train.data.tokenize import tokenize_sft
from med42_train.models.tokenizer import train_demo_tokenizer

CONVERSATIONS = [
    [{"role": "user", "content": f"Question {i} about hypertension?"},
     {"role": "assistant", "content": f"Answer {i}: start a thiazide or an ACE inhibitor."}]
    for i in range(6)
]


@pytest.fixture(scope="module")
def packed_batch(tmp_path_factory):
    tokenizer = train_demo_tokenizer([m["content"] for c in CONVERSATIONS for m in c] * 10, bpe_vocab_size=300)
    rows = [tokenize_sft(tokenizer, messages) for messages in CONVERSATIONS]
    dataset = Dataset.from_dict({"input_ids": [r[0] for r in rows], "assistant_masks": [r[1] for r in rows]})
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    args = SFTConfig(output_dir=str(tmp_path_factory.mktemp("sft")), packing=True, packing_strategy="bfd",
                     max_length=512, per_device_train_batch_size=1, use_cpu=True, report_to=[],
                     activation_checkpointing=False)
    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    return next(iter(trainer.get_train_dataloader())), rows, model


def test_labels_are_exactly_the_assistant_tokens(packed_batch):
    batch, rows, _ = packed_batch
    input_ids, labels = batch["input_ids"][0].tolist(), batch["labels"][0].tolist()
    supervised = [token for token, label in zip(input_ids, labels) if label != -100]
    assert all(label in (-100, token) for token, label in zip(input_ids, labels))
    expected = sorted(t for ids, mask in rows for t, m in zip(ids, mask) if m)
    assert sorted(supervised) == expected  # every supervised token of the packed samples, and nothing else


def test_packed_samples_restart_positions_and_carry_no_attention_mask(packed_batch):
    batch, rows, _ = packed_batch
    positions = batch["position_ids"][0]
    starts = (positions == 0).nonzero().flatten().tolist()
    assert len(starts) == len(rows)  # all six samples share one row, each starting at position 0
    lengths = torch.diff(torch.tensor(starts + [positions.numel()])).tolist()
    assert sorted(lengths) == sorted(len(ids) for ids, _ in rows)
    assert "attention_mask" not in batch


def test_the_loss_of_a_packed_row_equals_the_loss_of_its_samples_run_alone(packed_batch):
    batch, rows, model = packed_batch
    model.eval()  # no dropout; use_cache stays off so the packed-sequence detection applies (FACTS.md)
    model.config.use_cache = False
    with torch.no_grad():
        packed_loss = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                            labels=batch["labels"]).loss
        loss_sum, num_supervised = 0.0, 0
        for ids, mask in rows:
            input_ids = torch.tensor([ids])
            labels = torch.where(torch.tensor([mask]) == 1, input_ids, -100)
            alone = model(input_ids=input_ids, labels=labels).loss
            count = int((labels[0, 1:] != -100).sum())  # the model shifts labels by one
            loss_sum, num_supervised = loss_sum + alone.item() * count, num_supervised + count
    assert packed_loss.item() == pytest.approx(loss_sum / num_supervised, rel=1e-5)
