"""The memory plan: will a run fit on its GPUs? By calculation, before anything is built.

``or1-plan experiment=or1_7b cluster.nodes=1 cluster.gpus_per_node=8 cluster.gpu_memory_gib=80``
prints, per GPU, for every stage and for both phases of a step (the rollout engine awake and
generating; the learner's optimisation step), the bytes of weights, gradients, optimiser state,
activations at the stage's longest micro-batch, the engine's KV cache and the margin left, then
the smallest parallel layout that fits, and ends with ``fits`` or ``does not fit: <what to
change>``. ``or1-train`` runs the same check at launch on GPU machines
(:func:`check_fits`).

The core knows no engine: each component answers for itself through the optional classmethod
``memory_estimate(cfg, query)`` of :class:`or1.core.interfaces.Learner` and
:class:`or1.core.interfaces.RolloutEngine` (what one GPU holds of it in each phase, and the settings
that would lower it). This module resolves the model's shape, enumerates the stages, adds the
components up per phase, searches layouts and prints. See docs/memory-plan.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from or1.core.errors import ConfigError

GIB = 1 << 30
PHASES = ("rollout", "learner")
"""The phases of a step: ``rollout`` (the engine generates; the learner's resident state waits
beside it) and ``learner`` (the optimisation step; the engine sleeps if it can)."""
PHASE_NAMES = {"rollout": "rollout awake", "learner": "learner step"}
ITEMS = ("weights", "gradients", "optimizer", "activations", "kv_cache")
"""What a component may hold on a GPU in a phase (bytes), the plan's columns."""


