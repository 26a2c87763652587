"""Training metrics: the MFU formula by hand, token and padding counts on known batches, and per-source loss
on a real packed batch of Med42SFTTrainer checked against the samples run one by one."""

from __future__ import annotations

import pytest
import torch
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM
from trl import SFTConfig

from med42_train.data.source_index import build_source_index
from med42_train.data.tokenize import tokenize_sft
from med42_train.models.tokenizer import train_demo_tokenizer
from med42_train.train.metrics import (
    batch_token_stats, flops_params, mfu, resolve_peak_tflops, training_flops,
)
from med42_train.train.sft import Med42SFTTrainer


def test_training_flops_and_mfu_match_a_hand_computation():
    # Two packed samples of 3 and 5 tokens, 4 of whose positions the LM head projects; N_body = 1000 parameters,
    # N_head = 200, L = 2 layers, H = 8. Body 6 * 1000 * 8 = 48000; head 6 * 200 * 4 = 4800 (not * 8: the fused
    # head skips unsupervised positions); attention 12 * 2 * 8 * (9 + 25) = 6528; total 59328.
    flops = training_flops(num_tokens=8, num_supervised=4, sum_len_sq=3**2 + 5**2, body_params=1000,
                           head_params=200, num_layers=2, hidden_size=8)
    assert flops == pytest.approx(59328.0)
    # 2 s on 4 devices of 1e-9 TFLOP/s (1000 FLOP/s each): 59328 / (2 * 4 * 1000).
    assert mfu(flops, elapsed_s=2.0, world_size=4, peak_tflops_per_device=1e-9) == pytest.approx(7.416)
    assert mfu(flops, elapsed_s=2.0, world_size=4, peak_tflops_per_device=None) is None


@pytest.mark.parametrize("tied", [False, True])
def test_flops_params_split_the_body_from_the_lm_head(tied):
    vocab, hidden, inter, heads, kv_heads, layers = 50, 16, 24, 4, 2, 3
    model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
                                         num_hidden_layers=layers, num_attention_heads=heads,
                                         num_key_value_heads=kv_heads, tie_word_embeddings=tied))
    kv_dim = hidden // heads * kv_heads
    per_layer = 2 * hidden * hidden + 2 * hidden * kv_dim + 3 * hidden * inter + 2 * hidden  # attn, mlp, 2 norms
    # The body: every layer + the final norm; the head's matmul runs whether or not it shares the embedding.
    assert flops_params(model) == (layers * per_layer + hidden, vocab * hidden)


def test_peak_is_the_configured_one_and_absent_on_cpu():
    assert resolve_peak_tflops(312.0) == 312.0
    if not torch.cuda.is_available():
        assert resolve_peak_tflops(None) is None


def test_token_stats_of_a_padded_batch():
    batch = {"input_ids": torch.zeros(2, 4, dtype=torch.long),
             "attention_mask": torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])}
    num_real, num_padding, sum_len_sq, num_projected = batch_token_stats(batch).tolist()
    assert (num_real, num_padding, sum_len_sq, num_projected) == (5, 3, 3**2 + 2**2, 5)


def test_token_stats_of_a_padding_free_packed_row():
    batch = {"input_ids": torch.zeros(1, 8, dtype=torch.long),
             "position_ids": torch.tensor([[0, 1, 2, 0, 1, 2, 3, 4]]),
             "cu_seq_lens_q": torch.tensor([0, 3, 8], dtype=torch.int32)}
    assert batch_token_stats(batch).tolist() == [8, 0, 3**2 + 5**2, 8]


