"""The question set and every model's answers to it, cached per model export hash and decoding settings.

A cached answer is keyed by (model sha256, system prompt + sampling + seed, question text): a re-run, or a run
beside this one that shares the cache, generates only the answers it does not have. The transformers path
seeds once per model call, so an answer is reproducible for the same questions, batch size and seed.
"""

from __future__ import annotations

import gc
import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from omegaconf import DictConfig

from med42_train.config import RECIPE_DIR, ConfigError
from med42_train.eval.checkpoints import RunModel
from med42_train.eval.generation import (Sampling, generate, generate_vllm, load_causal_lm, render_chat,
                                         use_vllm)
from med42_train.runtime.log import get_logger

log = get_logger()
DEMO_QUESTIONS = RECIPE_DIR / "demo" / "elo_questions.jsonl"


def questions_path(cfg: DictConfig) -> Path:
    path = DEMO_QUESTIONS if cfg.elo.questions == "demo" else Path(cfg.elo.questions).expanduser()
    if not path.is_file():
        raise ConfigError(f"elo.questions={cfg.elo.questions!r}: no file {path}; use `demo` or a jsonl file "
                          "with `id` and `question` on every line")
    return path


def load_questions(cfg: DictConfig) -> dict[str, str]:
    """{id: question} in file order, the first elo.num_questions of them."""
    questions: dict[str, str] = {}
    path = questions_path(cfg)
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        record = json.loads(line)
        if not isinstance(record.get("id"), str) or not isinstance(record.get("question"), str):
            raise ConfigError(f"{path}:{number}: every line needs a string `id` and `question`")
        if record["id"] in questions:
            raise ConfigError(f"{path}:{number}: question id {record['id']!r} appears twice; ids must be unique")
        questions[record["id"]] = record["question"]
    return dict(list(questions.items())[: cfg.elo.num_questions])


def sampling(cfg: DictConfig) -> Sampling:
    elo = cfg.elo
    return Sampling(elo.temperature, elo.top_k, elo.top_p, elo.max_new_tokens, cfg.seed)


def _cache_file(cfg: DictConfig, model: RunModel) -> Path:
    settings = {"system_prompt": cfg.elo.system_prompt, "sampling": asdict(sampling(cfg)),
                "batch_size": cfg.elo.batch_size, "engine": "vllm" if use_vllm() else "transformers"}
    settings_key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    model_key = (model.sha256 or hashlib.sha256(model.path.encode()).hexdigest())[:16]
    return Path(cfg.elo.cache_dir) / "answers" / f"{model_key}-{settings_key}.jsonl"


def _read_cache(path: Path) -> dict[str, str]:
    """{question text: answer}; a torn last line (a killed run) is ignored."""
    cached = {}
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            record = json.loads(line)
            cached[record["question"]] = record["answer"]
        except (json.JSONDecodeError, KeyError):
            continue
    return cached


def answer_all(cfg: DictConfig, model: RunModel, questions: dict[str, str]) -> tuple[dict[str, str], int]:
    """({question id: answer}, number generated now): the cached answers plus newly generated missing ones."""
    cache = _cache_file(cfg, model)
    cached = _read_cache(cache)
    missing = [qid for qid, text in questions.items() if text not in cached]
    if missing:
        log.info("elo: %s answers %d question(s) (%d cached)", model.label, len(missing), len(questions) - len(missing))
        new = _generate_answers(cfg, model, [questions[qid] for qid in missing])
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(cache, "a") as handle:
            for qid, answer in zip(missing, new):
                handle.write(json.dumps({"question": questions[qid], "answer": answer}) + "\n")
                cached[questions[qid]] = answer
    return {qid: cached[text] for qid, text in questions.items()}, len(missing)


def _generate_answers(cfg: DictConfig, model: RunModel, texts: list[str]) -> list[str]:
    conversations = [[{"role": "system", "content": cfg.elo.system_prompt}, {"role": "user", "content": text}]
                     for text in texts]
    trust = cfg.model.trust_remote_code
    if use_vllm():
        from transformers import AutoTokenizer

        prompts = render_chat(AutoTokenizer.from_pretrained(model.path, trust_remote_code=trust), conversations)
        return [a.strip() for a in generate_vllm(model.path, cfg.model.dtype, prompts, sampling(cfg), trust)]
    lm, tokenizer = load_causal_lm(model.path, cfg.model.dtype, trust)
    try:
        return [a.strip() for a in generate(lm, tokenizer, render_chat(tokenizer, conversations), sampling(cfg),
                                            cfg.elo.batch_size)]
    finally:
        del lm
        gc.collect()  # one model in memory at a time
