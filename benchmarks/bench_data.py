"""Data-assembly throughput against the bare tokenizer, on the same texts.

    PYTHONPATH=. python benchmarks/bench_data.py [--repeats 3] [--out /tmp/bench_data]

Corpus: real upstream files from ../shared/realdata (wikidoc and ChatDoctor alpaca, ShareGPT, messages),
repeated `--repeats` times; each repeat shuffles the words inside every text (seeded), so dedup keeps the
copies and the tokenizer sees the same vocabulary. Tokenizer: Meta's Llama 3 (rebuilt from tokenizer.model).
Where realdata is absent it falls back to the demo recipe's files and a demo tokenizer, and says so.

Measures, in one run:
  (a) the bare tokenizer: batched encoding of the rendered chat texts (HF `tokenizer(texts)` and the Rust
      backend's `encode_batch`), ids only, no masks, nothing written;
  (b) the full data stage (`med42 data` in a fresh process, cold cache): parse, format, PHI screen,
      decontamination against the real benchmarks, tokenize with masks, length filter, dedup, write Arrow;
and prints tokens/s of each, the ratio (b)/(a), the projected wall time for 1B tokens on this machine, peak RSS,
and a per-step breakdown (each step timed alone on the same samples) to show where the time goes. (a) is timed
before and after (b) and averaged; the CPU ratio (tokens per CPU second of the stage's per-token phases vs of
encode_batch, all threads) is the steadier figure on a machine shared with other jobs.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import yaml

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

from med42_train.data.clean.decontaminate import Decontaminator  # noqa: E402
from med42_train.data.clean.dedup import ExactDedup, NearDedup  # noqa: E402
from med42_train.data.clean.phi import PhiScanner  # noqa: E402
from med42_train.data.recipe import load_recipe  # noqa: E402
from med42_train.data.screen import sample_text  # noqa: E402
from med42_train.data.sources import Example, iter_examples  # noqa: E402
from med42_train.data.tokenize import ChatEncoder, render_llama3  # noqa: E402

REALDATA = PROJECT_ROOT.parent / "shared" / "realdata"
REAL_SOURCES = {  # name -> (file, format)
    "wikidoc": ("medalpaca_wikidoc_patient_information_2000.json", "alpaca"),
    "chatdoctor": ("chatdoctor_genmedgpt5k_2000.json", "alpaca"),
    "sharegpt": ("fastchat_dummy_conversation_sharegpt.json", "sharegpt"),
    "messages": ("llamafactory_kto_en_demo_messages.json", "messages"),
}
REAL_BENCHMARKS = {
    "medqa_test": ("medqa_usmle_4options_phrases_no_exclude_test.jsonl", "medqa"),
    "pubmedqa": ("pubmedqa_ori_pqal.json", "pubmedqa"),
    "mmlu_professional_medicine": ("mmlu_medical/professional_medicine_test.csv", "mmlu_csv"),
}
BATCH_SIZE = 1024
# Phases of the stage whose time grows with the corpus; the rest (tokenizer load, plan, decontamination index,
# manifest and hashes) is a fixed cost that a 1B-token run pays once.
PER_TOKEN_PHASES = ("build", "dedup", "write")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="copies of the corpus (words shuffled per copy)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/med42_bench_data"))
    args = parser.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)

    recipe_file, tokenizer_dir, note = prepare(args.out, args.repeats)
    print(note)
    recipe = load_recipe(recipe_file)
    from transformers import AutoTokenizer

    from med42_train.models.tokenizer import finalize

    tokenizer = finalize(AutoTokenizer.from_pretrained(str(tokenizer_dir)))  # as the data stage loads it
    examples = [item for source in recipe.sft for item in iter_examples(source) if isinstance(item, Example)]
    texts = [render_llama3(example.messages, tokenizer.bos_token)[0] for example in examples]
    print(f"corpus: {len(texts):,} samples, {sum(map(len, texts)) / 1e6:.1f} M characters")

    # The bare encoder is timed before and after the stage and averaged: on a shared machine the load drifts
    # over the minute between them, and timed on one side only the ratio follows that drift.
    bare_before = bare_tokenizer(tokenizer, texts)
    assembly = full_assembly(args.out, recipe_file, tokenizer_dir)
    bare_after = bare_tokenizer(tokenizer, texts)
    print(f"bare encode_batch before / after the stage: {bare_before['encode_batch_tokens_per_s'] / 1e6:.3f} / "
          f"{bare_after['encode_batch_tokens_per_s'] / 1e6:.3f} M tokens/s (load drift; the ratios use the mean)")
    report({key: (bare_before[key] + bare_after[key]) / 2 for key in bare_before}, assembly)
    breakdown(recipe, tokenizer, examples, texts)


# ---------------------------------------------------------------- corpus

def prepare(out: Path, repeats: int) -> tuple[Path, Path, str]:
    if not (REALDATA / "README.md").is_file():
        return demo_fallback(out, repeats)
    from med42_train.models.tokenizer import tokenizer_from_tiktoken

    tokenizer_dir = out / "llama3_tokenizer"
    tokenizer_from_tiktoken(REALDATA / "llama3_tokenizer.model", REALDATA / "llama3_8b_instruct_tokenizer_config.json",
                            tokenizer_dir)
    sources = {name: {"path": str(write_repeated(out, name, REALDATA / file, repeats)), "format": fmt}
               for name, (file, fmt) in REAL_SOURCES.items()}
    benchmarks = {name: {"path": str(REALDATA / file), "format": fmt} for name, (file, fmt) in REAL_BENCHMARKS.items()}
    recipe = {"name": "bench", "seed": 1, "on_error": "skip", "sft": sources,
              "clean": {"decontamination": {"benchmarks": benchmarks}}}
    path = out / "bench_recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path, tokenizer_dir, (f"real data from {REALDATA}, real Llama 3 tokenizer, {repeats} repeats, "
                                 f"decontamination against {', '.join(REAL_BENCHMARKS)}")


def demo_fallback(out: Path, repeats: int) -> tuple[Path, Path, str]:
    from med42_train.models.tokenizer import train_demo_tokenizer

    demo = load_recipe(PROJECT_ROOT / "data_recipes" / "demo.yaml")
    sources = {s.name: {"path": str(write_repeated(out, s.name, s.path, repeats * 20)), "format": s.format}
               for s in demo.sft}
    corpus = (json.dumps(json.loads(line)) for s in sources.values() for line in open(s["path"]))
    tokenizer_dir = out / "demo_tokenizer"
    train_demo_tokenizer(corpus, 2048).save_pretrained(str(tokenizer_dir))
    path = out / "bench_recipe.yaml"
    path.write_text(yaml.safe_dump({"name": "bench", "seed": 1, "on_error": "skip", "sft": sources}))
    return path, tokenizer_dir, ("NOTE: ../shared/realdata is absent: demo recipe files and a demo tokenizer "
                                 "(numbers are not comparable with the real-data run)")


def write_repeated(out: Path, name: str, source_file: Path, repeats: int) -> Path:
    """The file's records as JSON lines, `repeats` times; copy r > 0 has the words of every string shuffled."""
    text = Path(source_file).read_text(encoding="utf-8")
    records = json.loads(text) if text.lstrip().startswith("[") else [json.loads(l) for l in text.splitlines() if l]
    path = out / f"{name}.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for repeat in range(repeats):
            rng = random.Random(repeat)
            for record in records:
                handle.write(json.dumps(shuffled(record, rng) if repeat else record, ensure_ascii=False) + "\n")
    return path