def test_the_lm_head_is_counted_where_the_fused_head_projects():
    # SFT: labels unshifted, position t is projected when label t + 1 is supervised.
    sft = {"input_ids": torch.zeros(1, 6, dtype=torch.long), "labels": torch.tensor([[-100, -100, 5, 6, -100, 7]]),
           "position_ids": torch.tensor([[0, 1, 2, 0, 1, 2]]), "cu_seq_lens_q": torch.tensor([0, 3, 6])}
    assert batch_token_stats(sft).tolist()[3] == 3
    # DPO: the completion mask marks the supervised tokens (TRL masks the labels with it).
    dpo = {"input_ids": torch.zeros(2, 4, dtype=torch.long), "attention_mask": torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]]),
           "completion_mask": torch.tensor([[0, 0, 1, 1], [0, 1, 1, 0]])}
    assert batch_token_stats(dpo).tolist()[3] == 4


# ---- per-source loss on a real trainer ----

def _conversations(topic: str, count: int):
    return [[{"role": "user", "content": f"{topic} question {i}?"},
             {"role": "assistant", "content": f"{topic} answer {i}, with {'more ' * i}detail."}]
            for i in range(count)]


@pytest.fixture(scope="module")
def trainer_and_samples(tmp_path_factory):
    conversations = {"cardiology": _conversations("Heart", 3), "dermatology": _conversations("Skin", 4)}
    texts = [m["content"] for convs in conversations.values() for c in convs for m in c] * 10
    tokenizer = train_demo_tokenizer(texts, bpe_vocab_size=300)
    rows = [(*tokenize_sft(tokenizer, c), source) for source, convs in conversations.items() for c in convs]
    dataset = Dataset.from_dict({"input_ids": [r[0] for r in rows], "assistant_masks": [r[1] for r in rows],
                                 "source": [r[2] for r in rows]})
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    model.config.use_cache = False
    args = SFTConfig(output_dir=str(tmp_path_factory.mktemp("sft")), packing=True, packing_strategy="bfd",
                     max_length=512, per_device_train_batch_size=1, use_cpu=True, report_to=[],
                     activation_checkpointing=False)
    names, index = build_source_index(dataset)
    trainer = Med42SFTTrainer(model=model, args=args, train_dataset=dataset.select_columns(
        ["input_ids", "assistant_masks"]), processing_class=tokenizer, source_names=names, source_index=index,
        peak_tflops_per_device=1.0)
    return trainer, rows


def _per_source_loss_one_by_one(model, rows) -> dict[str, tuple[float, int]]:
    """(loss sum, supervised tokens) per source, each sample run alone through plain transformers."""
    totals: dict[str, tuple[float, int]] = {}
    with torch.no_grad():
        for input_ids, mask, source in rows:
            labels = torch.tensor([t if m else -100 for t, m in zip(input_ids, mask)])
            num_supervised = int((labels[1:] != -100).sum())
            loss = model(input_ids=torch.tensor([input_ids]), labels=labels[None]).loss.item()
            loss_sum, count = totals.get(source, (0.0, 0))
            totals[source] = (loss_sum + loss * num_supervised, count + num_supervised)
    return totals


def test_per_source_loss_of_a_packed_batch_matches_the_samples_run_alone(trainer_and_samples):
    trainer, rows = trainer_and_samples
    batch = next(iter(trainer.get_train_dataloader()))
    assert batch["input_ids"].shape[0] == 1 and len(batch["cu_seq_lens_q"]) == len(rows) + 1  # one packed row
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, trainer._prepare_inputs(dict(batch))).item()
    trainer.log({"loss": loss})
    logs = trainer.state.log_history[-1]

    expected = _per_source_loss_one_by_one(trainer.model, rows)
    for source, (loss_sum, count) in expected.items():
        assert logs[f"loss/{source}"] == pytest.approx(loss_sum / count, abs=1e-5)
    # The token-weighted mean of the per-source losses is the batch loss.
    weighted = sum(logs[f"loss/{s}"] * count for s, (_, count) in expected.items())
    assert weighted / sum(count for _, count in expected.values()) == pytest.approx(loss, abs=1e-5)

    num_tokens = sum(len(ids) for ids, _, _ in rows)
    assert logs["num_tokens"] == num_tokens and logs["padding_fraction"] == 0.0
    assert logs["tokens_per_s"] > 0 and 0 < logs["mfu"] and logs["peak_memory_gib"] > 0
