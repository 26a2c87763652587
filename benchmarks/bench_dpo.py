"""DPO training throughput with a precomputed reference vs a live one vs SFT, same model and same sequences, in
one run; plus the reference pass's own time and each mode's peak memory.

CPU (anywhere):   PYTHONPATH=. python benchmarks/bench_dpo.py
H100 (8B shape):  PYTHONPATH=. python benchmarks/bench_dpo.py --shape llama3-8b --num-layers 4 --device cuda \\
                      --seq-len 4096 --pairs-per-batch 2 --attn flash_attention_2

Each mode trains in a fresh subprocess (so its peak memory is its own: CUDA max allocated, or peak RSS on CPU),
rounds alternate the order of the modes, and a step's time is the period between two consecutive step ends after
the warm-up. Modes:
  sft           TRL SFTTrainer on the pairs' sequences (prompt + chosen, prompt + rejected, unpacked, padded as
                DPO pads them): the same tokens per step, the supervised ones the responses
  precomputed   our PretokenizedDPOTrainer reading ref_chosen_logps / ref_rejected_logps columns (no reference)
  live          the same trainer with a frozen reference model run beside the policy at every step
Tokens/s counts the non-padding tokens the policy processes (both sequences of each pair).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

import torch
from datasets import Dataset
from transformers import LlamaForCausalLM
from trl import DPOConfig, SFTConfig, SFTTrainer

from benchmarks.bench_sft import SHAPES, StepTimer, model_config
from med42_train.models.tokenizer import train_demo_tokenizer
from med42_train.train import reference as ref
from med42_train.train.dpo import PretokenizedDPOTrainer
from med42_train.train.metrics import flops_params, mfu, peak_memory_gib, resolve_peak_tflops, training_flops

MODES = ("sft", "precomputed", "live")


def synthetic_pairs(args, vocab_size: int, num_pairs: int) -> Dataset:
    """Prompts of a quarter of seq_len, responses of random lengths up to three eighths, like chat pairs."""
    generator = torch.Generator().manual_seed(0)

    def ids(low: int, high: int) -> list[int]:
        length = int(torch.randint(low, high, (1,), generator=generator))
        return torch.randint(300, vocab_size, (length,), generator=generator).tolist()

    quarter = args.seq_len // 4
    rows = [{"prompt_ids": ids(quarter // 2, quarter), "chosen_ids": ids(quarter // 2, 3 * args.seq_len // 8),
             "rejected_ids": ids(quarter // 2, 3 * args.seq_len // 8)} for _ in range(num_pairs)]
    return Dataset.from_list(rows)


def build_model(args):
    torch.manual_seed(0)
    with torch.device(args.device):
        return LlamaForCausalLM(model_config(args)).to(torch.bfloat16 if args.device == "cuda" else torch.float32)


def common_args(args, output_dir: str) -> dict:
    on_cuda = args.device == "cuda"
    return dict(output_dir=output_dir, per_device_train_batch_size=args.pairs_per_batch,
                max_steps=args.warmup_steps + args.steps + 1, logging_steps=args.steps, save_strategy="no",
                report_to=[], bf16=on_cuda, use_cpu=not on_cuda, activation_checkpointing=False,
                disable_tqdm=True, learning_rate=1e-6, dataloader_num_workers=0, seed=0)


def sft_trainer(args, pairs: Dataset, tokenizer, output_dir: str, timer):
    def sequences(batch):
        out = {"input_ids": [], "assistant_masks": []}
        for prompt, *responses in zip(batch["prompt_ids"], batch["chosen_ids"], batch["rejected_ids"]):
            for response in responses:
                out["input_ids"].append(prompt + response)
                out["assistant_masks"].append([0] * len(prompt) + [1] * len(response))
        return out

    dataset = pairs.map(sequences, batched=True, remove_columns=pairs.column_names)
    config = SFTConfig(**{**common_args(args, output_dir), "per_device_train_batch_size": 2 * args.pairs_per_batch},
                       packing=False, max_length=args.seq_len, shuffle_dataset=False)
    return SFTTrainer(model=build_model(args), args=config, train_dataset=dataset, processing_class=tokenizer,
                      callbacks=[timer])


def dpo_trainer(args, mode: str, pairs: Dataset, tokenizer, output_dir: str, timer) -> tuple:
    config = DPOConfig(**common_args(args, output_dir), max_length=args.seq_len, beta=0.1,
                       truncation_mode=ref.TRUNCATION_MODE, precompute_ref_log_probs=False)
    trainer = PretokenizedDPOTrainer(model=build_model(args), args=config, train_dataset=pairs,
                                     processing_class=tokenizer, callbacks=[timer],
                                     precomputed_reference=mode == "precomputed",
                                     peak_tflops_per_device=args.peak_tflops)
    reference = ref.prepare_reference(build_model(args), trainer.accelerator)
    if mode == "live":
        trainer.ref_model = reference
        return trainer, None
    started = time.perf_counter()
    chosen, rejected = ref.compute_reference_logps(trainer, reference, pairs, args.pairs_per_batch)
    pass_s = time.perf_counter() - started
    del reference
    ref.release_memory()
    trainer.train_dataset = ref.with_reference_columns(pairs, chosen, rejected)
    return trainer, pass_s


def run_mode(args) -> dict:
    """One mode in this process: median step time, tokens per step, tokens/s, MFU, peak memory."""
    tokenizer = train_demo_tokenizer(["benchmark text for the pad token"] * 4, bpe_vocab_size=300)
    pairs = synthetic_pairs(args, model_config(args).vocab_size, args.pairs_per_batch * (args.warmup_steps +
                                                                                        args.steps + 2))
    timer = StepTimer(args.warmup_steps)
    with tempfile.TemporaryDirectory() as tmp:
        if args.mode == "sft":
            trainer, pass_s = sft_trainer(args, pairs, tokenizer, tmp, timer), None
        else:
            trainer, pass_s = dpo_trainer(args, args.mode, pairs, tokenizer, tmp, timer)
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        trainer.train()
    step_s = statistics.median(timer.periods)
    tokens_per_step, flops = per_step_work(args, trainer, pairs)
    return {"mode": args.mode, "step_s": step_s, "tokens_per_s": tokens_per_step / step_s,
            "mfu": mfu(flops, step_s, 1, resolve_peak_tflops(args.peak_tflops)), "peak_memory_gib": peak_memory_gib(),
            "reference_pass_s": pass_s, "num_pairs": len(pairs)}


def per_step_work(args, trainer, pairs: Dataset) -> tuple[float, float]:
    """(tokens, the policy's training FLOPs) of an average step: both sequences of each pair, the LM head on the
    response tokens only (where TRL's fused head projects); a live reference's forward is not counted."""
    sequences = [(len(p["prompt_ids"]), len(p[column])) for p in pairs for column in ("chosen_ids", "rejected_ids")]
    scale = 2 * args.pairs_per_batch / len(sequences)  # sequences per step / sequences in the corpus
    tokens = sum(prompt + response for prompt, response in sequences) * scale
    supervised = sum(response for _, response in sequences) * scale
    sum_len_sq = sum((prompt + response) ** 2 for prompt, response in sequences) * scale
    config = trainer.model.config
    flops = training_flops(tokens, supervised, sum_len_sq, *flops_params(trainer.model), config.num_hidden_layers,
                           config.hidden_size)
    return tokens, flops


def main() -> None:
    args = parse_args()
    if args.mode:
        print(json.dumps(run_mode(args)))
        return
    results = {mode: [] for mode in MODES}
    for round_index in range(args.rounds):
        order = MODES if round_index % 2 == 0 else MODES[::-1]
        for mode in order:
            output = subprocess.run([sys.executable, *sys.argv, "--mode", mode], capture_output=True, text=True,
                                    check=True).stdout
            results[mode].append(json.loads(output.strip().splitlines()[-1]))
            print(f"round {round_index} {mode:>11}: {results[mode][-1]['tokens_per_s']:,.0f} tokens/s", flush=True)
    report(args, results)


def report(args, results: dict) -> None:
    speed = {mode: statistics.median(r["tokens_per_s"] for r in runs) for mode, runs in results.items()}
    print(f"\nshape {args.shape}, {args.num_layers} layers, seq {args.seq_len}, {args.pairs_per_batch} pairs per "
          f"batch, device {args.device}, {args.rounds} rounds x {args.steps} steps (medians over rounds)")
    for mode, runs in results.items():
        utilisation = statistics.median(r["mfu"] for r in runs) if runs[0]["mfu"] is not None else None
        mfu_text = f", MFU {utilisation:.1%}" if utilisation is not None else ", MFU n/a on CPU"
        print(f"{mode:>11}: {speed[mode]:,.0f} tokens/s{mfu_text}, peak memory "
              f"{max(r['peak_memory_gib'] for r in runs):.2f} GiB")
    pass_s = statistics.median(r["reference_pass_s"] for r in results["precomputed"])
    num_pairs = results["precomputed"][0]["num_pairs"]
    print(f"reference pass: {pass_s:.2f} s for {num_pairs} pairs ({num_pairs / pass_s:,.1f} pairs/s)")
    print(f"DPO precomputed / SFT tokens/s: {speed['precomputed'] / speed['sft']:.3f} (goal >= 0.9)")
    print(f"DPO precomputed / DPO live tokens/s: {speed['precomputed'] / speed['live']:.3f}")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--seq-len", type=int, default=512, help="max length of prompt + response")
    parser.add_argument("--pairs-per-batch", type=int, default=4)
    parser.add_argument("--attn", default="sdpa", help="sdpa, or flash_attention_2 where installed")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per round")
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peak-tflops", type=float, default=None)
    parser.add_argument("--mode", choices=MODES, default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    main()