# --------------------------------------------------------------------------- what is asked


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only transformer's sizes (Qwen2 / Llama family), as an HF ``config.json``
    gives them."""

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    ffn_hidden_size: int
    vocab_size: int
    tie_embeddings: bool = False
    qkv_bias: bool = True

    @classmethod
    def from_hf_config(cls, config: dict[str, Any], name: str) -> ModelShape:
        """The shape of an HF config dict; ConfigError naming ``name`` if a size is missing."""
        try:
            heads = int(config["num_attention_heads"])
            hidden = int(config["hidden_size"])
            archs = config.get("architectures") or [config.get("model_type", "")]
            return cls(
                name=name,
                num_layers=int(config["num_hidden_layers"]),
                hidden_size=hidden,
                num_heads=heads,
                num_kv_heads=int(config.get("num_key_value_heads") or heads),
                head_dim=int(config.get("head_dim") or hidden // heads),
                ffn_hidden_size=int(config["intermediate_size"]),
                vocab_size=int(config["vocab_size"]),
                tie_embeddings=bool(config.get("tie_word_embeddings", False)),
                qkv_bias="qwen2" in str(archs[0]).lower(),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{name}: config.json lacks a transformer size ({exc})") from None

    def layer_params(self) -> int:
        """Parameters of one layer: QKV (+ bias), output projection, gated MLP, two norms."""
        h, d = self.hidden_size, self.head_dim
        qkv = (self.num_heads + 2 * self.num_kv_heads) * d
        bias = qkv if self.qkv_bias else 0
        return h * qkv + bias + self.num_heads * d * h + 3 * h * self.ffn_hidden_size + 2 * h

    def num_params(self) -> int:
        """All parameters: layers, embedding, output layer (unless tied), final norm."""
        embeddings = self.vocab_size * self.hidden_size * (1 if self.tie_embeddings else 2)
        return self.num_layers * self.layer_params() + embeddings + self.hidden_size


KNOWN_MODELS: dict[str, ModelShape] = {
    s.name: s
    for s in [
        ModelShape("deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", 28, 1536, 12, 2, 128, 8960, 151936),
        ModelShape("deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", 28, 3584, 28, 4, 128, 18944, 152064),
        ModelShape("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B", 64, 5120, 40, 8, 128, 27648, 152064),
        ModelShape("Skywork/Skywork-OR1-7B", 28, 3584, 28, 4, 128, 18944, 152064),
        ModelShape("Skywork/Skywork-OR1-32B", 64, 5120, 40, 8, 128, 27648, 152064),
    ]
}
"""Shapes of the recipe's models (from their HF ``config.json``), for planning on a machine
that does not hold them; keyed by HF id (a folder of the same name also matches)."""

PRESET_MODELS = {
    "or1_math_7b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
    "or1_7b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B",
    "or1_32b": "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B",
}
"""The model each GPU preset starts from (docs/reproduce.md), used when ``model.path`` is unset."""


@dataclass(frozen=True)
class ParallelLayout:
    """How the world's GPUs are cut: ``world = tensor x context x data parallel`` for the
    learner; the rollout engines span ``rollout_tensor_parallel`` GPUs each."""

    tensor_parallel: int = 1
    context_parallel: int = 1
    data_parallel: int = 1
    rollout_tensor_parallel: int = 1

    @property
    def world(self) -> int:
        return self.tensor_parallel * self.context_parallel * self.data_parallel

    def describe(self) -> str:
        return (
            f"learner TP={self.tensor_parallel} CP={self.context_parallel} "
            f"DP={self.data_parallel}, rollout TP={self.rollout_tensor_parallel}"
        )


@dataclass(frozen=True)
class StageLoad:
    """What one stage asks: sequences of up to ``max_prompt_length + max_response_length``
    tokens, ``sequences`` of them per step (all ranks), cut by the learner into micro-batches
    of ``micro_batch_tokens`` (0: one micro-batch per rank)."""

    name: str
    max_prompt_length: int
    max_response_length: int
    micro_batch_tokens: int
    sequences: int

    @property
    def max_sequence_length(self) -> int:
        return self.max_prompt_length + self.max_response_length


@dataclass(frozen=True)
class MemoryQuery:
    """The question a component's ``memory_estimate`` answers: the model's ``shape``, the
    parallel ``layout``, one ``stage``, the memory of one GPU (``gpu_memory`` bytes) and the
    ``device`` kind the estimate is for (``cuda``; ``cpu`` for the validation runs)."""

    shape: ModelShape
    layout: ParallelLayout
    stage: StageLoad
    gpu_memory: int
    device: str = "cuda"


@dataclass
class MemoryEstimate:
    """A component's answer: bytes per item (:data:`ITEMS`) for each phase (:data:`PHASES`)
    on one GPU; ``problems``: reasons it cannot run whatever the margin (e.g. a KV cache too
    small for one sequence), each one line naming the key; ``levers``: ``(key, value)``
    settings of the component, not set now, that would lower its memory, in the order to try
    them; ``notes``: how it was counted, the same at every stage; ``detail``: what it
    counted at this stage (one line each); ``capacity``: for an engine, how many sequences of
    the stage's full length its KV cache holds at once (the plan asks for at least
    ``plan.min_kv_sequences``)."""

    phases: dict[str, dict[str, int]]
    problems: list[str] = field(default_factory=list)
    levers: list[tuple[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    detail: list[str] = field(default_factory=list)
    capacity: int | None = None


# --------------------------------------------------------------------------- the plan


@dataclass
class PhaseTotal:
    phase: str
    parts: dict[str, dict[str, int]]  # holder (learner / rollout) -> item -> bytes
    total: int
    margin: int


@dataclass
class StagePlan:
    stage: StageLoad
    phases: list[PhaseTotal]
    problems: list[str]
    detail: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return not self.problems and all(p.margin >= 0 for p in self.phases)

    def worst(self) -> PhaseTotal:
        return min(self.phases, key=lambda p: p.margin)


@dataclass
class Plan:
    layout: ParallelLayout
    settings: dict[str, dict[str, Any]]  # group -> the settings the plan assumed
    stages: list[StagePlan]
    notes: list[str]
    gpu_memory: int
    reserve: int

    @property
    def fits(self) -> bool:
        return all(s.fits for s in self.stages)

    def first_problem(self) -> str:
        for s in self.stages:
            if s.problems:
                return f"stage {s.stage.name}: {s.problems[0]}"
            w = s.worst()
            if w.margin < 0:
                return (
                    f"stage {s.stage.name}, {PHASE_NAMES[w.phase]}: {w.total / GIB:.1f} GiB per GPU, "
                    f"{(self.gpu_memory - self.reserve) / GIB:.1f} GiB available"
                )
        return ""


Estimator = Callable[[Any, MemoryQuery], MemoryEstimate | None]


@dataclass
class Planner:
    """Everything needed to plan one run config at any layout: the model shape, the stages,
    the two components' estimators and config sections (as open namespaces, so that levers
    and layouts can be tried), the GPU memory and the reserve."""

    shape: ModelShape
    stages: list[StageLoad]
    estimators: dict[str, Estimator]  # group (learner / rollout) -> memory_estimate
    sections: dict[str, SimpleNamespace]
    names: dict[str, str]  # group -> component name
    gpu_memory: int
    reserve: int
    device: str = "cuda"
    min_kv_sequences: int = 1

    def estimate(
        self, layout: ParallelLayout, sections: dict[str, SimpleNamespace] | None = None
    ) -> Plan:
        sections = sections or self.sections
        stage_plans, notes = [], []
        for stage in self.stages:
            query = MemoryQuery(self.shape, layout, stage, self.gpu_memory, self.device)
            answers = {g: self._answer(g, sections[g], query) for g in self.estimators}
            problems = [f"{g}.{p}" for g, a in answers.items() for p in a.problems]
            for g, a in answers.items():
                if not a.problems and a.capacity is not None and a.capacity < self.min_kv_sequences:
                    problems.append(
                        f"{g}: its KV cache holds {a.capacity} sequence(s) of "
                        f"{stage.max_sequence_length} tokens at once, fewer than "
                        f"plan.min_kv_sequences={self.min_kv_sequences}"
                    )
            phases = []
            for phase in PHASES:
                parts = {g: dict(a.phases.get(phase, {})) for g, a in answers.items()}
                total = sum(sum(items.values()) for items in parts.values())
                phases.append(
                    PhaseTotal(phase, parts, total, self.gpu_memory - self.reserve - total)
                )
            detail = [f"{self.names[g]}: {d}" for g, a in answers.items() for d in a.detail]
            stage_plans.append(StagePlan(stage, phases, problems, detail))
            for a in answers.values():
                notes += [n for n in a.notes if n not in notes]
        settings = {g: vars(s) for g, s in sections.items()}
        return Plan(layout, settings, stage_plans, notes, self.gpu_memory, self.reserve)

    def _answer(self, group: str, section: SimpleNamespace, query: MemoryQuery) -> MemoryEstimate:
        answer = self.estimators[group](section, query)
        if answer is None:
            raise ConfigError(
                f"{group}={self.names[group]} gives no memory estimate (its class has no "
                "memory_estimate), so the plan cannot say whether it fits"
            )
        return answer

    def levers(self, layouts: Sequence[ParallelLayout]) -> list[tuple[str, str, Any]]:
        """``(group, key, value)``: every lever the components offer (at the first of
        ``layouts`` each can run), rollout's first (they cost no speed), each component's in
        its own order."""
        stage = self.stages[-1]
        out = []
        for group in ("rollout", "learner"):
            if group not in self.estimators:
                continue
            for layout in layouts:
                query = MemoryQuery(self.shape, layout, stage, self.gpu_memory, self.device)
                try:
                    answer = self._answer(group, self.sections[group], query)
                except ConfigError:
                    continue
                out += [(group, k, v) for k, v in answer.levers]
                break
        return out


def with_settings(
    sections: dict[str, SimpleNamespace], changes: Iterable[tuple[str, str, Any]]
) -> dict[str, SimpleNamespace]:
    out = {g: SimpleNamespace(**vars(s)) for g, s in sections.items()}
    for group, key, value in changes:
        setattr(out[group], key, value)
    return out


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def candidate_layouts(
    shape: ModelShape,
    world: int,
    gpus_per_node: int,
    sections: dict[str, SimpleNamespace],
) -> list[ParallelLayout]:
    """Every layout worth trying, least model parallelism (TP x CP) first, then the smallest
    TP, then the smallest rollout TP: TP
    divides the GPUs of a node, the attention and KV heads and the FFN width; CP divides what
    TP leaves of the world (only for a learner with a ``context_parallel_size`` key); the
    rollout TP divides a node and the attention heads (only for an engine with a
    ``tensor_parallel_size`` key)."""
    learner, rollout = sections.get("learner"), sections.get("rollout")

    def model_divides(t: int) -> bool:
        return not (shape.num_heads % t or shape.num_kv_heads % t or shape.ffn_hidden_size % t)

    tps = (
        [t for t in divisors(gpus_per_node) if world % t == 0 and model_divides(t)]
        if hasattr(learner, "tensor_parallel_size")
        else [1]
    )
    rtps = (
        [r for r in divisors(gpus_per_node) if world % r == 0 and shape.num_heads % r == 0]
        if hasattr(rollout, "tensor_parallel_size")
        else [1]
    )
    out = []
    for tp in tps:
        cps = divisors(world // tp) if hasattr(learner, "context_parallel_size") else [1]
        for cp in cps:
            for rtp in rtps:
                out.append(ParallelLayout(tp, cp, world // (tp * cp), rtp))
    return sorted(
        out,
        key=lambda x: (
            x.tensor_parallel * x.context_parallel,
            x.tensor_parallel,
            x.rollout_tensor_parallel,
        ),
    )


def requested_sizes(sections: dict[str, SimpleNamespace]) -> tuple[int, int, int]:
    """``(learner TP, learner CP, rollout TP)`` as the config sets them."""
    learner, rollout = sections.get("learner"), sections.get("rollout")
    return (
        int(getattr(learner, "tensor_parallel_size", 1) or 1),
        int(getattr(learner, "context_parallel_size", 1) or 1),
        int(getattr(rollout, "tensor_parallel_size", 1) or 1),
    )


def configured_layout(sections: dict[str, SimpleNamespace], world: int) -> ParallelLayout:
    """The layout the config asks for on ``world`` GPUs (ConfigError if it does not divide)."""
    tp, cp, rtp = requested_sizes(sections)
    if tp < 1 or cp < 1 or rtp < 1:
        raise ConfigError(
            f"learner/rollout parallel sizes must be >= 1 (TP={tp} CP={cp} rollout TP={rtp})"
        )
    if world % (tp * cp):
        key = "tensor_parallel_size" if cp == 1 else "tensor_parallel_size x context_parallel_size"
        raise ConfigError(f"learner.{key}={tp * cp} does not divide the {world} GPUs")
    if world % rtp:
        raise ConfigError(f"rollout.tensor_parallel_size={rtp} does not divide the {world} GPUs")
    return ParallelLayout(tp, cp, world // (tp * cp), rtp)


def layout_changes(old: ParallelLayout, new: ParallelLayout) -> list[tuple[str, str, Any]]:
    out = []
    for group, key, a, b in [
        ("learner", "tensor_parallel_size", old.tensor_parallel, new.tensor_parallel),
        ("learner", "context_parallel_size", old.context_parallel, new.context_parallel),
        (
            "rollout",
            "tensor_parallel_size",
            old.rollout_tensor_parallel,
            new.rollout_tensor_parallel,
        ),
    ]:
        if a != b:
            out.append((group, key, b))
    return out


@dataclass
class Search:
    """The plan as configured, and what to change when it does not fit."""

    configured: Plan | None  # None: the configured layout is not possible on this world
    configured_error: str
    as_configured: Plan | None  # the smallest layout that fits with the settings as they are
    suggestion: Plan | None  # the smallest layout that fits with the fewest levers
    changes: list[tuple[str, str, Any]]  # overrides from the config to the suggestion
    min_gpus: int | None = None  # when nothing fits: the fewest GPUs that would
    gpus_per_node: int = 8

    @property
    def fits(self) -> bool:
        return self.configured is not None and self.configured.fits


def _first_fit(
    planner: Planner, layouts: Sequence[ParallelLayout], sections: dict[str, SimpleNamespace]
) -> Plan | None:
    for layout in layouts:
        try:
            plan = planner.estimate(layout, sections)
        except ConfigError:
            continue  # a layout this component cannot run
        if plan.fits:
            return plan
    return None


def _estimable(planner: Planner, layout: ParallelLayout) -> bool:
    try:
        planner.estimate(layout)
    except ConfigError:
        return False
    return True


def search(planner: Planner, world: int, gpus_per_node: int) -> Search:
    """The configured plan; if it does not fit, the smallest layout that fits once the
    components' levers are applied (each lever then dropped again when that layout still fits
    without it), and, for comparison, the smallest that fits with the settings as they are.
    Layouts go from the least model parallelism (TP x CP, i.e. the most data parallelism) up,
    then the smallest TP, then the smallest rollout TP."""
    configured, error, layout = None, "", None
    try:
        layout = configured_layout(planner.sections, world)
        configured = planner.estimate(layout)
    except ConfigError as exc:
        error = str(exc)
    result = Search(configured, error, None, None, [], gpus_per_node=gpus_per_node)
    if configured is not None and configured.fits:
        return result
    layouts = candidate_layouts(planner.shape, world, gpus_per_node, planner.sections)
    if configured is None and not any(_estimable(planner, x) for x in layouts):
        raise ConfigError(error)  # a bad setting (or no estimate) rather than a bad layout
    base = layout or (layouts[0] if layouts else ParallelLayout(data_parallel=world))
    levers = planner.levers([base, *layouts])
    result.as_configured = _first_fit(planner, layouts, planner.sections)
    applied = list(levers)
    suggestion = _first_fit(planner, layouts, with_settings(planner.sections, applied))
    if suggestion is not None:
        for lever in list(applied):  # drop the levers this layout does not need
            trial = [x for x in applied if x != lever]
            plan = planner.estimate(suggestion.layout, with_settings(planner.sections, trial))
            if plan.fits:
                applied, suggestion = trial, plan
        result.suggestion = suggestion
        tp, cp, rtp = requested_sizes(planner.sections)  # what to change is against the config
        asked = ParallelLayout(tp, cp, max(1, world // (tp * cp)), rtp)
        result.changes = layout_changes(asked, suggestion.layout) + applied
        return result
    # nothing fits on this cluster: the fewest whole nodes that would (levers applied)
    sections = with_settings(planner.sections, levers)
    for nodes in range(max(1, world // gpus_per_node) + 1, 513):
        n = nodes * gpus_per_node
        if _first_fit(
            planner, candidate_layouts(planner.shape, n, gpus_per_node, sections), sections
        ):
            result.min_gpus = n
            break
    return result


# --------------------------------------------------------------------------- building it


def as_namespace(section: Any) -> SimpleNamespace:
    """A config section (DictConfig or dataclass) as an open namespace: the plan tries other
    values on it, and estimates read keys with ``getattr(cfg, key, default)``."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(section, SimpleNamespace):
        return SimpleNamespace(**vars(section))
    if isinstance(section, DictConfig):
        return SimpleNamespace(**OmegaConf.to_container(section, resolve=True))
    return SimpleNamespace(**vars(section))


