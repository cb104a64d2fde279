"""The RL loop: docs/architecture.md's "One RL step, as data", calling hook points only.

prompts -> rollout -> verifiers -> online filter -> advantages
  -> learner (old log-probs + entropy, entropy coefficient, optimiser step: one
     on-policy step, or ``trainer.updates_per_step`` steps on mini-batches of the groups)
  -> weight sync -> metrics, loggers, evaluation, checkpoint; stage changes on the way
     (the stage scheduler sees every step's metrics).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from or1.core.types import SamplingParams
from or1.launch import distributed
from or1.launch.prepare import Run, config_dict, restart_rollout
from or1.launch.resume import checkpoint_parts
from or1.rl import checkpoint
from or1.rl.batch import rows_to_batch, sequence_rows
from or1.rl.dp_balance import balance
from or1.rl.evaluation import ProblemResult, evaluate, headline_key
from or1.rl.learner_step import EntropyCoefficient, on_policy_step
from or1.rl.mini_batches import sequential_updates, split_groups
from or1.rl.profiling import StepProfiler
from or1.rl.response_budget import response_budget
from or1.rl.steps import (
    ENGINE_SEED_STRIDE,
    NonFiniteGuard,
    OverlappedScoring,
    SkippedSteps,
    Timer,
    WeightSyncMeter,
    apply_filter,
    assign_advantages,
    engine_metrics,
    generate_groups,
    kept_groups,
    rollout_metrics,
    sample_records,
    step_seed,
)
from or1.rl.stopping import GracefulStop

log = logging.getLogger("or1.trainer")


def train(run: Run) -> dict[str, Any]:
    """Run steps ``run.start_step + 1 .. run.total_steps``; return the summary."""
    loggers = LoggerSet(run)
    loggers.start(run)
    try:
        with GracefulStop() as stop:
            return _train(run, loggers, stop)
    finally:
        loggers.close()
        run.components.verifier.close()
        run.components.learner.close()
        run.components.rollout.close()


def _train(run: Run, loggers: LoggerSet, stop: GracefulStop) -> dict[str, Any]:
    c, t = run.components, run.cfg.trainer
    if t.async_steps:  # rollout and learner on disjoint ranks, one step apart
        from or1.rl.async_train import train_async

        return train_async(run, loggers, stop)
    nonfinite = NonFiniteGuard(t.max_nonfinite_steps)
    skipped = SkippedSteps()
    if run.start_metrics is None and t.eval_at_start and run.val_sets:
        run.start_metrics = validate(run, run.start_step)
        loggers.metrics(run.start_step, run.start_metrics)
    # the stage of the last step taken: a resumed run enters the next one as the uninterrupted
    # run did (its resets, its announcement)
    stage = c.stages.stage_at(run.start_step - 1) if run.start_step else None
    metrics: dict[str, float] = {}
    profiler = StepProfiler.of(run)  # trainer.profile: traces of a few steps
    # an engine restart is collective under torchrun: there a crashed engine ends the run
    restart = None if distributed.multi() else (lambda: restart_rollout(run))
    for step in range(run.start_step + 1, run.total_steps + 1):
        profiler.begin(step)
        timer, t_step = Timer(), time.perf_counter()
        new_stage = c.stages.stage_at(step - 1)
        if stage is None or new_stage.index != stage.index:
            enter_stage(run, stage, new_stage, loggers)
        stage = new_stage
        params = sampling_params(run, stage)

        groups, extra = collect_groups(run, step, params, timer, restart)
        assign_advantages(c.advantage, groups, stage)
        metrics = {
            "step": step,
            "stage": stage.index,
            "stage/max_response_length": stage.max_response_length,
        }
        metrics |= rollout_metrics(groups, extra)
        samples = sum(len(g.completions) for g in groups)
        metrics |= engine_metrics(run.layout, samples, timer.seconds["rollout"])

        trained = metrics["filter/groups_kept"] > 0  # over every rank
        if trained:
            entropy_coef = learner_update(
                run, step, groups, stage, metrics, nonfinite, timer, c.rollout.sleep
            )
            meter = WeightSyncMeter()
            with timer("weight_sync"):
                c.rollout.wake_up()
                c.rollout.update_weights(meter(c.learner.named_weights()))
            metrics["weight_sync/bytes"] = float(meter.bytes)
            metrics["weight_sync/s"] = timer.seconds["weight_sync"]
            metrics |= entropy_coef.metrics()
        metrics["train/skipped"] = float(not trained)
        c.stages.observe(step - 1, metrics)  # a signal-driven schedule may move on
        if warning := skipped.check(step, trained, metrics, t.group_size):
            loggers.message(warning, logging.WARNING)

        step_s = time.perf_counter() - t_step
        metrics |= {f"timing/{k}_s": v for k, v in timer.seconds.items()}
        metrics["timing/step_s"] = step_s
        metrics["timing/other_s"] = max(0.0, step_s - sum(timer.seconds.values()))
        profiler.end()
        if t.eval_every and step % t.eval_every == 0 or step == run.total_steps:
            with timer("eval"):
                metrics |= validate(run, step)
            metrics["timing/eval_s"] = timer.seconds["eval"]
        loggers.metrics(step, metrics)
        if t.dump_samples or (t.samples_every and step % t.samples_every == 0):
            records = distributed.all_gather_object(sample_records(step, groups))
            loggers.samples(step, [r for part in records for r in part])
        stopping = stop.requested_anywhere()  # every rank stops after the same step
        saved = t.save_every and step % t.save_every == 0 or step == run.total_steps
        if saved or stopping:
            save_checkpoint(run, step, loggers)
        if stopping and step < run.total_steps:
            return stopped(run, step, stop, loggers)

    return finish(run, metrics, loggers)


def learner_update(
    run: Run,
    step: int,
    groups: list[Any],
    stage: Any,
    metrics: dict[str, float],
    nonfinite: NonFiniteGuard,
    timer: Timer,
    before: Any = None,
) -> EntropyCoefficient:
    """The learner's part of a step on the kept groups: one on-policy update, or
    ``trainer.updates_per_step`` updates on mini-batches of whole groups; the entropy
    controller sees the step's entropy. ``before`` runs first inside the ``train`` timer (the
    engine's sleep). Adds the update's metrics to ``metrics``."""
    cfg, c, t = run.cfg, run.components, run.cfg.trainer
    batches, imbalances = [], []  # one per update: mini-batches of whole groups
    for part in split_groups([g for g in groups if g.kept], t.updates_per_step):
        rows, dp_imbalance = balance(sequence_rows(part, stage.truncation), *c.learner.data_shard())
        imbalances.append(dp_imbalance)
        batches.append(
            rows_to_batch(rows, run.pad_id, cfg.rollout.temperature, stage.micro_batch_tokens)
        )
    metrics["learner/dp_token_imbalance"] = max(imbalances)  # the worst update's
    with timer("train"):
        if before is not None:
            before()
        if c.loss.needs_reference:
            for batch in batches:
                batch.ref_logprobs = c.learner.compute_ref_logprobs(batch)
        entropy_coef = EntropyCoefficient(c.entropy, batches[0].response_mask)
        if len(batches) == 1:  # strictly on-policy: the recipe's single update
            metrics |= on_policy_step(c.learner, batches[0], c.loss, entropy_coef)
            metrics["train/updates"] = 1.0
        else:  # old log-probs of every mini-batch first, then one update each
            metrics |= sequential_updates(c.learner, c.loss, entropy_coef, batches)
        nonfinite.check(step, metrics)
        c.entropy.update(entropy_coef.e_k)
    return entropy_coef


def sampling_params(run: Run, stage: Any) -> SamplingParams:
    """The rollout sampling settings of a step in ``stage`` (the seed is set per round)."""
    cfg = run.cfg
    return SamplingParams(
        n=cfg.trainer.group_size,
        temperature=cfg.rollout.temperature,
        top_p=cfg.rollout.top_p,
        top_k=cfg.rollout.top_k,
        max_tokens=stage.max_response_length,
    )


def collect_groups(
    run: Run,
    step: int,
    params: SamplingParams,
    timer: Timer,
    restart: Any = None,
) -> tuple[list[Any], int]:
    """Sample, score and filter this engine's groups of ``step``, refilling while the filter
    wants a full batch; returns them and the number of extra rollouts the refills took."""
    c, t = run.components, run.cfg.trainer
    groups: list[Any] = []
    extra, round_ = 0, 0
    while True:  # sample, score, filter; refill while the filter wants a full batch
        need = t.prompts_per_step - kept_groups(groups)
        params.seed = step_seed(t.seed, step, round_, run.layout.index)
        prompts = distributed.deal(run.sampler.next(need), run.layout)  # this engine's
        with OverlappedScoring(c.verifier, prompts) as scoring:  # rewards while generating
            # an engine's other ranks generate the same samples with it and drop them
            hand_on = scoring.submit if run.layout.leader else None
            with timer("rollout"):
                new = generate_groups(c.rollout, prompts, params, restart, hand_on)
            new = new if run.layout.leader else []
            with timer("reward"):  # what is left to score once generation is done
                scoring.finish(new)
        apply_filter(c.filter, new)
        groups += new
        extra += len(new) * t.group_size if round_ else 0
        round_ += 1
        if not (
            c.filter.refill
            and kept_groups(groups) < t.prompts_per_step
            and round_ <= t.max_refill_rounds
        ):
            break
    return groups, extra


def validate(run: Run, step: int) -> dict[str, float]:
    """Every held-out set with the eval sampling settings (``eval.k``, ``eval.temperature``,
    ``eval.top_p``, fixed seed): ``val/<set>/avg@K``, ``val/<set>/pass@1`` and the other
    metrics of :func:`or1.rl.evaluation.evaluate`. Under torchrun each engine samples its share
    of every set (whole problems) and the results are gathered."""
    e, layout = run.cfg.eval, run.layout
    params = SamplingParams(
        n=e.k,
        temperature=e.temperature,
        top_p=e.top_p,
        max_tokens=response_budget(e.max_tokens, run.components.stages, "last"),
        seed=run.cfg.trainer.seed + 17 + ENGINE_SEED_STRIDE * layout.index,
    )

    def gather(results: list[ProblemResult]) -> list[ProblemResult]:
        parts = distributed.all_gather_object(results if layout.leader else [])
        return [r for part in parts for r in part]

    return evaluate(
        run.components.rollout,
        run.components.verifier,
        {name: distributed.deal(ps, layout) for name, ps in run.val_sets.items()},
        params,
        chunk=e.chunk,
        pass_ks=list(e.pass_k),
        gather=gather if distributed.multi() else None,
    )


def enter_stage(run: Run, previous: Any, stage: Any, loggers: LoggerSet) -> None:
    """Apply a new stage's resets (not for the first stage of a run) and announce it."""
    c = run.components
    if previous is not None:
        if stage.reset_optimizer:
            c.learner.reset_optimizer()
        if stage.reset_entropy:
            c.entropy.reset()
        if stage.reset_data:
            run.sampler.restart()
    loggers.message(
        f"stage {stage.index} ({stage.name}): max response length {stage.max_response_length}, "
        f"truncation {stage.truncation}, {stage.steps} steps"
    )


