"""The interfaces of the components that fill or1's hook points.

A plugin registers a *component* (a factory and its config schema) for a hook point of
:data:`or1.core.hook_points.HOOK_POINTS` through :func:`or1.core.hookspecs.or1_register`; the Hydra
config names which registered component fills each hook point; the core builds it with
:meth:`or1.core.registry.Registry.build` (``factory(cfg, ctx)``) and then calls only the methods
below. Each method's docstring is its contract. Unless a docstring says otherwise, the core
calls a component on the thread that runs the trainer (or the command), one call at a time.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from or1.core.types import (
    Completion,
    Group,
    LossTotals,
    PassResult,
    SamplingParams,
    Score,
    Stage,
    TrainBatch,
)

if TYPE_CHECKING:
    from or1.launch.memory_plan import MemoryEstimate, MemoryQuery
    from or1.rl.learner_step import StepCoefficient


@dataclass
class BuildContext:
    """What every component factory receives besides its own config node.

    ``model_path`` is the resolved Hugging Face folder of the policy (config, safetensors,
    tokenizer); ``run_dir`` is the run's output folder (components put caches and temp files
    under it, never in the home folder); ``config`` is the whole run config, read-only.
    """

    run_dir: Path
    model_path: Path
    cache_dir: Path
    seed: int
    config: Any

    @classmethod
    def of_run(cls, config: Any, run_dir: Path, model_path: Path) -> BuildContext:
        """The context of a run config: cache folder and seed from its ``trainer`` section."""
        return cls(
            run_dir=Path(run_dir),
            model_path=Path(model_path),
            cache_dir=Path(config.trainer.cache_dir).expanduser(),
            seed=int(config.trainer.seed),
            config=config,
        )


class Component:
    """What every component class shares: a check of its config section that runs before
    anything is built or written."""

    @classmethod
    def check_config(cls, cfg: Any) -> None:
        """Called once, by ``or1-train`` before Hydra creates the run folder and its log and
        before any engine starts (and again at the start of :func:`or1.launch.prepare.prepare`), with
        this component's config section: raise :class:`~or1.core.errors.ConfigError` with one line
        naming the key and the value for values its schema's types cannot rule out (a
        negative target, an unknown mode). Pure and cheap: reads ``cfg`` only, imports no
        engine library, touches no file or device. The default accepts everything."""


class Stateful:
    """Components with state that a checkpoint must hold override these two methods.

    ``state_dict`` returns picklable data (tensors allowed); ``load_state_dict`` restores it
    exactly, so that a resumed run repeats the uninterrupted one.
    """

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        return None


class RolloutEngine(Component, Stateful, ABC):
    """Samples completions from the current policy.

    Under ``torchrun`` every rank builds its engine (an engine may span
    ``tensor_parallel_size`` consecutive ranks, which then receive the same calls); each
    engine is called with the prompts dealt to it (a call is skipped when none were),
    ``update_weights`` gets the full weights from the learner shards of the same rank, and
    ``state_dict`` is kept per rank."""

    owns_process_group: bool = False
    """True for engines that set up torch.distributed's default process group in the trainer's
    own process (in-process vLLM): they cannot run in a multi-process (torchrun) launch, whose
    ranks already own that group, and such a launch stops with a config error."""

    @abstractmethod
    def generate(
        self, prompts: Sequence[list[int]], params: SamplingParams
    ) -> list[list[Completion]]:
        """Sample ``params.n`` completions for each prompt (chat-templated token ids).

        Returns one list of exactly ``params.n`` completions per prompt, in prompt order.
        Sampling uses ``params.temperature/top_p/top_k``; with ``params.seed`` set the call is
        repeatable for the same weights. A completion stops at the tokenizer's EOS (kept in
        ``response_ids``, finish reason ``stop``) or after ``params.max_tokens`` tokens (finish
        reason ``length``). Raises ``ValueError`` naming the prompt for an empty prompt or one
        longer than the engine's context.
        """

    def generate_stream(
        self,
        prompts: Sequence[list[int]],
        params: SamplingParams,
        on_group: Callable[[int, list[Completion]], None],
    ) -> list[list[Completion]]:
        """:meth:`generate`, and ``on_group(i, completions)`` for prompt ``i`` as soon as all
        its ``params.n`` completions are finished, once per prompt, in finishing order; the
        lists passed are the ones returned. The trainer uses it to score finished groups
        while the rest still generate. ``on_group`` runs on the calling thread and must return
        quickly. Default: :meth:`generate`, then ``on_group`` for every prompt in order."""
        groups = self.generate(prompts, params)
        for i, completions in enumerate(groups):
            on_group(i, completions)
        return groups

    @abstractmethod
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Load new policy weights, given under Hugging Face parameter names, into the running
        engine without reloading it; later ``generate`` calls must use them (caches computed
        with the old weights are dropped). Tensors are not mutated."""

    def sleep(self) -> None:
        """Free accelerator memory (KV cache, weights) while the learner trains. Default no-op."""

    def wake_up(self) -> None:
        """Undo ``sleep`` before the next ``generate`` / ``update_weights``. Default no-op."""

    def close(self) -> None:
        """Release every resource; the engine is not used afterwards. Default no-op."""

    @classmethod
    def check_model(cls, cfg: Any, hf_config: Any, model_path: Path) -> None:
        """Called once per rank before any engine is built, right after the model folder's
        config.json is read, with the engine's config section, that config
        (``transformers.AutoConfig``) and the folder: raise
        :class:`~or1.core.errors.ConfigError` with one line naming the model folder, the
        architecture and the limit it breaks for a model this engine cannot serve here (an
        architecture it does not implement, a head dimension its attention kernels lack on
        this device). Reads the config only: loads no weights, imports no engine library,
        touches no device beyond asking which kind is present. The default accepts every
        model."""

    @classmethod
    def memory_estimate(cls, cfg: Any, query: MemoryQuery) -> MemoryEstimate | None:
        """By calculation only (nothing built, no device touched): what an engine built from
        config section ``cfg`` holds on one GPU of ``query.layout`` (``query.gpu_memory``
        bytes) while serving a model of ``query.shape`` at ``query.stage``. Returns a
        :class:`~or1.launch.memory_plan.MemoryEstimate`: bytes per item (``weights``,
        ``activations``, ``kv_cache``) for phase ``rollout`` (awake, generating) and phase
        ``learner`` (what stays on the GPU while the learner trains, e.g. nothing once asleep),
        ``problems`` when it cannot serve the stage at all (a KV cache that holds no
        full-length sequence), ``levers`` (settings that would free memory). ``cfg`` is read
        with ``getattr(cfg, key, default)`` (the plan passes namespaces with tried values).
        Raises ``ConfigError`` for a layout it cannot run. ``or1-plan`` and ``or1-train``'s
        launch check call it. Default None: no estimate (the plan says it cannot decide)."""
        return None