def shuffled(value, rng: random.Random):
    if isinstance(value, str):
        words = value.split(" ")
        rng.shuffle(words)
        return " ".join(words)
    if isinstance(value, dict):
        return {k: v if k in ("from", "role") else shuffled(v, rng) for k, v in value.items()}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


# ---------------------------------------------------------------- measurements

def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed_with_cpu(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process: all threads, the Rust tokenizer's included)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - start_cpu


def in_batches(fn: Callable[[list], object], items: list) -> Callable[[], None]:
    return lambda: [fn(items[i:i + BATCH_SIZE]) for i in range(0, len(items), BATCH_SIZE)]


def bare_tokenizer(tokenizer, texts: list[str]) -> dict[str, float]:
    backend = tokenizer.backend_tokenizer
    num_tokens = sum(len(ids) for i in range(0, len(texts), BATCH_SIZE)
                     for ids in tokenizer(texts[i:i + BATCH_SIZE], add_special_tokens=False)["input_ids"])
    encode_batch_s, encode_batch_cpu_s = timed_with_cpu(in_batches(
        lambda b: [e.ids for e in backend.encode_batch(b, add_special_tokens=False)], texts))
    seconds = {
        "hf_call": timed(in_batches(lambda b: tokenizer(b, add_special_tokens=False)["input_ids"], texts)),
        "encode_batch": encode_batch_s,
        "encode_batch_fast": timed(in_batches(
            lambda b: [e.ids for e in backend.encode_batch_fast(b, add_special_tokens=False)], texts)),
    }
    return {"num_tokens": num_tokens, "encode_batch_tokens_per_cpu_s": num_tokens / encode_batch_cpu_s,
            **{f"{k}_tokens_per_s": num_tokens / v for k, v in seconds.items()}}


def full_assembly(out: Path, recipe_file: Path, tokenizer_dir: Path) -> dict[str, float]:
    run_dir = out / "run"
    command = [sys.executable, "-m", "med42_train", "data", f"run_dir={run_dir}", f"data.recipe={recipe_file}",
               f"model.name_or_path={tokenizer_dir}", "logger.wandb=false", "data.max_length=8192",
               f"data.cache_dir={out / 'cache'}"]
    subprocess.run(command, cwd=PROJECT_ROOT, check=True, capture_output=True, text=True)
    manifest = json.loads((run_dir / "data" / "manifest.json").read_text())
    num_tokens = sum(row["num_tokens"] for row in manifest["sources"])
    num_read = sum(row["read"] for row in manifest["sources"])
    wall_s = manifest["timings"]["wall_s"]
    phase_s = manifest["phase_s"]
    per_token_s = sum(phase_s.get(phase, 0.0) for phase in PER_TOKEN_PHASES)
    per_token_cpu_s = sum(manifest.get("phase_cpu_s", {}).get(phase, 0.0) for phase in PER_TOKEN_PHASES)
    return {"per_token_tokens_per_cpu_s": num_tokens / per_token_cpu_s if per_token_cpu_s else None,
            "num_tokens": num_tokens, "num_read": num_read, "wall_s": wall_s, "tokens_per_s": num_tokens / wall_s,
            "phase_s": phase_s, "fixed_s": wall_s - per_token_s, "per_token_tokens_per_s": num_tokens / per_token_s,
            "peak_rss_mib": manifest["peak_rss_mib"],
            "dropped": {r["source"]: r["dropped_by_reason"] for r in manifest["sources"] if r["dropped_by_reason"]}}


def report(bare: dict, assembly: dict) -> None:
    print(f"\n(a) bare tokenizer, {bare['num_tokens']:,.0f} tokens (mean of before and after):")
    for key in ("hf_call", "encode_batch", "encode_batch_fast"):
        print(f"    {key:<18} {bare[f'{key}_tokens_per_s'] / 1e6:6.3f} M tokens/s")
    print(f"(b) full data stage, {assembly['num_tokens']:,} tokens written from {assembly['num_read']:,} records "
          f"in {assembly['wall_s']:.1f} s: {assembly['tokens_per_s'] / 1e6:.3f} M tokens/s, "
          f"peak RSS {assembly['peak_rss_mib']:.0f} MiB")
    print(f"    dropped: {assembly['dropped']}")
    print(f"    stage phases (s): {', '.join(f'{k} {v:.1f}' for k, v in assembly['phase_s'].items())}; fixed "
          f"{assembly['fixed_s']:.1f} s, per-token phases {assembly['per_token_tokens_per_s'] / 1e6:.3f} M tokens/s")
    for key in ("hf_call", "encode_batch", "encode_batch_fast"):
        print(f"ratio (b)/(a:{key}) = {assembly['tokens_per_s'] / bare[f'{key}_tokens_per_s']:.2f} whole stage, "
              f"{assembly['per_token_tokens_per_s'] / bare[f'{key}_tokens_per_s']:.2f} per-token phases")
    if assembly["per_token_tokens_per_cpu_s"]:
        print(f"CPU ratio, per-token phases vs encode_batch: "
              f"{assembly['per_token_tokens_per_cpu_s'] / bare['encode_batch_tokens_per_cpu_s']:.2f} "
              f"({assembly['per_token_tokens_per_cpu_s'] / 1e6:.3f} vs {bare['encode_batch_tokens_per_cpu_s'] / 1e6:.3f}"
              f" M tokens per CPU second: the wall ratio where both use the cores equally well, and unlike it barely "
              f"moved by other jobs on the machine)")
    projected_s = assembly["fixed_s"] + 1e9 / assembly["per_token_tokens_per_s"]
    print(f"projection for 1B tokens on this machine: {projected_s / 60:.0f} min "
          f"(fixed {assembly['fixed_s']:.0f} s + 1B / per-token rate; bare encode_batch alone: "
          f"{1e9 / bare['encode_batch_tokens_per_s'] / 60:.0f} min)")


def breakdown(recipe, tokenizer, examples: list, texts: list[str]) -> None:
    """Each step alone on the same samples, in seconds (the stage interleaves them; shares are indicative)."""
    sample_texts = [sample_text(example) for example in examples]
    phi, exact = PhiScanner(), ExactDedup()
    near = NearDedup(0.85, 128, 5, seed=1)
    decontaminator = Decontaminator(13)
    index_s = timed(lambda: [decontaminator.add_benchmark(b.name, ((e.record_id or e.position, e.messages[0]["content"])
                                                                   for e in iter_examples(b.as_source())
                                                                   if isinstance(e, Example)))
                             for b in recipe.clean.decontamination.benchmarks])
    encoder = ChatEncoder(tokenizer)
    steps = {
        "read + parse + format (iter_examples)": timed(lambda: [list(iter_examples(s)) for s in recipe.sft]),
        "render chat text": timed(lambda: [render_llama3(e.messages, tokenizer.bos_token) for e in examples]),
        "PHI scan": timed(lambda: [phi.scan(t) for t in sample_texts]),
        "decontamination index (once)": index_s,
        "decontamination match (batched)": timed(in_batches(decontaminator.match_many, sample_texts)),
        "exact-dedup keys": timed(lambda: [exact.key(t) for t in sample_texts]),
        "MinHash signatures (batched)": timed(in_batches(near.signatures, sample_texts)),
        "tokenize with masks (ChatEncoder)": timed(in_batches(
            lambda b: encoder.encode_sft([e.messages for e in b]), examples)),
        "  of which bare encode_batch": timed(in_batches(
            lambda b: tokenizer.backend_tokenizer.encode_batch(b, add_special_tokens=False), texts)),
    }
    total = sum(v for k, v in steps.items() if not k.startswith("  "))
    print("\nper-step breakdown (each step alone, same samples):")
    for name, seconds in steps.items():
        print(f"    {name:<40} {seconds:7.2f} s  {seconds / total:6.1%}")


if __name__ == "__main__":
    main()