def save_checkpoint(run: Run, step: int, loggers: LoggerSet) -> None:
    """Collective: rank 0 opens the temporary folder, a sharded learner's ranks write their
    shards into it, every rank hands over its small state, and rank 0 commits the folder."""
    root, learner = run.run_dir / "checkpoints", run.components.learner
    tmp = distributed.broadcast_object(
        str(checkpoint.begin(root, step)) if distributed.is_main() else None
    )
    if learner.sharded_checkpoints:
        learner.save_sharded(Path(tmp) / "learner")
    parts = checkpoint_parts(run, step)
    distributed.barrier()  # every rank's shards are on disk
    if distributed.is_main():
        path = checkpoint.commit(
            root, step, Path(tmp), parts, keep=run.cfg.trainer.keep_checkpoints
        )
        loggers.message(f"checkpoint saved: {path}")
    distributed.barrier()  # the checkpoint exists once any rank goes on


def stopped(run: Run, step: int, stop: GracefulStop, loggers: LoggerSet) -> dict[str, Any]:
    """The summary of a run stopped by a signal after ``step`` (checkpointed; resumable)."""
    loggers.message(
        f"stopped by {stop.signal_name} after step {step}; resume with trainer.resume=auto"
    )
    return {"steps": step, "stopped_by": stop.signal_name, "run_dir": str(run.run_dir)}


