"""lm-evaluation-harness for one model: the LM object, one `simple_evaluate` over the tasks it lacks, results split
per task, and the protocol block that makes two runs comparable.
"""

from __future__ import annotations

import hashlib
import os
from importlib import metadata
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from med42_train.config import local_data_files
from med42_train.eval import task_defs
from med42_train.runtime.log import get_logger

log = get_logger()
# Per-task sections of lm-eval's results dict (each maps task or group name -> value).
PER_TASK_KEYS = ("results", "groups", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better",
                 "n-samples")


class AnswerBoundary:
    """Score the option text alone: the context ends where the answer starts.

    lm-eval moves a context's trailing whitespace into the continuation (api/model.py `_encode_pair`); with the
    chat template that is the assistant header's "\\n\\n", so every choice would be scored as "\\n\\n<answer>"
    (acc survives, acc_norm's lengths and the logged requests do not). Here the context is encoded as the chat
    template renders it for generation, and the continuation alone without special tokens.
    """

    def _encode_pair(self, context: str, continuation: str) -> tuple[list[int], list[int]]:
        return self.tok_encode(context), self.tok_encode(continuation, add_special_tokens=False)


def build_lm(cfg: DictConfig, model_path: str):
    """The harness's LM for a model folder: transformers (optionally sharded over GPUs) or vLLM."""
    import torch

    if Path(model_path).is_dir():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local model: never reach for the hub
    common = {"pretrained": model_path, "dtype": cfg.model.dtype, "trust_remote_code": cfg.model.trust_remote_code,
              "batch_size": cfg.eval.batch_size}
    if cfg.eval.backend == "vllm":  # GPU only; untested here
        from lm_eval.models.vllm_causallms import VLLM

        lm_class = type("Med42VLLM", (AnswerBoundary, VLLM), {})
        return with_family_template(cfg, lm_class(**common, tensor_parallel_size=cfg.eval.tensor_parallel_size),
                                    model_path)
    from lm_eval.models.huggingface import HFLM

    lm_class = type("Med42HFLM", (AnswerBoundary, HFLM), {})
    if cfg.eval.parallelize:  # device_map over every visible GPU (a 70B does not fit one); untested here
        return with_family_template(cfg, lm_class(**common, parallelize=True), model_path)
    return with_family_template(cfg, lm_class(**common, device="cuda" if torch.cuda.is_available() else "cpu"),
                                model_path)


def with_family_template(cfg: DictConfig, lm, model_path: str):
    """Every model is scored in its family's training format, the base included: a hub base carries Meta's own
    template (default date, tools), its fine-tunes ours (models/chat.py); the protocol hashes what is used."""
    from med42_train.models.tokenizer import chat_template_for_model

    lm.tokenizer.chat_template = chat_template_for_model(cfg.model, model_path)
    return lm


def task_manager(cfg: DictConfig, task_dir: Path):
    """The project's tasks only; local data files reach the tasks' loader through the harness's metadata."""
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(task_dir), include_defaults=False,
                       metadata={"med42_data_files": local_data_files(cfg)})


def evaluate(cfg: DictConfig, lm, tasks: list[str], task_dir: Path) -> dict[str, dict]:
    """task name -> its share of lm-eval's results (with `samples` and the `protocol` block)."""
    from lm_eval import simple_evaluate

    log.info("evaluating %s on %s", getattr(lm, "pretrained", lm), tasks)
    results = simple_evaluate(
        model=lm, tasks=tasks, task_manager=task_manager(cfg, task_dir), num_fewshot=cfg.eval.num_fewshot,
        apply_chat_template=cfg.eval.apply_chat_template, system_instruction=cfg.eval.system_prompt,
        limit=cfg.eval.limit, random_seed=cfg.seed, log_samples=True)  # every scored request is kept
    return {task: split_task(results, task, lm, cfg) for task in tasks}


def split_task(results: dict, task: str, lm, cfg: DictConfig) -> dict[str, Any]:
    """One requested task's (or group's, with its subtasks) sections of a multi-task results dict."""
    names = [task, *results.get("group_subtasks", {}).get(task, [])]
    part = {key: {n: results[key][n] for n in names if n in results.get(key, {})} for key in PER_TASK_KEYS}
    part["samples"] = {n: results["samples"][n] for n in names if n in results.get("samples", {})}
    part["config"] = results.get("config", {})
    part["protocol"] = protocol(cfg, task, results, part["samples"], lm)
    return part


def protocol(cfg: DictConfig, task: str, results: dict, samples: dict, lm) -> dict[str, Any]:
    """What decides a score besides the model: enough to tell whether two runs are comparable."""
    first_task = task_defs.members(task)[0]
    template = lm.chat_template(True) if cfg.eval.apply_chat_template else None
    return {
        "harness_version": metadata.version("lm_eval"),
        "task": task, "task_version": results.get("versions", {}).get(first_task),
        "variant": task_defs.variant(task), "num_fewshot": results.get("n-shot", {}).get(first_task),
        "apply_chat_template": bool(cfg.eval.apply_chat_template), "system_prompt": cfg.eval.system_prompt,
        "chat_template_sha256": _sha256(template), "dtype": cfg.model.dtype, "batch_size": cfg.eval.batch_size,
        "limit": cfg.eval.limit, "backend": cfg.eval.backend, "parallelize": bool(cfg.eval.parallelize),
        "first_request": first_request(samples.get(first_task, []), lm),
    }


def first_request(samples: list[dict], lm) -> dict[str, Any] | None:
    """The first scored request as the model saw it: token ids (and their hash), BOS count, continuation."""
    if not samples:
        return None
    context, continuation = samples[0]["arguments"][0][:2]
    if not hasattr(lm, "tok_encode"):  # an LM without a tokenizer (tests' fake LM)
        return {"continuation": continuation}
    context_ids, continuation_ids = lm._encode_pair(context, continuation)
    ids = [*context_ids, *continuation_ids]
    bos_id = lm.tokenizer.bos_token_id
    return {"continuation": continuation, "num_context_tokens": len(context_ids),
            "continuation_ids": list(continuation_ids), "num_bos": ids.count(bos_id) if bos_id is not None else 0,
            "token_ids_sha256": _sha256(",".join(map(str, ids)))}


def _sha256(text: str | None) -> str | None:
    return hashlib.sha256(text.encode()).hexdigest() if text else None
