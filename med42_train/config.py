"""Typed config schema, composition from configs/, and the checks that run before any model loads.

Hydra composes the YAML tree (groups under configs/); the dataclasses below are the schema it is merged
into, so a wrong type or an unknown key fails at composition with the key's name. `validate` then rejects
combinations that would run but train something silently wrong.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = PROJECT_ROOT / "configs"
RECIPE_DIR = PROJECT_ROOT / "data_recipes"

STAGES = ("data", "sft", "dpo", "eval", "elo", "report")
# Attention kernels that keep padding-free packed samples apart (FACTS.md: sdpa/eager isolate through
# position_ids only without an attention mask; flex_attention does not isolate them).
PACKING_SAFE_ATTENTION = ("sdpa", "eager", "flash_attention_2", "flash_attention_3")


# DPOConfig.loss_type values TRL 1.16 implements (trl/trainer/dpo_trainer.py, DPOTrainer._compute_loss).
TRL_DPO_LOSSES = ("sigmoid", "sigmoid_norm", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair",
                  "sppo_hard", "aot", "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft")
# The datasets of the shipped eval tasks: keys of eval.data_files (med42_train/eval/tasks/*.yaml `dataset`).
EVAL_DATA_KEYS = ("medqa", "medmcqa", "pubmedqa", "mmlu", "mmlu_pro", "usmle", "demo_mcqa")


CHAT_FAMILIES = ("auto", "llama3", "llama31")
CHAT_DATE_FORMAT = "%d %b %Y"  # how Meta's 3.x templates print a date (their strftime_now("%d %b %Y"): 26 Jul 2024)


def check_chat_format(family: str, date: str) -> None:
    """model.chat_family and model.chat_date, checked before anything loads (a wrong date is a silent format drift)."""
    from datetime import datetime

    if family not in CHAT_FAMILIES:
        raise ConfigError(f"model.chat_family={family!r}: use one of {', '.join(CHAT_FAMILIES)}")
    try:
        written = datetime.strptime(date, CHAT_DATE_FORMAT).strftime(CHAT_DATE_FORMAT)
    except ValueError:
        written = None
    if written != date:
        raise ConfigError(f"model.chat_date={date!r} is not written as Meta's template writes dates (two-digit day, "
                          f"English month abbreviation, year): e.g. model.chat_date='26 Jul 2024'")


class ConfigError(ValueError):
    """A user-facing configuration mistake; the message names the key and the fix."""


@dataclass
class TinyLlamaConfig:
    """Shape of the embedded demo model (used only when model.name_or_path == 'demo')."""

    bpe_vocab_size: int = 2048  # byte-level BPE merges learned from data_recipes/demo; +256 Llama 3 specials
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 1024


@dataclass
class ModelConfig:
    name_or_path: str = "demo"  # hub id, local HF folder, or 'demo' for the embedded tiny Llama
    dtype: str = "float32"  # float32 | bfloat16
    attn_implementation: str = "sdpa"
    trust_remote_code: bool = False  # never on by default: it runs code shipped with the weights
    # The chat format trained and evaluated with: auto (from the base tokenizer: <|eom_id|> => llama31), llama3 or
    # llama31 (Meta's 3.1 format, whose system block opens with "Cutting Knowledge Date" / "Today Date" lines).
    chat_family: str = "auto"
    chat_date: str = "26 Jul 2024"  # llama31 only: the Today Date line; Meta's template's default
    tiny: TinyLlamaConfig = field(default_factory=TinyLlamaConfig)


@dataclass
class DataConfig:
    recipe: str = "demo"  # data_recipes/<recipe>.yaml
    # Per-source tokenization cache (data/cache.py), shared by the runs beside this one so an unchanged source
    # is never re-tokenized; safe to delete (it is rebuilt).
    cache_dir: str = "${run_dir}/../.cache/data"
    tokenize_batch_size: int = 1024  # samples per batched call of the Rust tokenizer
    max_length: int = 512  # SFT samples longer than this are dropped (counted in the manifest)
    preference_max_length: int = 512
    system_prompt: Optional[str] = None  # prepended to samples that have none; null keeps them as they are
    # Overrides of the recipe itself, Hydra syntax, e.g. '["sft.medqa.samples=20000"]' (data_recipes/README.md)
    recipe_overrides: list[str] = field(default_factory=list)


@dataclass
class SFTConfig:
    num_train_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    learning_rate: float = 5e-6
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.01
    optim: str = "adamw_torch"
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    max_grad_norm: float = 1.0
    # The global batch in tokens: tokens_per_step / data.max_length packed rows per optimizer step, split into
    # per_device_train_batch_size rows per micro-batch; gradient accumulation is derived from the world size.
    tokens_per_step: int = 262144
    per_device_train_batch_size: int = 1
    packing: bool = True  # padding-free BFD packing into max_length rows
    save_steps: int = 100  # a sharded checkpoint every N optimizer steps
    save_total_limit: int = 2  # keep the last k complete checkpoints
    logging_steps: int = 10
    validation_prompt: str = "What is the first-line treatment for uncomplicated hypertension?"
    per_source_loss: bool = True  # log train/loss/<source> (the data stage's `source` column) every logging step
    use_liger_kernel: bool = False  # GPU only: Liger's Triton layer kernels (RMSNorm, RoPE, SwiGLU); untested here
    torch_compile: bool = False  # GPU speed-up: torch.compile the model; untested here (no GPU on CI)
    torch_compile_backend: str = "inductor"  # torch.compile's backend (tests use "eager": same wrapper, no codegen)


@dataclass
class DPOConfig:
    # Iterative DPO (Med42-v2: three rounds). Iteration k trains on the preference pairs the recipe tags
    # `iteration: k`, starting from iteration k-1's validated export (iteration 1 from the SFT export).
    iterations: int = 1
    # The reference of iteration k: "previous" = iteration k-1's model (the policy's own start; the paper's
    # reading, unsure) or "sft" = the SFT model for every iteration (RLHFlow's Online-RLHF).
    reference_model: str = "previous"
    # "precomputed": one distributed forward of the reference per iteration, cached on disk; training then holds
    # no reference model. "live": a frozen reference sharded like the policy, run beside it at every step.
    reference: str = "precomputed"
    reference_batch_size: int = 4  # pairs per rank per forward of the reference pass
    reference_check_pairs: int = 4  # pairs recomputed one by one after the pass and compared with it
    reference_check_tolerance: float = 1e-3  # max |difference| of a summed log-prob (nats) in that check
    # A pair longer than data.preference_max_length is truncated (its response loses its end): refuse to train
    # when more than this fraction of an iteration's pairs would be.
    max_truncated_fraction: float = 0.05
    beta: float = 0.1
    loss_type: str = "sigmoid"  # any of TRL's DPO losses: sigmoid, sigmoid_norm, ipo, hinge, robust, ...
    ld_alpha: Optional[float] = None  # LD-DPO length weighting (TRL); changes what the reference sums
    num_train_epochs: float = 1.0
    max_steps: int = -1
    learning_rate: float = 1e-6
    lr_scheduler_type: str = "cosine"
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    optim: str = "rmsprop"
    max_grad_norm: float = 1.0
    # The global batch in preference pairs; gradient accumulation is derived from the world size (like SFT's
    # tokens_per_step) and a world size that does not divide it is refused.
    pairs_per_step: int = 8
    per_device_train_batch_size: int = 2
    # Nodes the DPO stage runs on when they differ from launcher.nnodes (Med42-v2 70B: SFT on 6, DPO on 4).
    nnodes: Optional[int] = None
    # Stop after round k (null: all `iterations`); the stage is COMPLETE only after the last round. The Slurm
    # chain runs each round as its own job with this set; it changes where a run stops, never what a round is.
    until_iteration: Optional[int] = None
    save_steps: int = 100
    save_total_limit: int = 2
    logging_steps: int = 10


@dataclass
class FSDPConfig:
    version: int = 2
    reshard_after_forward: bool = True  # FULL_SHARD; False = SHARD_GRAD_OP
    layer_cls_to_wrap: list[str] = field(default_factory=lambda: ["LlamaDecoderLayer"])
    state_dict_type: str = "SHARDED_STATE_DICT"  # checkpoints are sharded DCP; exports are gathered separately
    cpu_offload: bool = False
    activation_checkpointing: bool = False
    # Only rank 0 reads the weights; the others build the model on `meta` and receive their shards from rank 0
    # when accelerate shards it (accelerate/utils/fsdp_utils.py fsdp2_load_full_state_dict). See README.
    cpu_ram_efficient_loading: bool = False
    # bf16 compute with fp32 master weights and fp32 gradient reduce-scatter (FSDP2 MixedPrecisionPolicy
    # param_dtype=bf16, reduce_dtype=fp32). Off: accelerate reduces in the compute dtype (bf16 under bf16=true).
    mixed_precision: bool = False


@dataclass
class ExportConfig:
    max_shard_size: str = "5GB"  # safetensors shard bound; rank 0 holds at most one shard + one tensor at a time
    # How long the other ranks wait (on a gloo group of their own, not the training group and its 30-min timeout)
    # while rank 0 writes, validates and hashes an export, or re-hashes one before DPO uses it.
    wait_timeout_s: float = 14400.0  # ours: a 70B export is 140 GB written, re-read and hashed twice on one host


@dataclass
class EvalConfig:
    # lm-eval task or group names shipped in med42_train/eval/tasks/ (`*_full`: Med42's full-answer scoring,
    # `*_letter`: the harness default); checked when the config loads.
    tasks: list[str] = field(default_factory=lambda: ["med42_demo_mcqa_full"])
    # Stage labels (base, sft, dpo = every DPO iteration) or local HF model folders (eval/checkpoints.py).
    models: list[str] = field(default_factory=lambda: ["base", "sft", "dpo"])
    # Local copies instead of the hub, one per dataset key (medqa, medmcqa, pubmedqa, mmlu, mmlu_pro, usmle,
    # demo_mcqa), e.g. eval.data_files.medqa=/data/medqa/test.jsonl; layouts in README (evaluation).
    data_files: dict[str, Optional[str]] = field(default_factory=lambda: dict.fromkeys(EVAL_DATA_KEYS))
    num_fewshot: int = 0
    apply_chat_template: bool = True
    system_prompt: Optional[str] = None
    batch_size: int = 8
    limit: Optional[int] = None  # evaluate only the first N documents per task (smoke runs)
    # Per model x task results, keyed by the model export's hash + task definition hash + protocol; kept outside
    # <run_dir>/eval/ so that overwrite=true (e.g. after adding a task) re-runs only what is not cached.
    cache_dir: str = "${run_dir}/../.cache/eval"
    backend: str = "hf"  # hf (transformers) | vllm (when installed; GPU only)
    # hf: shard one model across the node's GPUs with a device map (a 70B does not fit one GPU). Untested here.
    parallelize: bool = False
    tensor_parallel_size: int = 1  # vllm: GPUs per model. Untested here (no GPU on CI).


# The Med42-v2 card's judging rubric, one criterion line as Prometheus 2's relative grading takes it.
MED42_RUBRIC = (
    "[Which response is of higher overall quality in a medical context? Consider: Relevance (does it directly "
    "address the question?), Completeness (all important aspects, details and subpoints?), Safety (avoids unsafe "
    "practices, addresses potential risks?), Ethics (confidentiality, avoids biases?), Clarity (professional, "
    "clear, easy to understand?)]"
)
# The system prompt of the Med42-v2 model card's usage example, given to every model in the tournament.
MED42_SYSTEM_PROMPT = (
    "You are a helpful, respectful and honest medical assistant. You are a second version of Med42 developed by "
    "the AI team at M42, UAE. Always answer as helpfully as possible, while being safe. Your answers should not "
    "include any harmful, unethical, racist, sexist, toxic, dangerous, or illegal content. Please ensure that your "
    "responses are socially unbiased and positive in nature. If a question does not make any sense, or is not "
    "factually coherent, explain why instead of answering something not correct. If you don\u2019t know the answer "
    "to a question, please don\u2019t share false information."
)


@dataclass
class JudgeConfig:
    """The pairwise judge of the elo stage."""

    # A hub id, a local HF folder, or a stage label of this run (`base`, `sft`): the demo judges with its base model.
    name_or_path: str = "prometheus-eval/prometheus-8x7b-v2.0"  # paper: Prometheus-8x7b-v2.0 judged the card's Elo
    dtype: str = "bfloat16"
    rubric: str = MED42_RUBRIC  # paper: the card's five-point rubric
    max_new_tokens: int = 1024  # room for the feedback before `[RESULT] A|B`
    temperature: float = 0.0  # 0 = greedy: the same answers always get the same verdict
    batch_size: int = 4  # prompts per generate call


@dataclass
class EloConfig:
    """Answers from every model, judged pairwise in both orders, rated Bradley-Terry on the Elo scale."""

    # `demo` (data_recipes/demo/elo_questions.jsonl) or a jsonl file with `id` and `question` on every line.
    questions: str = "demo"
    num_questions: Optional[int] = None  # only the first N questions (smoke runs); null = all
    models: list[str] = field(default_factory=lambda: ["base", "sft", "dpo"])  # labels as in eval.models
    extra_models: list[str] = field(default_factory=list)  # local HF folders (e.g. a released Med42-v2)
    system_prompt: str = MED42_SYSTEM_PROMPT  # paper: the same simple system prompt for every model
    temperature: float = 0.4  # paper: the card's sampling
    top_k: int = 150  # paper
    top_p: float = 0.75  # paper
    max_new_tokens: int = 512  # paper
    batch_size: int = 8  # questions per generate call (transformers path; vLLM schedules its own batches)
    questions_per_pair: Optional[int] = None  # null = every pair on every question; N = a seeded sample per pair
    bootstrap_rounds: int = 1000  # ours: multinomial resamples of the outcome counts for the 95% intervals
    anchor_rating: float = 1000.0  # ours: the ratings' mean (the card does not state its anchor)
    # Answers cached per model export hash and decoding settings, shared by the runs beside this one.
    cache_dir: str = "${run_dir}/../.cache/elo"
    judge: JudgeConfig = field(default_factory=JudgeConfig)


@dataclass
class ReportConfig:
    """The run report: one self-contained HTML page and its markdown twin."""

    title: Optional[str] = None  # null: "<name> run report"
    figure_format: str = "png"  # png | svg, embedded inline either way
    figure_dpi: int = 110
    show_paper: bool = True  # the Med42-v2 card's MCQA and Elo tables beside this run's


@dataclass
class SlurmConfig:
    """What each sbatch job of `med42 pipeline launcher=slurm` asks for (scripts/slurm/*.sbatch.j2)."""

    partition: Optional[str] = None  # null: the cluster's default partition
    account: Optional[str] = None
    qos: Optional[str] = None
    # GPUs requested per node for training stages; null requests none (CPU test cluster: gloo processes).
    gpus_per_node: Optional[int] = None
    # GPUs for a one-process stage by name (eval runs its models on cuda when it has one); others get none.
    single_process_gpus: dict[str, int] = field(default_factory=dict)
    cpus_per_task: int = 2  # one task per node; it runs torchrun and its nproc_per_node workers
    mem: Optional[str] = None  # --mem per node, e.g. "0" (all of it) or "500G"; null: the cluster's default
    # Wall-clock limit per job, by stage (a DPO round is "dpo"); stages not listed get `default`.
    time_limits: dict[str, str] = field(default_factory=lambda: {"default": "04:00:00"})
    max_requeues: int = 3  # a job preempted more often than this fails instead of requeueing again
    rdzv_port: int = 29517  # c10d rendezvous port on the job's head node
    # Exported in training jobs before torchrun (NCCL_*, TORCH_NCCL_*): interface names, IB, debug level.
    nccl_env: dict[str, str] = field(default_factory=dict)
    extra_sbatch: list[str] = field(default_factory=list)  # more #SBATCH lines, e.g. ["--exclusive"]


@dataclass
class LauncherConfig:
    name: str = "local"
    nproc_per_node: int = 2
    nnodes: int = 1
    backend: str = "auto"  # auto = nccl on CUDA, gloo on CPU
    # After SIGTERM/SIGUSR1, how long torchrun lets the workers save a checkpoint before it kills them. Slurm
    # jobs send the signal this long before the time limit (#SBATCH --signal=USR1@<grace>).
    preemption_grace_s: int = 120
    # Dense bf16 peak of one accelerator for train/mfu. null = 989 TFLOP/s (H100 SXM) when training on CUDA, and no
    # MFU on CPU (a CPU has no meaningful bf16 peak); set it for other accelerators (e.g. 756 for H100 PCIe).
    peak_tflops_per_device: Optional[float] = None
    # The signal asking a job to checkpoint and stop: #SBATCH --signal=<it>@<preemption_grace_s>. USR1, USR2 or
    # TERM; submitit uses USR2 because NCCL may catch USR1 (check on your cluster with `med42 doctor`).
    preemption_signal: str = "USR1"
    # Timeout of every collective (torch.distributed.init_process_group(timeout=...)): how long a rank waits for
    # a missing peer before the job fails instead of hanging.
    nccl_timeout_s: int = 1800
    slurm: SlurmConfig = field(default_factory=SlurmConfig)


@dataclass
class LoggerConfig:
    wandb: bool = True
    project: str = "med42"
    entity: Optional[str] = None
    mode: str = "offline"  # online | offline | disabled; the WANDB_MODE environment variable wins
    group: Optional[str] = None  # default: <name>-<hash of run_dir>, shared by every stage of a run


@dataclass
class RootConfig:
    name: str = "demo"
    run_dir: str = "runs/${name}"
    seed: int = 42
    overwrite: bool = False  # re-run a COMPLETE stage whose config or inputs changed, replacing its outputs
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    fsdp: FSDPConfig = field(default_factory=FSDPConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    elo: EloConfig = field(default_factory=EloConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    launcher: LauncherConfig = field(default_factory=LauncherConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)


# Which config sections decide each stage's outputs: a change elsewhere (logging, launcher) does not redo it.
STAGE_CONFIG_KEYS = {
    "data": ("model", "data", "seed"),
    "sft": ("model", "sft", "fsdp", "export", "seed"),
    "dpo": ("model", "dpo", "fsdp", "export", "seed"),
    # One DPO round (<run_dir>/dpo/iter_<k>/): its identity is also its inputs (pairs, start and reference models).
    "dpo_iteration": ("model", "dpo", "fsdp", "export", "seed"),
    "eval": ("eval",),
    "elo": ("elo", "seed"),
    "report": ("report",),
}


# Keys that change where or in what batches a stage works, never what it produces: a moved run directory (its
# cache_dir follows run_dir) or another batch size must not make a COMPLETE stage look out of date.
# until_iteration: where a run (a Slurm job of the chain) stops, never what a round produces.
_DPO_NEUTRAL_KEYS = ("reference_batch_size", "reference_check_pairs", "reference_check_tolerance", "until_iteration")
OUTPUT_NEUTRAL_KEYS = {"data": {"data": ("cache_dir", "tokenize_batch_size")},
                       "dpo": {"dpo": _DPO_NEUTRAL_KEYS},
                       # Adding a fourth round must not redo the first three.
                       "dpo_iteration": {"dpo": ("iterations", *_DPO_NEUTRAL_KEYS)},
                       "eval": {"eval": ("cache_dir",)},
                       "elo": {"elo": ("cache_dir",)}}


def load_config(overrides: list[str]) -> DictConfig:
    """Compose configs/ with command-line overrides, type-check it against the schema, and validate it."""
    return finalize_config(_compose(overrides))


def finalize_config(composed: DictConfig) -> DictConfig:
    """A composed tree (ours, or the one @hydra.main hands a sweep job) merged into the schema and validated."""
    try:
        cfg = OmegaConf.merge(OmegaConf.structured(RootConfig), composed)
        cfg.run_dir = str(Path(str(cfg.run_dir)).expanduser().resolve())
        OmegaConf.resolve(cfg)
    except Exception as err:  # omegaconf's ValidationError / ConfigKeyError carry the full key
        key = getattr(err, "full_key", None) or "?"
        raise ConfigError(
            f"config key '{key}': {str(err).splitlines()[0]}. Fix the override or the YAML that sets it "
            f"(schema: med42_train/config.py)."
        ) from None
    validate(cfg)
    return cfg


def load_frozen_config(path: Path, overrides: list[str]) -> DictConfig:
    """A config frozen at submit time (the Slurm chain's <run_dir>/slurm/config.yaml), plus a few key=value
    overrides of the job itself (e.g. dpo.until_iteration=2): a YAML edited after submission changes nothing."""
    try:
        frozen = OmegaConf.merge(OmegaConf.structured(RootConfig), OmegaConf.load(path),
                                 OmegaConf.from_dotlist(list(overrides)))
    except Exception as err:
        raise ConfigError(f"frozen config {path}: {str(err).splitlines()[0]}. Overrides after --config are "
                          "plain key=value pairs of existing keys (schema: med42_train/config.py)") from None
    validate(frozen)
    return frozen


def config_hash(cfg: DictConfig) -> str:
    """Hash of the whole resolved config (every rank of a job must hold the same one)."""
    return hashlib.sha256(json.dumps(to_dict(cfg), sort_keys=True).encode()).hexdigest()[:16]


def _compose(overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    # The compose API (not @hydra.main) keeps the working directory and writes no outputs/ folder.
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        try:
            return compose(config_name="config", overrides=list(overrides))
        except (HydraException, OmegaConfBaseException) as err:
            raise ConfigError(_explain_compose_error(err)) from None


def _explain_compose_error(err: Exception) -> str:
    # Hydra's search-path dump and its '+key' hint (keys outside the schema are rejected anyway) only distract.
    message = str(err).strip().split("\nConfig search path:")[0]
    message = "\n".join(line for line in message.splitlines() if not line.startswith("To append to your config"))
    if "Could not find" in message or "Available options" in message:
        return f"{message}\nFix: pick one of the options listed above (files under configs/<group>/)."
    if "not in struct" in message or "Could not override" in message or "Could not append" in message:
        return (
            f"{message}\nFix: check the key's spelling against med42_train/config.py; "
            "keys cannot be added from the command line."
        )
    return f"{message}\nFix: overrides are key=value with keys from configs/ (e.g. sft.learning_rate=1e-5)."


def validate(cfg: DictConfig) -> None:
    """Reject combinations that would run but train or evaluate something silently wrong."""
    import importlib.util

    checks = [
        (cfg.model.dtype in ("float32", "bfloat16", "float16"),
         f"model.dtype={cfg.model.dtype!r} is not a dtype: use float32, bfloat16 or float16"),
        (not cfg.sft.packing or cfg.model.attn_implementation in PACKING_SAFE_ATTENTION,
         f"sft.packing=true with model.attn_implementation={cfg.model.attn_implementation!r} lets packed samples "
         f"attend to each other: use one of {', '.join(PACKING_SAFE_ATTENTION)} or set sft.packing=false"),
        (cfg.fsdp.version == 2,
         f"fsdp.version={cfg.fsdp.version}: only FSDP2 is supported (FSDP1 is deprecated upstream); set fsdp.version=2"),
        (cfg.launcher.nproc_per_node >= 1 and cfg.launcher.nnodes >= 1,
         "launcher.nproc_per_node and launcher.nnodes must be at least 1"),
        (cfg.export.wait_timeout_s > 0, f"export.wait_timeout_s={cfg.export.wait_timeout_s}: use seconds > 0 "
                                         f"(e.g. 14400 for a 70B export)"),
        (cfg.launcher.backend in ("auto", "gloo", "nccl"),
         f"launcher.backend={cfg.launcher.backend!r}: use auto, gloo or nccl"),
        (cfg.logger.mode in ("online", "offline", "disabled"),
         f"logger.mode={cfg.logger.mode!r}: use online, offline or disabled"),
        (len(cfg.eval.tasks) > 0, "eval.tasks is empty: name at least one task"),
        (cfg.eval.backend in ("hf", "vllm"), f"eval.backend={cfg.eval.backend!r}: use hf or vllm"),
        # The shipped tasks define no few-shot split: the harness would draw examples from the test set itself.
        (cfg.eval.num_fewshot == 0, f"eval.num_fewshot={cfg.eval.num_fewshot}: the MCQA tasks are zero-shot (paper) "
         f"and define no few-shot split; set eval.num_fewshot=0"),
        (cfg.eval.backend != "vllm" or importlib.util.find_spec("vllm") is not None,
         "eval.backend=vllm but the vllm package is not installed: `pip install vllm` (GPU) or eval.backend=hf"),
        (cfg.sft.learning_rate > 0 and cfg.dpo.learning_rate > 0, "learning rates must be positive"),
        (cfg.sft.per_device_train_batch_size >= 1 and cfg.dpo.per_device_train_batch_size >= 1,
         "per_device_train_batch_size must be at least 1"),
        (cfg.model.name_or_path != "demo" or cfg.data.max_length <= cfg.model.tiny.max_position_embeddings,
         f"data.max_length={cfg.data.max_length} exceeds the demo model's "
         f"model.tiny.max_position_embeddings={cfg.model.tiny.max_position_embeddings}: lower data.max_length"),
        (cfg.model.tiny.hidden_size % cfg.model.tiny.num_attention_heads == 0,
         "model.tiny.hidden_size must be divisible by model.tiny.num_attention_heads"),
    ]
    for ok, message in [*checks, *_dpo_checks(cfg), *_launcher_checks(cfg), *_memory_and_speed_checks(cfg),
                        *_elo_and_report_checks(cfg)]:
        if not ok:
            raise ConfigError(message)
    check_chat_format(cfg.model.chat_family, cfg.model.chat_date)
    recipe_path(cfg)  # raises if the recipe does not exist
    _check_eval(cfg)


def _check_eval(cfg: DictConfig) -> None:
    """Unknown tasks, data files or model labels fail here, before data, SFT and DPO have run."""
    from med42_train.eval.checkpoints import check_model_labels  # imports this module: import here
    from med42_train.eval.task_defs import check_tasks

    check_tasks(list(cfg.eval.tasks), local_data_files(cfg))
    check_model_labels(list(cfg.eval.models))


def local_data_files(cfg: DictConfig) -> dict[str, str]:
    """The eval.data_files entries that are set (the others read the hub)."""
    return {key: str(path) for key, path in cfg.eval.data_files.items() if path}


def sft_gradient_accumulation(cfg: DictConfig, world_size: int) -> int:
    """Micro-batches per optimizer step that make sft.tokens_per_step with this world size, or a ConfigError.

    Checked by the pipeline against the launcher's planned world size before any stage runs, and by the sft
    stage against the world size it actually runs with (a hand-launched torchrun may differ), before any model
    loads. Not at composition: a data-only run (another max_length, a dry run) need not fix the SFT batch.
    """
    tokens_per_step, max_length = cfg.sft.tokens_per_step, cfg.data.max_length
    micro_batch_rows = cfg.sft.per_device_train_batch_size
    rows_per_step, leftover_tokens = divmod(tokens_per_step, max_length)
    if leftover_tokens or rows_per_step == 0:
        raise ConfigError(f"sft.tokens_per_step={tokens_per_step} is not a whole number of "
                          f"data.max_length={max_length} rows: use a multiple of {max_length}")
    return _accumulation(rows_per_step, world_size, micro_batch_rows, "sft.per_device_train_batch_size",
                         f"sft.tokens_per_step={tokens_per_step} is {rows_per_step} rows of {max_length} tokens",
                         f"a tokens_per_step that is a multiple of {max_length * world_size * micro_batch_rows} "
                         f"(max_length x world size x per_device_train_batch_size)")


def dpo_gradient_accumulation(cfg: DictConfig, world_size: int) -> int:
    """Micro-batches per optimizer step that make dpo.pairs_per_step with this world size, or a ConfigError."""
    pairs, micro_batch = cfg.dpo.pairs_per_step, cfg.dpo.per_device_train_batch_size
    return _accumulation(pairs, world_size, micro_batch, "dpo.per_device_train_batch_size",
                         f"dpo.pairs_per_step={pairs}",
                         f"a pairs_per_step that is a multiple of {world_size * micro_batch} "
                         f"(world size x per_device_train_batch_size)")


def _accumulation(rows_per_step: int, world_size: int, micro_batch_rows: int, micro_key: str, what: str,
                  fix: str) -> int:
    accumulation, leftover_rows = divmod(rows_per_step, world_size * micro_batch_rows)
    if leftover_rows or accumulation == 0:
        raise ConfigError(
            f"{what}, which do not split evenly over {world_size} ranks x {micro_key}={micro_batch_rows} rows: "
            f"use {fix}, or another per_device_train_batch_size")
    return accumulation


def _dpo_checks(cfg: DictConfig) -> list[tuple[bool, str]]:
    dpo = cfg.dpo
    return [
        (dpo.iterations >= 1, f"dpo.iterations={dpo.iterations}: run at least one DPO iteration"),
        (dpo.reference_model in ("previous", "sft"),
         f"dpo.reference_model={dpo.reference_model!r}: use previous (iteration k-1's model) or sft"),
        (dpo.reference in ("precomputed", "live"), f"dpo.reference={dpo.reference!r}: use precomputed or live"),
        (dpo.loss_type in TRL_DPO_LOSSES,
         f"dpo.loss_type={dpo.loss_type!r} is not one of TRL's DPO losses: {', '.join(TRL_DPO_LOSSES)}"),
        (dpo.ld_alpha is None or 0.0 <= dpo.ld_alpha <= 1.0, f"dpo.ld_alpha={dpo.ld_alpha}: use null or 0..1"),
        (0.0 <= dpo.max_truncated_fraction <= 1.0,
         f"dpo.max_truncated_fraction={dpo.max_truncated_fraction}: a fraction in 0..1"),
        (dpo.pairs_per_step >= 1 and dpo.reference_batch_size >= 1 and dpo.reference_check_pairs >= 0,
         "dpo.pairs_per_step and dpo.reference_batch_size must be at least 1, dpo.reference_check_pairs at least 0"),
        (dpo.nnodes is None or dpo.nnodes >= 1, f"dpo.nnodes={dpo.nnodes}: null (= launcher.nnodes) or at least 1"),
        (dpo.until_iteration is None or 1 <= dpo.until_iteration <= dpo.iterations,
         f"dpo.until_iteration={dpo.until_iteration}: null (all rounds) or 1..dpo.iterations={dpo.iterations}"),
    ]


PREEMPTION_SIGNAL_NAMES = ("USR1", "USR2", "TERM")


def _launcher_checks(cfg: DictConfig) -> list[tuple[bool, str]]:
    launcher, slurm = cfg.launcher, cfg.launcher.slurm
    return [
        (launcher.preemption_signal in PREEMPTION_SIGNAL_NAMES,
         f"launcher.preemption_signal={launcher.preemption_signal!r}: use one of {', '.join(PREEMPTION_SIGNAL_NAMES)}"),
        (launcher.nccl_timeout_s > 0, f"launcher.nccl_timeout_s={launcher.nccl_timeout_s}: seconds, positive"),
        (slurm.max_requeues >= 0, f"launcher.slurm.max_requeues={slurm.max_requeues}: 0 or more"),
        ("default" in slurm.time_limits,
         "launcher.slurm.time_limits needs a `default` entry (e.g. '04:00:00') for stages not listed"),
        (slurm.gpus_per_node is None or slurm.gpus_per_node >= launcher.nproc_per_node,
         f"launcher.slurm.gpus_per_node={slurm.gpus_per_node} < launcher.nproc_per_node="
         f"{launcher.nproc_per_node}: each worker needs its own GPU; raise gpus_per_node or lower nproc_per_node"),
    ]


def planned_world_size(cfg: DictConfig, stage: str) -> int:
    """The world size the launcher gives a training stage (DPO may run on other nodes than SFT)."""
    nnodes = cfg.dpo.nnodes if stage_kind(stage) in ("dpo", "dpo_iteration") and cfg.dpo.nnodes else \
        cfg.launcher.nnodes
    return nnodes * cfg.launcher.nproc_per_node


def _memory_and_speed_checks(cfg: DictConfig) -> list[tuple[bool, str]]:
    """The 70B memory switches and the optional GPU speed-ups; the CUDA-only ones are checked again at launch,
    where the backend is really resolved (a Slurm login node composing the config may have no GPU)."""
    import importlib.util

    try:
        shard_ok = size_in_bytes(cfg.export.max_shard_size) > 0
    except ValueError:
        shard_ok = False
    return [
        (shard_ok, f"export.max_shard_size={cfg.export.max_shard_size!r}: use a size such as 5GB or 500MB"),
        (not (cfg.fsdp.mixed_precision and cfg.launcher.backend == "gloo"),
         "fsdp.mixed_precision=true needs CUDA (bf16 compute with fp32 reduce is a GPU policy; gloo on CPU trains "
         "in the model's dtype): set fsdp.mixed_precision=false for CPU runs"),
        (not (cfg.fsdp.mixed_precision and cfg.model.dtype == "float16"),
         "fsdp.mixed_precision=true computes in bf16: set model.dtype=bfloat16 or float32, not float16"),
        (not cfg.sft.use_liger_kernel or importlib.util.find_spec("liger_kernel") is not None,
         "sft.use_liger_kernel=true but the liger-kernel package is not installed: `pip install liger-kernel` "
         "(GPU only) or set sft.use_liger_kernel=false"),
        (not (cfg.sft.use_liger_kernel and cfg.launcher.backend == "gloo"),
         "sft.use_liger_kernel=true needs CUDA (Triton kernels): set sft.use_liger_kernel=false for CPU runs"),
        (cfg.launcher.peak_tflops_per_device is None or cfg.launcher.peak_tflops_per_device > 0,
         "launcher.peak_tflops_per_device must be positive (TFLOP/s) or null"),
    ]


def _elo_and_report_checks(cfg: DictConfig) -> list[tuple[bool, str]]:
    elo = cfg.elo
    num_models = len(elo.models) + len(elo.extra_models)
    return [
        (num_models >= 2, f"elo.models + elo.extra_models name {num_models} model(s): a tournament needs two or more"),
        (elo.temperature >= 0 and elo.judge.temperature >= 0, "elo.temperature and elo.judge.temperature must be >= 0"),
        (0 < elo.top_p <= 1 and elo.top_k >= 0, "elo.top_p must be in (0, 1] and elo.top_k >= 0 (0 = no top-k)"),
        (elo.max_new_tokens >= 1 and elo.judge.max_new_tokens >= 1, "elo max_new_tokens must be at least 1"),
        (elo.batch_size >= 1 and elo.judge.batch_size >= 1, "elo.batch_size and elo.judge.batch_size must be >= 1"),
        (elo.questions_per_pair is None or elo.questions_per_pair >= 1,
         "elo.questions_per_pair must be null (every question) or at least 1"),
        (elo.num_questions is None or elo.num_questions >= 1, "elo.num_questions must be null (all) or at least 1"),
        (elo.bootstrap_rounds >= 0, "elo.bootstrap_rounds must be >= 0 (0 = no intervals)"),
        (elo.judge.dtype in ("float32", "bfloat16", "float16"),
         f"elo.judge.dtype={elo.judge.dtype!r}: use float32, bfloat16 or float16"),
        (cfg.report.figure_format in ("png", "svg"),
         f"report.figure_format={cfg.report.figure_format!r}: use png or svg"),
    ]


def size_in_bytes(size: str) -> int:
    """'5GB' -> 5,000,000,000 (decimal units, as huggingface_hub's max_shard_size), '5GiB' -> 5 * 2**30; pydantic's
    public ByteSize parser, so no private import from huggingface_hub."""
    from pydantic import ByteSize, TypeAdapter, ValidationError

    try:
        return int(TypeAdapter(ByteSize).validate_python(size))
    except ValidationError:
        raise ValueError(f"{size!r} is not a size such as 5GB, 500MB or 4GiB") from None


def recipe_path(cfg: DictConfig) -> Path:
    path = Path(cfg.data.recipe)
    if not path.suffix:
        path = RECIPE_DIR / f"{cfg.data.recipe}.yaml"
    if not path.is_file():
        available = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))
        raise ConfigError(f"data.recipe={cfg.data.recipe!r}: no file {path}. Available recipes: {available}")
    return path


def to_dict(cfg: DictConfig) -> dict[str, Any]:
    return OmegaConf.to_container(cfg, resolve=True)  # type: ignore[return-value]


def stage_kind(stage: str) -> str:
    """'dpo/iter_2' -> 'dpo_iteration' (a round inside a stage); a top-level stage is its own kind."""
    return "dpo_iteration" if stage.startswith("dpo/") else stage


def stage_config_hash(cfg: DictConfig, stage: str) -> str:
    """Hash of the config sections that decide a stage's outputs (see STAGE_CONFIG_KEYS)."""
    full = to_dict(cfg)
    kind = stage_kind(stage)
    relevant = {key: full[key] for key in STAGE_CONFIG_KEYS[kind]}
    for section, keys in OUTPUT_NEUTRAL_KEYS.get(kind, {}).items():
        for key in keys:
            relevant[section].pop(key, None)
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]
