"""A stand-in for a model in lm-eval: the Llama 3 chat format, and log-likelihoods chosen by the test."""

from __future__ import annotations

from typing import Callable

import jinja2
from lm_eval.api.model import LM

from med42_train.models.chat import BOS, META_LLAMA3_TEMPLATE


class FakeLM(LM):
    """Scores each (context, continuation) request with `score`; renders chats with Meta's Llama 3 template."""

    def __init__(self, score: Callable[[str, str], float]):
        super().__init__()
        self.score = score
        self.requests: list[tuple[str, str]] = []
        self._template = jinja2.Environment().from_string(META_LLAMA3_TEMPLATE)

    def loglikelihood(self, requests):
        self.requests += [request.args for request in requests]
        return [(self.score(*request.args), False) for request in requests]

    def loglikelihood_rolling(self, requests):
        raise NotImplementedError

    def generate_until(self, requests):
        raise NotImplementedError

    def apply_chat_template(self, chat_history, add_generation_prompt=True) -> str:
        return self._template.render(messages=chat_history, bos_token=BOS,
                                     add_generation_prompt=add_generation_prompt)

    @property
    def tokenizer_name(self) -> str:
        return "fake-llama3"

    def chat_template(self, chat_template=False) -> str:
        return META_LLAMA3_TEMPLATE