def finish(run: Run, last: dict[str, float], loggers: LoggerSet) -> dict[str, Any]:
    """Export the policy, write ``summary.json`` and report start vs end accuracy to the
    loggers."""
    import json

    summary: dict[str, Any] = {"steps": run.total_steps, "run_dir": str(run.run_dir)}
    if run.cfg.trainer.export_final:
        export = run.run_dir / "final_model"
        run.components.learner.save_pretrained(export)
        summary["final_model"] = str(export)
        loggers.artifact("final_model", export, "model")
    metric = headline_key(run.cfg.eval.k)  # avg@K, the accuracy
    for name in run.val_sets:
        key = f"val/{name}/{metric}"
        start = (run.start_metrics or {}).get(key)
        end = last.get(key)
        summary[f"{name}/start_{metric}"] = start
        summary[f"{name}/end_{metric}"] = end
        summary[f"{name}/start_accuracy"] = start  # aliases: "accuracy" is avg@K
        summary[f"{name}/end_accuracy"] = end
        if start is not None and end is not None:
            loggers.message(
                f"held-out accuracy on {name}: {start:.1%} -> {end:.1%} ({100 * (end - start):+.1f} points)"
            )
    if distributed.is_main():
        (run.run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


class LoggerSet:
    """Fans out to every configured logger; a logger that raises is reported once and dropped,
    so a logging failure never stops training."""

    def __init__(self, run: Run) -> None:
        self.loggers = dict(run.components.loggers)

    def _each(self, method: str, *args: Any) -> None:
        for name, lg in list(self.loggers.items()):
            try:
                getattr(lg, method)(*args)
            except Exception as exc:
                log.warning(
                    "logger '%s' failed in %s (%s); it is disabled for this run", name, method, exc
                )
                self.loggers.pop(name, None)

    def start(self, run: Run) -> None:
        self._each("start", run.run_dir, config_dict(run.cfg), run.total_steps, run.start_step)

    def metrics(self, step: int, metrics: dict[str, float]) -> None:
        self._each("log_metrics", step, metrics)

    def samples(self, step: int, samples: list[dict[str, Any]]) -> None:
        self._each("log_samples", step, samples)

    def message(self, text: str, level: int = logging.INFO) -> None:
        if distributed.is_main():  # one voice per launch
            log.log(level, text)
        self._each("log_message", text)

    def artifact(self, name: str, path: Any, kind: str) -> None:
        self._each("log_artifact", name, path, kind)

    def close(self) -> None:
        self._each("close")
