"""A stand-in for a model in lm-eval: the Llama 3 chat format, and log-likelihoods chosen by the test."""

from __future__ import annotations

from typing import Callable

from lm_eval.api.model import LM

from med42_train.config import load_config
from med42_train.eval import harness
from med42_train.eval.task_defs import TASK_DIR
from med42_train.models.chat import BOS, END_HEADER, EOT, META_LLAMA3_TEMPLATE, START_HEADER


class FakeLM(LM):
    """Scores each (context, continuation) request with `score`; renders chats in Meta's Llama 3 format."""

    def __init__(self, score: Callable[[str, str], float]):
        super().__init__()
        self.score = score
        self.requests: list[tuple[str, str]] = []

    def loglikelihood(self, requests):
        self.requests += [request.args for request in requests]
        return [(self.score(*request.args), False) for request in requests]

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError

    def generate_until(self, requests):
        raise NotImplementedError

    def apply_chat_template(self, chat_history, add_generation_prompt=True) -> str:
        turns = "".join(f"{START_HEADER}{m['role']}{END_HEADER}\n\n{m['content'].strip()}{EOT}" for m in chat_history)
        return BOS + turns + (f"{START_HEADER}assistant{END_HEADER}\n\n" if add_generation_prompt else "")

    @property
    def tokenizer_name(self) -> str:
        return "fake-llama3"

    def chat_template(self, chat_template=False) -> str:
        return META_LLAMA3_TEMPLATE


def evaluate_fake(tmp_path, lm: FakeLM, tasks: list[str], overrides: list[str], limit: int | None = None) -> dict:
    """The eval stage's harness call (task -> result with samples and protocol) on a fake LM."""
    cfg = load_config([f"run_dir={tmp_path / 'run'}", *overrides, f"eval.limit={limit or 'null'}"])
    return harness.evaluate(cfg, lm, tasks, TASK_DIR)
