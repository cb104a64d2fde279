"""Typed config schemas (dataclasses): each hook point's base schema and the core sections.

The run config (:func:`or1.core.hook_points.run_config_schema`) has one section per hook point;
each section's schema is the one its selected component registered (a subclass of the hook
point's base schema below). Core sections (``trainer``, ``eval``, ...) are fixed. The docs'
config reference is generated from these classes. Imports neither torch nor Hydra
(``or1-train --help`` reads :data:`COMMON_KEYS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

# ----------------------------------------------------------------- base schemas per hook point


@dataclass
class ComponentConfig:
    """Every component section names the registered component that fills it."""

    name: str = MISSING
    """The registered component that fills this section (``GROUP=NAME`` selects it)."""


@dataclass
class RolloutConfig(ComponentConfig):
    temperature: float = 1.0
    """Sampling temperature of the training rollouts."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest token set of this total probability (1.0: off)."""
    top_k: int = -1  # <= 0: off


@dataclass
class LearnerConfig(ComponentConfig):
    lr: float = 1e-6
    """AdamW learning rate: the peak of ``lr_schedule`` (constant by default)."""
    lr_schedule: str = "constant"
    """The rate over the learner's optimiser steps: ``constant``, or ``linear`` / ``cosine``
    decay from ``lr`` to ``min_lr_ratio x lr`` over ``lr_decay_steps`` steps after the
    warm-up (``or1/rl/lr_schedule.py``); a step skipped as non-finite does not count, and
    the place on the schedule is saved with the learner's checkpoint."""
    lr_warmup_steps: int = 0
    """Optimiser steps of linear warm-up to ``lr`` (step ``n``, from 0, runs at
    ``lr x (n + 1) / lr_warmup_steps``)."""
    lr_decay_steps: int = 0
    """Optimiser steps over which ``linear`` / ``cosine`` decay (>= 1 for them); one RL step
    is ``trainer.updates_per_step`` optimiser steps."""
    min_lr_ratio: float = 0.0
    """The decay's floor as a fraction of ``lr``."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW's moment decay rates."""
    weight_decay: float = 0.01
    """AdamW's decoupled weight decay, on every parameter."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (<= 0: no clipping)."""


@dataclass
class VerifierConfig(ComponentConfig):
    pass


@dataclass
class FilterConfig(ComponentConfig):
    refill: bool = False
    """True: sample more prompts (up to ``trainer.max_refill_rounds`` rounds) until the step's
    batch is full again after filtering."""


@dataclass
class AdvantageConfig(ComponentConfig):
    pass


@dataclass
class LossConfig(ComponentConfig):
    pass


@dataclass
class EntropyConfig(ComponentConfig):
    estimator: str = "full_vocab"  # full_vocab | sampled_nll


@dataclass
class StagesConfig(ComponentConfig):
    pass


@dataclass
class LoggerConfig(ComponentConfig):
    pass


@dataclass
class DataPassConfig(ComponentConfig):
    """A pass of ``or1-data`` (several active at once, run in the order listed);
    ``enabled: false`` keeps the pass in the list but passes rows through untouched."""

    enabled: bool = True
    """False: the pass stays in the list but passes rows through untouched."""


@dataclass
class DataConfig(ComponentConfig):
    """The training prompts and the held-out sets, in the OR1 row schema."""

    path: Any = None
    """Training rows: a parquet or JSONL file or a list of them (None: the source builds them)."""
    val_path: Any = None
    """Held-out rows evaluated during training: a file or a list of them."""
    max_prompt_length: int = 2048
    """Prompts longer than this many tokens are an error naming the row."""
    shuffle: bool = True
    """Shuffle the training prompts every epoch (seeded by ``trainer.seed``)."""


@dataclass
class ModelConfig(ComponentConfig):
    """The policy's initial weights and tokenizer."""

    path: str | None = None
    """A local Hugging Face model folder (None: the named model source builds one)."""


# ------------------------------------------------------------------------- core sections


