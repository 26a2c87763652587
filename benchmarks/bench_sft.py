"""SFT step time of our trainer (Med42SFTTrainer: throughput/MFU metrics + per-source loss) against a bare TRL
SFTTrainer, same model, same packed data, same arguments, in one run. Prints tokens/s, MFU and the overhead ratio.

CPU (anywhere):   python benchmarks/bench_sft.py
H100 (8B shape):  python benchmarks/bench_sft.py --shape llama3-8b --num-layers 4 --device cuda --seq-len 8192
Shapes only:      python benchmarks/bench_sft.py --shape llama3-8b --num-layers 4 --dry-run
Hooks only:       python benchmarks/bench_sft.py --step-only --num-layers 2 --seq-len 256 --rounds 6

Rounds alternate which trainer goes first; each round trains `--steps` timed steps after `--warmup-steps`, and a
step's time is the period between two consecutive step ends (data loading, collation, logging included). The
overhead is the median over rounds of (our median step time / bare median step time) - 1; the ratio of the two
fastest steps is printed too (other jobs on a shared machine only ever add time).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
from datasets import Dataset
from transformers import LlamaConfig, LlamaForCausalLM, TrainerCallback
from trl import SFTConfig, SFTTrainer

from med42_train.data.source_index import build_source_index
from med42_train.models.tokenizer import train_demo_tokenizer
from med42_train.train.metrics import (
    batch_token_stats, flops_params, mfu, resolve_peak_tflops, training_flops,
)
from med42_train.train.sft import Med42SFTTrainer

SHAPES = {
    # Llama 3 8B (meta-llama/Meta-Llama-3-8B config.json); layers set by --num-layers to fit one GPU.
    "llama3-8b": dict(vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_attention_heads=32,
                      num_key_value_heads=8, rope_theta=500000.0),
    # Small enough for a few steps per second on 2 CPU cores.
    "tiny": dict(vocab_size=2048, hidden_size=256, intermediate_size=688, num_attention_heads=8,
                 num_key_value_heads=4),
}


class StepTimer(TrainerCallback):
    """Periods between consecutive step ends, after the warm-up steps."""

    def __init__(self, warmup_steps: int):
        self.warmup_steps, self.last, self.periods = warmup_steps, None, []

    def on_step_end(self, args, state, control, **kwargs):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        now = time.perf_counter()
        if self.last is not None and state.global_step > self.warmup_steps:
            self.periods.append(now - self.last)
        self.last = now


def model_config(args) -> LlamaConfig:
    return LlamaConfig(**SHAPES[args.shape], num_hidden_layers=args.num_layers,
                       max_position_embeddings=max(args.seq_len, 2048), use_cache=False,
                       attn_implementation=args.attn)


def synthetic_dataset(args, vocab_size: int, num_rows: int) -> Dataset:
    """Pre-tokenized samples of random lengths from two sources, the assistant part supervised, like `med42 data`."""
    generator = torch.Generator().manual_seed(0)
    rows = {"input_ids": [], "assistant_masks": [], "source": []}
    num_tokens = 0
    while num_tokens < num_rows * args.seq_len:
        length = int(torch.randint(args.seq_len // 16, args.seq_len // 2, (1,), generator=generator))
        prompt = length // 3
        rows["input_ids"].append(torch.randint(300, vocab_size, (length,), generator=generator).tolist())
        rows["assistant_masks"].append([0] * prompt + [1] * (length - prompt))
        rows["source"].append("source_a" if len(rows["source"]) % 3 else "source_b")
        num_tokens += length
    return Dataset.from_dict(rows)


def make_trainer(kind: str, args, dataset: Dataset, tokenizer, output_dir: str):
    on_cuda = args.device == "cuda"
    torch.manual_seed(0)
    with torch.device(args.device):
        model = LlamaForCausalLM(model_config(args)).to(torch.bfloat16 if on_cuda else torch.float32)
    sft_args = SFTConfig(output_dir=output_dir, packing=True, packing_strategy="bfd", max_length=args.seq_len,
                         per_device_train_batch_size=1, max_steps=args.warmup_steps + args.steps + 1,
                         logging_steps=args.logging_steps, save_strategy="no", report_to=[], bf16=on_cuda,
                         use_cpu=not on_cuda, activation_checkpointing=False, disable_tqdm=True,
                         learning_rate=1e-5, dataloader_num_workers=0, seed=0)
    timer = StepTimer(args.warmup_steps)
    train = dataset.select_columns(["input_ids", "assistant_masks"])
    if kind == "bare":
        trainer = SFTTrainer(model=model, args=sft_args, train_dataset=train, processing_class=tokenizer,
                             callbacks=[timer])
    else:
        names, index = build_source_index(dataset)
        trainer = Med42SFTTrainer(model=model, args=sft_args, train_dataset=train, processing_class=tokenizer,
                                  callbacks=[timer], source_names=names, source_index=index,
                                  peak_tflops_per_device=args.peak_tflops)
    return trainer, timer


def run_round(trainer, timer) -> list[float]:
    timer.last, timer.periods = None, []
    trainer.train()
    return timer.periods


def step_only(args, trainers) -> None:
    """training_step (forward, loss, backward; no data loading, no optimizer) of both trainers on one batch,
    interleaved; the fastest repetition of each is the least disturbed by other jobs."""
    times = {kind: [] for kind in trainers}
    batches = {kind: next(iter(trainer.get_train_dataloader())) for kind, (trainer, _) in trainers.items()}
    for trainer, _ in trainers.values():
        trainer.model.train()
        trainer.current_gradient_accumulation_steps = 1  # set by the training loop, which is skipped here
    for repetition in range(args.rounds * args.steps):
        for kind in (("bare", "ours") if repetition % 2 else ("ours", "bare")):
            trainer = trainers[kind][0]
            start = time.perf_counter()
            trainer.training_step(trainer.model, dict(batches[kind]))
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[kind].append(time.perf_counter() - start)
    for kind, values in times.items():
        fastest_ms, median_ms = min(values) * 1e3, statistics.median(values) * 1e3
        print(f"{kind:>5} training_step: fastest {fastest_ms:.1f} ms, median {median_ms:.1f} ms")
    print(f"overhead from the fastest: {min(times['ours']) / min(times['bare']) - 1:+.2%}")


def dry_run(args) -> None:
    with torch.device("meta"):
        model = LlamaForCausalLM(model_config(args))
    body_params, head_params = flops_params(model)
    # Every token supervised: the most the LM head can cost.
    flops_per_token = training_flops(args.seq_len, args.seq_len, args.seq_len ** 2, body_params, head_params,
                                     args.num_layers, model.config.hidden_size) / args.seq_len
    print(f"{args.shape} x {args.num_layers} layers: {sum(p.numel() for p in model.parameters()) / 1e9:.2f} B "
          f"parameters, {body_params / 1e9:.2f} B in the body, {head_params / 1e9:.2f} B in the LM head; "
          f"{flops_per_token / 1e9:.1f} GFLOP per token at one {args.seq_len}-token sample per row")


def main() -> None:
    args = parse_args()
    if args.dry_run:
        return dry_run(args)
    tokenizer = train_demo_tokenizer(["benchmark text for the pad token"] * 4, bpe_vocab_size=300)
    dataset = synthetic_dataset(args, model_config(args).vocab_size, args.warmup_steps + args.steps + 2)
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {kind: make_trainer(kind, args, dataset, tokenizer, f"{tmp}/{kind}") for kind in ("bare", "ours")}
        if args.step_only:
            return step_only(args, trainers)
        ratios, step_s = [], {"bare": [], "ours": []}
        for round_index in range(args.rounds):
            order = ("bare", "ours") if round_index % 2 == 0 else ("ours", "bare")
            periods = {kind: run_round(*trainers[kind]) for kind in order}
            times = {kind: statistics.median(periods[kind]) for kind in order}
            ratios.append(times["ours"] / times["bare"])
            for kind in times:
                step_s[kind].extend(periods[kind])
            print(f"round {round_index}: bare {times['bare'] * 1e3:.1f} ms/step, ours {times['ours'] * 1e3:.1f} "
                  f"ms/step, ratio {ratios[-1]:.4f}", flush=True)
        report(args, trainers["ours"][0], step_s, ratios)


def per_step_work(args, trainer) -> tuple[float, float]:
    """(non-padding tokens, training FLOPs) of an average step, from the batches the trainers really get."""
    batches = [batch for _, batch in zip(range(args.warmup_steps + args.steps), trainer.get_train_dataloader())]
    stats = torch.stack([batch_token_stats(batch).cpu() for batch in batches]).mean(dim=0).tolist()
    config = trainer.model.config
    flops = training_flops(stats[0], stats[3], stats[2], *flops_params(trainer.model), config.num_hidden_layers,
                           config.hidden_size)
    return stats[0], flops


def report(args, ours, step_s: dict[str, list[float]], ratios: list[float]) -> None:
    tokens_per_step, flops_per_step = per_step_work(args, ours)
    peak_tflops = resolve_peak_tflops(args.peak_tflops)
    print(f"\nshape {args.shape}, {args.num_layers} layers, seq {args.seq_len}, device {args.device}, "
          f"{args.rounds} rounds x {args.steps} steps, {tokens_per_step:,.0f} tokens/step")
    for kind in ("bare", "ours"):
        median_s = statistics.median(step_s[kind])
        utilisation = mfu(flops_per_step, median_s, 1, peak_tflops)
        mfu_text = f"MFU {utilisation:.1%} of {peak_tflops:g} TFLOP/s" if utilisation is not None else \
            "MFU n/a (no peak on CPU; pass --peak-tflops)"
        print(f"{kind:>5}: {median_s * 1e3:.1f} ms/step, {tokens_per_step / median_s:,.0f} tokens/s, {mfu_text}")
    overhead = statistics.median(ratios) - 1
    print(f"overhead of ours vs bare TRL: {overhead:+.2%} (median of per-round ratios; goal < 3%)")
    # On a shared machine other jobs only ever add time: the fastest steps are the least disturbed estimate.
    fastest = min(step_s["ours"]) / min(step_s["bare"]) - 1
    print(f"overhead from the fastest step of each: {fastest:+.2%}")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="tiny")
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--seq-len", type=int, default=512, help="packed row length (8192 for the paper)")
    parser.add_argument("--attn", default="sdpa", help="sdpa, or flash_attention_2 where installed")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--logging-steps", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="dense bf16 peak per device; default 989 (H100 SXM) on CUDA, none on CPU")
    parser.add_argument("--dry-run", action="store_true", help="build the shape on the meta device and stop")
    parser.add_argument("--step-only", action="store_true",
                        help="time training_step alone on one batch (rounds x steps interleaved repetitions)")
    return parser.parse_args()


if __name__ == "__main__":
    main()