class Learner(Component, Stateful, ABC):
    """Holds the trainable policy and its optimiser."""

    @abstractmethod
    def compute_logprobs(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Without gradients, return ``(logprobs, entropy)``, both ``[B, T]`` float32.

        ``logprobs[b, t]`` is ``log p(input_ids[b, t] | input_ids[b, :t])`` under the current
        policy with logits divided by ``batch.temperature``; ``entropy[b, t]`` is the
        full-vocabulary entropy of that same distribution. Position 0 and padding are 0.
        """

    def compute_ref_logprobs(self, batch: TrainBatch) -> torch.Tensor:
        """Without gradients, ``[B, T]`` log-probs under the frozen *initial* policy (the
        reference model), same conventions as ``compute_logprobs``. Called only when the loss
        has a KL term; a learner builds its reference model on the first call, never before."""
        raise NotImplementedError(
            f"{type(self).__name__} has no reference model (KL terms unsupported)"
        )

    @abstractmethod
    def train_step(
        self, batch: TrainBatch, loss: PolicyLoss, entropy_coef: float
    ) -> dict[str, float]:
        """One optimisation step on the whole batch.

        The learner cuts the batch into micro-batches (its token budget), and for each one
        accumulates gradients of ``sum(w * l) - entropy_coef * sum(w * H)`` where ``l`` are
        ``loss.per_token_loss(...)`` terms, ``H`` the differentiable per-token entropy and
        ``w = loss.token_weights(...)`` computed once per step with the step's
        :class:`~or1.core.types.LossTotals` summed over all data-parallel ranks (the global
        normaliser: the result does not depend on the micro-batch or data-parallel split).
        Then it clips the gradient norm and steps the optimiser at the rate of its
        ``learner.lr_schedule`` (an :class:`~or1.rl.lr_schedule.LrCounter` it keeps and hands
        to :func:`~or1.rl.learner_step.finish_step`; its place goes into the checkpoint). ``batch.old_logprobs`` must be set. Returns at least
        ``loss/pg`` (the weighted policy-gradient loss), ``loss/entropy`` (the weighted
        entropy), ``loss/total``, ``grad_norm`` (before clipping) and any per-token statistic
        the loss reported (weighted the same way, prefixed ``loss/``); the built-in learners
        also return ``learner/lr``, the step's rate.

        Non-finite guard: if the loss or the gradient norm is not finite, the learner leaves the
        weights and the optimiser state untouched (no step) and returns ``train/nonfinite``
        = 1.0 (0.0 otherwise); the trainer counts such steps and stops the run after
        ``trainer.max_nonfinite_steps`` of them in a row.
        """

    def fuses_old_logprobs(self, batch: TrainBatch) -> bool:
        """Whether :meth:`fused_train_step` can do this strictly on-policy step: true only
        when the training forward of every rank's share of ``batch`` is a single
        micro-batch holding all of its tokens, so that forward's detached log-probs are the
        old log-probs. Called by :func:`or1.rl.learner_step.on_policy_step` (the one place the
        fused path is chosen) once per on-policy step, before anything else of it; under
        torchrun collective (every rank calls it with its share and all answer alike). The
        default False: the step then runs :meth:`compute_logprobs` and :meth:`train_step`."""
        return False

    def fused_train_step(
        self, batch: TrainBatch, loss: PolicyLoss, coefficient: StepCoefficient
    ) -> dict[str, float]:
        """:meth:`train_step` whose old log-probs come from its own training forward, called
        instead of ``compute_logprobs`` + ``train_step`` only when
        :meth:`fuses_old_logprobs` said so for this ``batch``. ``batch.old_logprobs`` is
        unset; the learner asks ``coefficient.of_micro_batch(...)`` after the forward and
        before the backward (which sets them and measures the entropy coefficient) and
        ``coefficient.of_step(batch)`` after its micro-batch loop (a rank without rows joins
        the coefficient's reduction there), as it does in ``train_step`` with
        :meth:`~or1.rl.learner_step.StepCoefficient.given`. The result must agree with
        ``compute_logprobs`` + ``train_step`` to float tolerance; the metrics are
        ``train_step``'s with ``learner/fused_old_logprobs`` = 1.0."""
        raise NotImplementedError(f"{type(self).__name__} has no fused on-policy step")

    @abstractmethod
    def named_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """The full (unsharded) policy weights under Hugging Face parameter names, for the
        rollout engine's weight sync. Tensors may be views: callers must not mutate them."""

    @abstractmethod
    def save_pretrained(self, path: Path) -> None:
        """Write the policy as a Hugging Face folder (config, safetensors, tokenizer) at path."""

    def reset_optimizer(self) -> None:
        """Forget optimiser state (moments, step count), e.g. at a stage boundary."""

    multiprocess: bool = False
    """True for learners that run in several processes (``torchrun``, SPMD). There every
    rank builds the learner and calls every method at the same point of the loop with *its
    own share*: the batch given to :meth:`compute_logprobs`, :meth:`train_step`,
    :meth:`fuses_old_logprobs` and :meth:`fused_train_step` is this rank's share of the step (the trainer's token-balanced
    split for data-parallel index :meth:`data_shard`, the same rows on every tensor-parallel
    rank of that index, possibly no rows at all), and the returned metrics are the step's,
    reduced over the ranks (equal on every rank). :meth:`named_weights`, :meth:`state_dict`,
    :meth:`load_state_dict`, :meth:`save_pretrained` and :meth:`reset_optimizer` are
    collective: every rank calls them together."""

    @classmethod
    def check_launch(cls, cfg: Any, world_size: int) -> None:
        """Called once per rank before anything is built or loaded, with the learner's config
        section and the launch's process count: raise :class:`~or1.core.errors.ConfigError` (one
        line naming the key and the number) for settings this launch cannot run (a parallel
        layout that does not divide the world, a precision the device lacks). The default
        accepts everything."""

    @classmethod
    def check_model(cls, cfg: Any, hf_config: Any, model_path: Path) -> None:
        """Called once per rank before any engine is built, right after the model folder's
        config.json is read, with the learner's config section, that config
        (``transformers.AutoConfig``) and the folder: raise
        :class:`~or1.core.errors.ConfigError` with one line naming the model folder, the
        architecture and the limit it breaks for a model this learner cannot train (an
        architecture it has no implementation or weight mapping for, a setting of it such as
        RoPE scaling it does not reproduce, a parallel size that does not divide it). Reads
        the config (and may list the folder's files) only: loads no weights, builds nothing.
        The default accepts every model."""

    sharded_checkpoints: bool = False
    """True for learners that write their checkpoint state rank by rank
    (:meth:`save_sharded` / :meth:`load_sharded`) instead of one ``state_dict``."""

    def save_sharded(self, folder: Path) -> None:
        """Collective: every rank writes its own shards of the model and optimiser state into
        ``folder`` (the checkpoint's ``learner/``, on a file system every rank sees); no rank
        gathers more than its own shards. Only for ``sharded_checkpoints`` learners."""
        raise NotImplementedError(f"{type(self).__name__} has no sharded checkpoints")

    def load_sharded(self, folder: Path) -> None:
        """Collective: every rank reads the parts of ``folder`` (written by
        :meth:`save_sharded`, possibly at another parallel layout) that its own shards need."""
        raise NotImplementedError(f"{type(self).__name__} has no sharded checkpoints")

    def data_shard(self) -> tuple[int, int]:
        """``(index, count)``: this rank's data-parallel index and the number of data-parallel
        shares the trainer splits each step's sequences into. One process: ``(0, 1)``."""
        return 0, 1

    def close(self) -> None:
        """Release resources. Called once at the end of training, also after an error.
        Default no-op."""

    @classmethod
    def memory_estimate(cls, cfg: Any, query: MemoryQuery) -> MemoryEstimate | None:
        """By calculation only (nothing built, no device touched): what a learner built from
        config section ``cfg`` holds on one GPU of ``query.layout`` for a model of
        ``query.shape`` at ``query.stage``. Returns a :class:`~or1.launch.memory_plan.MemoryEstimate`:
        bytes per item (``weights``, ``gradients``, ``optimizer``, ``activations``) for phase
        ``learner`` (its step's peak: ``activations`` is the peak of the stage's largest
        micro-batch above the resident state, or of whatever else is on the GPU only during
        the step if larger, such as offloaded optimiser state during the update) and phase ``rollout`` (what stays resident while
        the engine generates), ``levers``: settings not set now that would lower its memory,
        in the order to try them. ``cfg`` is read with ``getattr(cfg, key, default)`` (the
        plan passes namespaces with tried values). Raises ``ConfigError`` for a layout it
        cannot run (a parallel size that does not divide the model). ``or1-plan`` and
        ``or1-train``'s launch check call it. Default None: no estimate."""
        return None


class RewardVerifier(Component, ABC):
    """Scores responses against a row's ground truth."""

    @abstractmethod
    def score(self, response: str, row: dict[str, Any]) -> Score:
        """Score one response text for one dataset row; never raises for bad model output
        (that is ``wrong``/``no_answer``/``error``), never blocks past its own timeout."""

    def score_many(self, responses: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[Score]:
        """Score ``responses[i]`` against ``rows[i]`` for all i, in order; never raises for
        bad model output. Plugins override this to run in parallel (bounded); the default
        calls ``score`` in a loop.

        Who calls it: in training, the trainer once per *group* (the ``group_size``
        responses of one prompt, all with that prompt's row), as soon as the rollout engine
        hands the group over, from a helper thread (``or1-reward-*``, one per sampling round,
        one call at a time) while the other groups still generate; after a rollout-engine
        restart the groups generated again are scored in one call from the trainer's own
        thread, possibly while the helper thread finishes a call for a group that was
        generated again. ``or1-eval`` and the in-training evaluation call it once per chunk
        of problems, ``or1-filter`` once per rollout call, ``or1-verify`` and the
        ``validate_code`` pass once per chunk of rows, each from the command's thread. So
        it must be safe to call from a thread other than the one that built the verifier,
        and from two threads at once (its worker pool or sandboxes shared safely); it must
        not mutate ``rows``."""
        return [self.score(r, row) for r, row in zip(responses, rows, strict=True)]

    def answer_key(self, response: str, row: dict[str, Any]) -> str | None:
        """The response's final answer in a normal form, for majority voting (maj@K): two
        responses with equal keys get equal scores. None when the response has no answer or
        the verifier has no notion of one (the default)."""
        return None

    def close(self) -> None:
        """Release workers. Default no-op."""


class OnlineFilter(Component, Stateful, ABC):
    """Chooses which whole groups of a step train."""

    refill: bool = False
    """If true the trainer samples more prompts while fewer groups than the batch size are kept
    (bounded by ``trainer.max_refill_rounds``)."""

    @abstractmethod
    def keep(self, groups: Sequence[Group]) -> list[bool]:
        """Return one flag per group (True = train on it), given scored groups (``rewards``
        set). Never splits a group; does not mutate groups (the trainer sets ``kept``).
        Called by the trainer once per sampling round (the step's first, and each refill
        round) with that round's groups of this rank's engine."""


class AdvantageEstimator(Component, Stateful, ABC):
    """Turns grouped rewards into advantages."""

    @abstractmethod
    def compute(
        self, rewards: torch.Tensor, truncated: torch.Tensor, truncation: str
    ) -> torch.Tensor:
        """Given ``rewards`` ``[G, n]`` float and ``truncated`` ``[G, n]`` bool, return the
        per-completion advantage ``[G, n]`` (the trainer broadcasts it over the response tokens).

        ``truncation`` (from the current stage) is ``none`` (truncated completions count like any
        other), ``mask_after`` (they count in the group statistics, then get advantage 0) or
        ``mask_before`` (excluded from the statistics, advantage 0). The trainer also removes
        masked completions' tokens from the loss. Called by the trainer once per step with
        this rank's kept groups (not at all when it kept none).
        """


class PolicyLoss(Component, ABC):
    """The per-token policy loss and how it aggregates over a batch."""

    needs_reference: bool = False
    """True when ``per_token_loss`` needs ``ref_logprobs`` (a KL term); otherwise no reference
    model is ever built."""

    needs_rollout_logprobs: bool = False
    """True when ``per_token_loss`` needs ``rollout_logprobs`` (a rollout/learner mismatch
    correction); only then is it passed (``TrainBatch.rollout_logprobs`` of the micro-batch,
    and a step whose engine returned no sampling log-probs fails)."""

    @abstractmethod
    def token_weights(
        self,
        response_mask: torch.Tensor,
        micro_batches: list[list[int]],
        totals: LossTotals | None = None,
    ) -> torch.Tensor:
        """Aggregation weights ``w`` ``[B, T]`` for this rank's rows, such that the step's
        loss is ``sum(w * l)`` summed over all micro-batches and all data-parallel ranks.
        ``micro_batches`` lists the row indices of each of this rank's micro-batches (only
        modes that weight by micro-batch use it). ``totals`` are the step's counts summed over
        every data-parallel rank (the global normaliser); None means this batch is the whole
        step (one rank). E.g. the global token mean is ``w = mask / totals.tokens``. Called
        by the learner once per optimisation step, before its micro-batches."""

    @abstractmethod
    def per_token_loss(
        self,
        logprobs: torch.Tensor,
        old_logprobs: torch.Tensor,
        advantages: torch.Tensor,
        mask: torch.Tensor,
        ref_logprobs: torch.Tensor | None = None,
        rollout_logprobs: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Per-token loss terms ``l`` ``[b, t]`` (differentiable in ``logprobs``) and per-token
        statistics (e.g. ``clipfrac``) of the same shape, which learners aggregate with ``w``.
        ``ref_logprobs`` is given exactly when ``needs_reference`` is true, and
        ``rollout_logprobs`` (the engine's sampling log-probs, same layout) exactly when
        ``needs_rollout_logprobs`` is true (a loss without that flag need not accept it).
        Called by the learner once per micro-batch, through
        :func:`or1.rl.learner_step.backward_micro_batch`."""


class EntropyController(Component, Stateful, ABC):
    """Chooses the entropy-bonus coefficient of each step."""

    estimator: str = "full_vocab"
    """``full_vocab``: entropy of the full next-token distribution; ``sampled_nll``: mean
    negative log-prob of the sampled tokens. :class:`or1.rl.learner_step.EntropyCoefficient`
    measures ``e_k`` this way, over the response tokens of the step on every rank."""

    @abstractmethod
    def coefficient(self, entropy: float) -> tuple[float, bool]:
        """Given this step's measured batch entropy ``e_k``, return ``(c_k, active)``: the
        coefficient and whether the bonus applies; the loss uses ``c_k * active``. Pure.
        Called once per training step, before any gradient, by
        :class:`or1.rl.learner_step.EntropyCoefficient`: from inside the learner's step (the
        on-policy update) or before the mini-batch updates; the same ``e_k`` on every rank."""

    @abstractmethod
    def update(self, entropy: float) -> None:
        """Advance the state after step k with the same ``e_k``; called by the trainer once
        per training step, after the learner's update (not on a step that trained
        nothing)."""

    def reset(self) -> None:
        """Return to the initial state; called by the trainer on entering a stage with
        ``reset_entropy`` (not for a run's first stage)."""


class StageScheduler(Component, Stateful, ABC):
    """The multi-stage schedule."""

    @abstractmethod
    def stage_at(self, step: int) -> Stage:
        """The stage that applies at (0-based) ``step``. Pure. For a step already taken
        (:meth:`observe` has seen it) the stage it was taken in; for a later one the stage
        the schedule plans from its current state, which a scheduler that moves on by a
        signal may still bring forward. Called by the trainer at the start of every step
        (and for the last step taken, on resuming), by evaluation for the last stage's
        response budget, and by ``or1-filter``, ``or1-plan`` and the ``difficulty`` pass."""

    def observe(self, step: int, metrics: Mapping[str, float]) -> None:
        """Called by the trainer after every step it takes, with the (0-based) ``step`` that
        :meth:`stage_at` answered for and that step's metrics (its ``metrics.jsonl`` row but
        the held-out evaluation's; global, the same on every rank of a torchrun launch), before
        the step's checkpoint is saved.
        A scheduler that moves on by a signal updates its state here, so :meth:`stage_at`
        may answer differently for later steps, never for this one or earlier ones; what it
        decides must be a function of the metrics and its state only (every rank decides
        alike) and must be in its ``state_dict``. Default: nothing (a fixed schedule)."""

    @property
    @abstractmethod
    def total_steps(self) -> int:
        """Steps over all stages."""


class Logger(Component, ABC):
    """Receives metrics, samples, messages and artifacts: the one way to observe a run (there
    are no event hooks). Built on rank 0 only; the trainer calls every method from its own
    thread. A method that raises disables this logger for the rest of the run (reported
    once); training goes on."""

    def start(
        self, run_dir: Path, config: dict[str, Any], total_steps: int, start_step: int
    ) -> None:
        """Called once before the first step, after every component is built and a
        checkpoint (if any) restored, with the resolved config (``start_step > 0`` when
        resuming)."""

    @abstractmethod
    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        """Called once per step with its flat ``name -> number`` metrics (the held-out
        evaluation's merged in on evaluation steps), and once before the first step with
        the starting evaluation (``step`` = the start step)."""

    def log_samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        """Per-response records of a step (see the trainer's ``samples.jsonl``), on the steps
        ``trainer.dump_samples`` / ``trainer.samples_every`` choose. Default no-op."""

    def log_message(self, message: str) -> None:
        """A human-readable event: a stage entered, a checkpoint saved (with its path), a
        warning, a stop by a signal, the held-out accuracy from start to end. Default
        no-op."""

    def log_artifact(self, name: str, path: Path, kind: str) -> None:
        """A finished file or folder worth keeping with the run (``kind`` ``model`` for the
        exported final model). Default no-op."""

    def close(self) -> None:
        """Flush and release. Called once at the end, also after an error or a stop."""


class DataPassContext(ABC):
    """What ``or1-data`` gives a :class:`DataPass` besides the rows.

    ``config`` is the whole run config (read-only); ``out_dir`` the output folder; ``prefix``
    this pass's file prefix there (``<out>/<NN>_<name>``); ``fingerprint`` identifies the
    pass's config and input (work files written under another fingerprint are stale);
    ``workers`` the parallelism allowed (>= 1); ``seed`` the run seed.
    """

    config: Any
    out_dir: Path
    prefix: Path
    fingerprint: str
    workers: int
    seed: int

    @abstractmethod
    def progress(self, total: int, description: str) -> Any:
        """Start a progress bar of ``total`` units; returns ``advance(n: int = 1)``."""

    @abstractmethod
    def verifier(self, name: str, overrides: dict[str, Any] | None = None) -> RewardVerifier:
        """The registered verifier ``name`` built from its schema's defaults updated with
        ``overrides`` (dotted keys allowed); closed by ``or1-data`` when the run ends."""

    @abstractmethod
    def run_verifier(self) -> RewardVerifier:
        """The run config's own verifier (the ``verifier`` section), built once."""

    @abstractmethod
    def rollout(self, model_path: str | None = None) -> tuple[RolloutEngine, Any]:
        """``(engine, tokenizer)`` for the model at ``model_path`` (None: the run config's
        ``model`` section, i.e. the policy to be trained), built once per model with the run
        config's ``rollout`` section; closed by ``or1-data`` when the run ends."""

    @abstractmethod
    def val_files(self) -> list[Path]:
        """The data section's held-out files (``data.val_path``, or the data source's)."""


class DataPass(Component, ABC):
    """One pass of ``or1-data``: keeps, drops and may annotate rows."""

    raw_input: bool = False
    """True for a pass that accepts rows in any schema (``normalise``); every other pass
    receives rows in the OR1 row schema, each with a unique ``uid`` column and a
    ``provenance`` column (``file``, ``row``), and must return such rows."""

    fingerprint_sections: tuple[str, ...] = ()
    """Sections of the run config besides the pass's own that decide its output (e.g.
    ``("model", "rollout", "verifier")`` for a pass that samples the policy)."""

    @abstractmethod
    def run(self, rows: list[dict[str, Any]], ctx: DataPassContext) -> PassResult:
        """Return the rows kept (input order; new columns allowed, the ``uid`` unchanged) and
        a :class:`or1.core.types.DroppedRow` with a reason for every other input row. Bad *rows*
        are dropped with a reason, never raised; bad *config* raises ``ConfigError``. A pass
        that does expensive work per row records it under ``ctx.prefix`` (tagged with
        ``ctx.fingerprint``) so an interrupted run resumes without redoing it."""

    def close(self) -> None:
        """Release resources. Default no-op."""