@dataclass
class TrainerConfig:
    total_steps: int | None = None
    """RL steps of the run (None: the stage schedule's total)."""
    seed: int = 0
    """Seeds Python, NumPy, PyTorch, the data order and the rollout engine."""
    prompts_per_step: int = 16
    """Prompts sampled per RL step (the rollout batch is ``prompts_per_step x group_size``)."""
    group_size: int = 8
    """Responses sampled per prompt; GRPO's advantages are relative to the group."""
    updates_per_step: int = 1
    """Optimiser steps per rollout batch: the kept groups split into this many mini-batches of
    whole groups, trained in turn against the sampling policy's log-probs (1: strictly
    on-policy, the recipe's; more are off-policy, the PPO clip matters)."""
    async_steps: int = 0
    """0: the strictly on-policy loop (generate, then train, every rank doing both); 1:
    one-step asynchronous: ``rollout_ranks`` ranks generate step k+1's samples with the
    weights step k trains from while the other ranks train step k (torchrun, 2+ processes;
    ``loss.rollout_correction`` defaults to tis)."""
    rollout_ranks: int = 1
    """async_steps=1: how many ranks (the last ones) generate; the others train."""
    partial_rollout_tokens: int = 0
    """async_steps=1: 0 generates every sample to its end within its step; N > 0 lets each
    sample generate at most N tokens per step, the unfinished ones carrying on in the next
    step with the newer weights (partial rollouts: a step no longer waits for the longest
    sample; :mod:`or1.rl.partial_rollouts`)."""
    save_every: int = 0
    """Save a resumable checkpoint every this many steps (0: only at the end)."""
    keep_checkpoints: int = 2
    """The newest checkpoints kept in ``<run>/checkpoints``; older ones are deleted."""
    resume: str = "auto"  # auto | never | path of a checkpoint folder
    dump_samples: bool = False  # true: every step's samples (same as samples_every=1)
    samples_every: int = 0  # N > 0: every N steps, prompts/responses/rewards/advantages to loggers
    eval_every: int = 0  # 0: only before the first and after the last step
    eval_at_start: bool = True
    """Evaluate the held-out sets before the first step (the curve's starting point)."""
    export_final: bool = True
    """Write the final policy as a Hugging Face folder, ``<run>/final``."""
    max_refill_rounds: int = 2  # with filter.refill: extra sampling rounds to fill the batch
    max_nonfinite_steps: int = 3  # stop after this many skipped non-finite updates in a row
    min_free_disk_gb: float | None = (
        None  # None: ((keep_checkpoints+1)*3+1) x the weights' fp32 size
    )
    cache_dir: str = "${oc.env:OR1_CACHE_DIR,${oc.env:HOME}/.cache/or1}"
    """Where generated data and built models are cached (``OR1_CACHE_DIR`` overrides)."""
    num_threads: int = 0  # torch intra-op threads; 0: all cores
    dist_timeout_s: int = 1800  # torchrun launches: bound on any wait between ranks
    profile: bool = False  # true: torch profiler Chrome traces <run dir>/profile/step_<N>.json
    profile_steps: list[int] = field(default_factory=lambda: [2, 3])  # the steps profiled
    check_memory: bool = True  # GPU launches: refuse a run the memory plan says does not fit
    default_loggers: bool = True
    """Keep the console and JSONL loggers when ``logger=`` names neither (``logger=wandb``
    adds wandb to them; ``logger=[jsonl,wandb]`` is taken as written); false: only the named."""


@dataclass
class EvalConfig:
    """Held-out evaluation (validation in training and ``or1-eval``): ``k`` samples per
    problem; Avg@k (the accuracy), unbiased pass@k for ``pass_k``, maj@k on math sets."""

    datasets: list[str] = field(default_factory=list)  # empty: the data section's val files
    k: int = 4
    """Samples per problem: Avg@k is their mean accuracy."""
    temperature: float = 1.0
    """Sampling temperature of the evaluation (the released OR1 scripts use 0.6)."""
    top_p: float = 1.0
    """Nucleus sampling of the evaluation (1.0: off)."""
    max_tokens: int | None = None
    """Response token budget of every evaluation (None: the last stage's max response length,
    the same at every validation of a run, so its start and end accuracy compare)."""
    max_problems: int | None = None
    """Evaluate only the first this many problems of each set (None: all)."""
    pass_k: list[int] = field(default_factory=list)  # empty: 1, 2, 4, ... below k, and k
    chunk: int = 64  # problems per rollout call