def resolve_shape(cfg: Any, model: str | None = None, experiment: str | None = None) -> ModelShape:
    """The policy's shape: ``model`` (``plan.model``: an HF id of :data:`KNOWN_MODELS` or a
    local HF folder), else ``model.path`` (its ``config.json``, or a known id by folder name),
    else the experiment preset's model (:data:`PRESET_MODELS`)."""
    from omegaconf import DictConfig, OmegaConf

    candidates = [("plan.model", model)] if model else []
    missing = isinstance(cfg.model, DictConfig) and OmegaConf.is_missing(cfg.model, "path")
    path = None if missing else getattr(cfg.model, "path", None)
    if path:
        candidates.append(("model.path", str(path)))
    if not candidates and experiment in PRESET_MODELS:
        candidates.append((f"experiment={experiment}", PRESET_MODELS[experiment]))
    if not candidates:
        raise ConfigError(
            "model.path is not set: give plan.model=<HF id or folder> (known ids: "
            f"{', '.join(KNOWN_MODELS)})"
        )
    key, value = candidates[0]
    folder = Path(value).expanduser()
    if (folder / "config.json").is_file():
        try:
            config = json.loads((folder / "config.json").read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{key}={value}: unreadable config.json ({exc})") from None
        return ModelShape.from_hf_config(config, str(folder))
    if value in KNOWN_MODELS:
        return KNOWN_MODELS[value]
    by_name = {n.rsplit("/", 1)[-1]: s for n, s in KNOWN_MODELS.items()}
    if folder.name in by_name:
        return by_name[folder.name]
    raise ConfigError(
        f"{key}={value}: not a local HF folder (no config.json) nor a known model id "
        f"({', '.join(KNOWN_MODELS)})"
    )


def stage_loads(cfg: Any, registry: Any) -> list[StageLoad]:
    """Every stage of the run's schedule (through its stage scheduler), with the data
    section's prompt length and the trainer's sequences per step."""
    from or1.core.interfaces import BuildContext

    ctx = BuildContext(Path("."), Path("."), Path("."), int(cfg.trainer.seed), cfg)
    scheduler = registry.build("stages", cfg.stages, ctx)
    total = int(cfg.trainer.total_steps or scheduler.total_steps)
    out, step = [], 0
    while step < total:
        s = scheduler.stage_at(step)
        out.append(
            StageLoad(
                name=s.name,
                max_prompt_length=int(cfg.data.max_prompt_length),
                max_response_length=int(s.max_response_length),
                micro_batch_tokens=int(s.micro_batch_tokens),
                sequences=int(cfg.trainer.prompts_per_step) * int(cfg.trainer.group_size),
            )
        )
        step = max(step + 1, s.start_step + s.steps)
    return out


def estimator_of(registry: Any, group: str, name: str) -> Estimator:
    factory = registry.get(group, name).factory
    method = getattr(factory, "memory_estimate", None)
    return method if callable(method) else (lambda cfg, query: None)


def planner_for(
    cfg: Any,
    registry: Any,
    gpu_memory: int,
    reserve: int,
    model: str | None = None,
    experiment: str | None = None,
    device: str = "cuda",
    min_kv_sequences: int = 1,
) -> Planner:
    """The :class:`Planner` of run config ``cfg`` (its learner and rollout sections)."""
    groups = ("learner", "rollout")
    return Planner(
        shape=resolve_shape(cfg, model, experiment),
        stages=stage_loads(cfg, registry),
        estimators={g: estimator_of(registry, g, cfg[g].name) for g in groups},
        sections={g: as_namespace(cfg[g]) for g in groups},
        names={g: str(cfg[g].name) for g in groups},
        gpu_memory=gpu_memory,
        reserve=reserve,
        device=device,
        min_kv_sequences=min_kv_sequences,
    )


# --------------------------------------------------------------------------- printing


def gib(n: int | float) -> str:
    return f"{n / GIB:.1f}"


def overrides(changes: Iterable[tuple[str, str, Any]]) -> str:
    def text(v: Any) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    return " ".join(f"{g}.{k}={text(v)}" for g, k, v in changes)


def render_plan(plan: Plan, names: dict[str, str]) -> list[str]:
    """The per-stage tables of ``plan`` (GiB per GPU)."""
    head = f"  {'phase':14s} {'holder':10s}" + "".join(
        f"{c:>12s}" for c in ("weights", "gradients", "optimizer", "activations", "KV cache")
    )
    head += f"{'total':>9s}{'margin':>9s}"
    lines = []
    for sp in plan.stages:
        st = sp.stage
        budget = st.micro_batch_tokens or "whole share"
        lines += [
            "",
            f"stage {st.name}: prompt {st.max_prompt_length} + response {st.max_response_length} "
            f"tokens, micro-batch budget {budget} tokens",
            head,
        ]
        for ph in sp.phases:
            first = True
            for holder, items in ph.parts.items():
                label = PHASE_NAMES[ph.phase] if first else ""
                first = False
                cells = "".join(f"{gib(items[i]) if items.get(i) else '-':>12s}" for i in ITEMS)
                lines.append(
                    f"  {label:14s} {names.get(holder, holder):10s}{cells}{gib(sum(items.values())):>9s}"
                )
            sign = "+" if ph.margin >= 0 else ""
            lines.append(
                f"  {'':14s} {'per GPU':10s}{'':60s}{gib(ph.total):>9s}{sign + gib(ph.margin):>9s}"
            )
        lines += [f"  {d}" for d in sp.detail]
        lines += [f"  problem: {p}" for p in sp.problems]
    return lines


def describe_settings(plan: Plan, names: dict[str, str], keys: dict[str, Sequence[str]]) -> str:
    parts = []
    for group, ks in keys.items():
        values = plan.settings.get(group, {})
        shown = " ".join(
            f"{k}={overrides([(group, k, values[k])]).split('=', 1)[1]}" for k in ks if k in values
        )
        parts.append(f"{group}={names[group]} ({shown})")
    return "; ".join(parts)


SHOWN_KEYS = {
    "learner": (
        "precision",
        "distributed_optimizer",
        "grad_reduce_in_fp32",
        "recompute",
        "packing",
    ),
    "rollout": ("gpu_memory_utilization", "enable_sleep_mode", "dtype"),
}


def verdict(result: Search) -> str:
    """The last line: ``fits`` or ``does not fit: <what to change>``."""
    if result.fits:
        return "fits"
    why = result.configured_error or (
        result.configured.first_problem() if result.configured else ""
    )
    if result.suggestion is not None:
        return f"does not fit: {why}; set {overrides(result.changes)}"
    more = (
        f"; no layout of these GPUs fits even with every memory setting: at least "
        f"{result.min_gpus} GPUs (cluster.nodes={result.min_gpus // result.gpus_per_node})"
        if result.min_gpus
        else "; no layout fits on up to 512 nodes"
    )
    return f"does not fit: {why}{more}"


def render(planner: Planner, result: Search, header: list[str]) -> list[str]:
    lines = list(header)
    shown = result.configured or result.suggestion
    if result.configured is not None:
        lines.append(f"layout as configured: {result.configured.layout.describe()}")
        lines.append("settings: " + describe_settings(result.configured, planner.names, SHOWN_KEYS))
        lines += render_plan(result.configured, planner.names)
    else:
        lines.append(f"layout as configured: not possible ({result.configured_error})")
    if not result.fits:
        lines.append("")
        lines.append(
            "smallest layout that fits with the settings as configured: "
            + (result.as_configured.layout.describe() if result.as_configured else "none")
        )
        if result.suggestion is not None:
            lines.append("")
            lines.append(
                f"smallest layout that fits: {result.suggestion.layout.describe()}, with "
                f"{overrides(result.changes)}"
            )
            lines += render_plan(result.suggestion, planner.names)
        elif result.suggestion is None:
            lines.append("")
            lines.append("no layout of these GPUs fits, whatever the settings")
    if shown is not None and shown.notes:
        lines.append("")
        lines += [f"note: {n}" for n in shown.notes]
    lines.append(verdict(result))
    return lines


# --------------------------------------------------------------------------- launch check


def check_fits(
    cfg: Any,
    world: int,
    gpu_memory: int,
    gpus_per_node: int | None = None,
    model_path: Path | None = None,
    registry: Any = None,
) -> None:
    """``or1-train``'s launch-time check on GPUs: the run's plan at its own layout on
    ``world`` GPUs of ``gpu_memory`` bytes (``gpus_per_node`` of them per node; default
    ``min(world, 8)``), the model's shape from ``model_path`` (default: as ``or1-plan``
    finds it); a one-line ConfigError naming the keys and the numbers when it does not fit,
    with what to change, before any model is loaded. Nothing is checked when the learner or
    the engine gives no estimate."""
    from or1.core.registry import get_registry

    registry = registry or get_registry()
    plan_cfg = getattr(cfg, "plan", None)
    reserve = int(float(getattr(plan_cfg, "reserve_gib", DEFAULT_RESERVE_GIB)) * GIB)
    minimum = int(getattr(plan_cfg, "min_kv_sequences", DEFAULT_MIN_KV_SEQUENCES))
    model = str(model_path) if model_path else None
    planner = planner_for(cfg, registry, gpu_memory, reserve, model=model, min_kv_sequences=minimum)
    if any(
        not callable(getattr(registry.get(g, planner.names[g]).factory, "memory_estimate", None))
        for g in planner.names
    ):
        return
    per_node = gpus_per_node or min(world, 8)
    result = search(planner, world, per_node if world % per_node == 0 else world)
    if result.fits:
        return
    layout = result.configured.layout if result.configured else None
    where = (
        f" at learner.tensor_parallel_size={layout.tensor_parallel}"
        f" learner.context_parallel_size={layout.context_parallel}"
        f" rollout.tensor_parallel_size={layout.rollout_tensor_parallel}"
        if layout
        else ""
    )
    raise ConfigError(
        f"memory plan{where} on {world} GPU(s) of {gib(gpu_memory)} GiB: {verdict(result)}"
    )


DEFAULT_MIN_KV_SEQUENCES = 8
"""Full-length sequences an engine's KV cache must hold at once (``plan.min_kv_sequences``):
fewer and the rollout decodes almost one sequence at a time."""

DEFAULT_RESERVE_GIB = 4.0
"""Per GPU, kept out of the plan: the CUDA context, NCCL buffers, the caching allocator's
fragmentation (``plan.reserve_gib``)."""