@dataclass
class OfflineFilterConfig:
    """``or1-filter``: sample ``samples`` responses per prompt, keep prompts whose number of
    correct responses lies in ``[min_correct, max_correct]`` (None: ``samples - 1``)."""

    output: str | None = None  # default: <input stem>.filtered.parquet beside the input
    samples: int = 16
    """Responses sampled per prompt to estimate its pass rate."""
    min_correct: int = 1
    """Keep prompts with at least this many correct responses."""
    max_correct: int | None = None
    """Keep prompts with at most this many correct responses (None: ``samples - 1``)."""
    temperature: float = 1.0
    """Sampling temperature of the pass-rate estimate."""
    max_tokens: int | None = None  # None: the first stage's max response length
    prompts_per_call: int = 32
    """Prompts per rollout call (progress is saved after each call)."""
    keep_all: bool = False  # true: write every row with its pass rate, dropping none


@dataclass
class DataPrepConfig:
    """``or1-data``: run the ``data_pass`` sections, in order, over ``inputs`` (parquet /
    JSONL files; empty: the data section's train files, e.g. the generated CPU-demo pool),
    writing every stage's output and report into ``output_dir`` (None: the Hydra run folder;
    run again with the same folder to resume)."""

    inputs: list[str] = field(default_factory=list)
    """Parquet / JSONL files to prepare (empty: the data section's train files)."""
    output_dir: str | None = None
    """Where every stage writes its output and report (None: the Hydra run folder)."""
    workers: int = 0  # sandboxes at once in validate_code; 0: all cores


@dataclass
class ClusterConfig:
    """``or1-plan``: the GPUs the run is planned for (``world = nodes x gpus_per_node``)."""

    nodes: int = 1
    """Nodes of the planned cluster."""
    gpus_per_node: int = 8
    """GPUs per node."""
    gpu_memory_gib: float = 80.0  # memory of one GPU (an "80 GB" H100 shows ~79.2 GiB to PyTorch)


@dataclass
class PlanConfig:
    """``or1-plan`` (and the launch-time check of ``or1-train`` on GPUs): the model shape comes
    from ``model`` (an HF id the plan knows or a local HF folder; None: ``model.path``, else
    the experiment preset's model); ``reserve_gib`` per GPU is kept out of the plan for the
    CUDA context, NCCL buffers and allocator fragmentation; a rollout engine's KV cache must
    hold ``min_kv_sequences`` sequences of the stage's full length at once."""

    model: str | None = None
    """An HF id the plan knows or a local HF folder (None: ``model.path``, else the preset's)."""
    reserve_gib: float = 4.0
    """GiB per GPU kept out of the plan (CUDA context, NCCL buffers, fragmentation)."""
    min_kv_sequences: int = 8
    """The rollout KV cache must hold this many full-length sequences at once."""


@dataclass
class PlanSections:
    """The sections only ``or1-plan`` takes besides the ``or1-train`` config."""

    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)


COMMON_KEYS: tuple[tuple[str, str], ...] = (
    ("model.path", "A local Hugging Face model folder (None: the named model source builds one)."),
    (
        "data.path",
        "Training rows: a parquet or JSONL file or a list of them (None: the source builds them).",
    ),
    ("data.val_path", "Held-out rows evaluated during training: a file or a list of them."),
    ("trainer.total_steps", "RL steps of the run (None: the stage schedule's total)."),
    (
        "trainer.prompts_per_step",
        "Prompts sampled per RL step (the rollout batch is ``prompts_per_step x group_size``).",
    ),
    (
        "trainer.group_size",
        "Responses sampled per prompt; GRPO's advantages are relative to the group.",
    ),
    ("learner.lr", "AdamW learning rate: the peak of ``lr_schedule`` (constant by default)."),
    (
        "stages.stages.0.max_response_length",
        "Response token budget of the stage's rollouts (the context-length stage).",
    ),
    (
        "trainer.save_every",
        "Save a resumable checkpoint every this many steps (0: only at the end).",
    ),
    (
        "eval.temperature",
        "Sampling temperature of the evaluation (the released OR1 scripts use 0.6).",
    ),
)
"""The keys a user changes first, with their descriptions (``or1-train --help`` prints them
without importing the plugins; a test checks that each description is its schema field's)."""
