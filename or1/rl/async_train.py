"""One-step asynchronous training (``trainer.async_steps=1``): rollout and learner on disjoint
ranks, one step apart.

The last ``trainer.rollout_ranks`` ranks generate, score, filter and compute advantages; rank
0 trains. While the learner trains step k (weights version k-1 -> k), the rollout ranks
generate step k+1 with version k-1, so step k's samples come from version ``max(k-2, 0)``
(``async/weight_version``; ``async/staleness`` is how many updates behind the learner's
weights that is). The exchange, over the gloo group of every rank, in the same order on both
sides::

    rollout:  B1  B2  W1  B3  W2  B4 ...     (B_j: step j's groups; W_k: weights version k)
    learner:  B1 [train 1] B2  W1 [train 2] B3  W2 ...

The learner receives step k+1's batch before it sends version k, so its checkpoint after step
k holds the in-flight batch k+1 (its groups, rewards and sampling log-probs) and the rollout
ranks' state right after generating it (data order, RNG, engine, filter and advantage
state): a resumed run trains that batch and the rollout ranks go on generating step k+2 with
the checkpoint's weights (version k), exactly as the uninterrupted run. Nothing is
regenerated.

Each side runs the trainer's pieces among its own ranks (:func:`or1.launch.distributed.side`); the
rollout ranks take their stage schedule's state from the learner with every weights message
(a signal-driven stage change reaches generation one step later than training sees it; the
learner trains each batch in the stage it was generated in).
"""

from __future__ import annotations

import logging
import pickle
import time
from typing import Any

import torch
import torch.distributed as dist

from or1.launch import distributed
from or1.launch.prepare import Run
from or1.launch.resume import rng_state
from or1.rl import checkpoint
from or1.rl.partial_rollouts import PartialRollouts
from or1.rl.steps import (
    NonFiniteGuard,
    OverlappedScoring,
    SkippedSteps,
    Timer,
    apply_filter,
    engine_metrics,
    rollout_metrics,
    step_seed,
)
from or1.rl.stopping import GracefulStop

log = logging.getLogger("or1.async_train")

LEARNER_RANK = 0
"""The rank that trains (and writes logs and checkpoints) in an asynchronous launch."""


def train_async(run: Run, loggers: Any, stop: GracefulStop) -> dict[str, Any]:
    """This rank's side of the asynchronous loop; the learner rank returns the summary."""
    learners = distributed.world_size() - run.cfg.trainer.rollout_ranks
    low, high = distributed.side_groups(learners)
    if distributed.rank() < learners:
        with distributed.side(low, learners):
            return learner_side(run, loggers, stop)
    with distributed.side(high, run.cfg.trainer.rollout_ranks):
        rollout_side(run)
    return {"steps": run.total_steps, "run_dir": str(run.run_dir)}


# --- the rollout ranks ---------------------------------------------------------------------


def rollout_side(run: Run) -> None:
    """Generate steps ``first .. total``, receiving version ``j - 2`` before step ``j`` when
    this launch trained it; each batch goes to the learner with this rank's state after it."""
    from or1.rl.steps import assign_advantages
    from or1.rl.trainer import collect_groups, sampling_params

    c = run.components
    start = run.start_step
    first = start + 1 if run.resumed_from is None else start + 2  # batch start+1 in flight
    version = start
    resumed = run.resumed_from is not None and first <= run.total_steps
    gen_stage = _in_flight(run)["stage"].index if resumed else None
    pool = partial_pool(run)
    for j in range(first, run.total_steps + 1):
        if j - 2 >= start + 1:
            header = receive_weights(run)
            if header["stop"]:
                return
            version = header["version"]
        stage = c.stages.stage_at(j - 1)
        if gen_stage is not None and stage.index != gen_stage and stage.reset_data:
            run.sampler.restart()
        gen_stage = stage.index
        timer, began = Timer(), time.time()
        metrics = {
            "stage": stage.index,
            "stage/max_response_length": stage.max_response_length,
        }
        if pool is None:
            groups, extra = collect_groups(run, j, sampling_params(run, stage), timer)
        else:
            groups, extra = collect_partial(run, pool, j, stage, timer, metrics)
        assign_advantages(c.advantage, groups, stage)
        metrics |= rollout_metrics(groups, extra)
        samples = sum(len(g.completions) for g in groups)
        metrics |= engine_metrics(run.layout, samples, timer.seconds["rollout"])
        metrics |= {f"timing/{k}_s": v for k, v in timer.seconds.items()}
        batch = {
            "step": j,
            "groups": groups,
            "stage": stage,
            "metrics": metrics,
            "version": version,
            "began": began,
            "ended": time.time(),
            "state": rollout_state(run, pool),
        }
        _exchange_batch(batch)


def partial_pool(run: Run) -> PartialRollouts | None:
    """This rollout rank's pool of open samples with ``trainer.partial_rollout_tokens`` (the
    checkpoint's on a resumed run), else None."""
    t = run.cfg.trainer
    if not t.partial_rollout_tokens:
        return None
    pool = PartialRollouts(t.partial_rollout_tokens, t.group_size)
    if run.resumed_from is not None:  # (the last step's checkpoint has none: nothing to go on)
        ranks = checkpoint.load(run.resumed_from, "state")["ranks"]
        if saved := ranks[distributed.rank()].get("partial"):
            pool.load_state_dict(saved)
    return pool


def collect_partial(
    run: Run, pool: PartialRollouts, step: int, stage: Any, timer: Timer, metrics: dict[str, float]
) -> tuple[list[Any], int]:
    """Step ``step``'s batch with partial rollouts: this engine's share of the step's new
    prompts joins the pool, every open sample generates up to the budget, and the groups that
    finished are scored and filtered (no refill: the next step's prompts top the pool up)."""
    from or1.rl.trainer import sampling_params

    c, t = run.components, run.cfg.trainer
    params = sampling_params(run, stage)
    params.seed = step_seed(t.seed, step, 0, run.layout.index)
    prompts = distributed.deal(run.sampler.next(t.prompts_per_step), run.layout)

    def decode(ids: list[int]) -> str:
        return run.tokenizer.decode(ids, skip_special_tokens=True)

    with timer("rollout"):
        groups, pool_metrics = pool.step(c.rollout, prompts, params, step, decode)
    with timer("reward"), OverlappedScoring(c.verifier, [g.prompt for g in groups]) as scoring:
        scoring.finish(groups)
    apply_filter(c.filter, groups)
    metrics |= pool_metrics
    return groups, 0


def rollout_state(run: Run, pool: PartialRollouts | None = None) -> dict[str, Any]:
    """This rollout rank's state right after generating a batch: what a checkpoint needs to
    go on generating the next one exactly (with partial rollouts, the open samples too)."""
    c = run.components
    rank = {"rng": rng_state(), "rollout": c.rollout.state_dict()}
    if pool is not None:
        rank["partial"] = pool.state_dict()
    return {
        "sampler": run.sampler.state_dict(),
        "filter": c.filter.state_dict(),
        "advantage": c.advantage.state_dict(),
        "rank": rank,
    }


def receive_weights(run: Run) -> dict[str, Any]:
    """The learner's weights message: a header (version, stop flag, stage schedule state,
    the tensors' names, shapes and dtypes), then every tensor broadcast from the learner;
    the engine serves them afterwards."""
    header = _broadcast_header(None)
    if header["stop"]:
        return header
    group = distributed.bridge_group()
    named = []
    for name, shape, dtype in header["tensors"]:
        t = torch.empty(shape, dtype=dtype)
        dist.broadcast(t, src=LEARNER_RANK, group=group)
        named.append((name, t))
    run.components.stages.load_state_dict(header["stages"])
    run.components.rollout.update_weights(iter(named))
    return header


# --- the learner rank ----------------------------------------------------------------------


def learner_side(run: Run, loggers: Any, stop: GracefulStop) -> dict[str, Any]:
    """Train steps ``start + 1 .. total`` on the batches the rollout ranks send, one behind."""
    from or1.rl.trainer import enter_stage, finish, learner_update, stopped, validate

    c, t = run.components, run.cfg.trainer
    nonfinite, skipped = NonFiniteGuard(t.max_nonfinite_steps), SkippedSteps()
    if run.start_metrics is None and t.eval_at_start and run.val_sets:
        run.start_metrics = validate(run, run.start_step)
        loggers.metrics(run.start_step, run.start_metrics)
    if run.start_step >= run.total_steps:  # a finished run resumed: nothing to train
        incoming, stage = None, None
    elif run.resumed_from is not None:
        saved = _in_flight(run)
        incoming, stage = saved["batch"], saved["trained_stage"]
    else:
        incoming, stage = _exchange_batch(None), None
    metrics: dict[str, float] = {}
    for step in range(run.start_step + 1, run.total_steps + 1):
        batch, t_step, timer = incoming, time.perf_counter(), Timer()
        if batch["step"] != step:
            raise RuntimeError(f"async: step {step} received the batch of step {batch['step']}")
        new_stage = batch["stage"]
        if stage is None or new_stage.index != stage.index:
            enter_stage(run, stage, new_stage, loggers)
        stage = new_stage
        groups = batch["groups"]
        metrics = {"step": step} | batch["metrics"]
        metrics["async/weight_version"] = float(batch["version"])
        metrics["async/staleness"] = float(step - 1 - batch["version"])
        trained = metrics["filter/groups_kept"] > 0
        train_began = time.time()
        if trained:
            entropy_coef = learner_update(run, step, groups, stage, metrics, nonfinite, timer)
            metrics |= entropy_coef.metrics()
        train_ended = time.time()
        metrics["train/skipped"] = float(not trained)
        c.stages.observe(step - 1, metrics)
        if warning := skipped.check(step, trained, metrics, t.group_size):
            loggers.message(warning, logging.WARNING)
        # the next batch was generated while this step trained
        with timer("wait_rollout"):
            incoming = _exchange_batch(None) if step < run.total_steps else None
        stopping = stop.requested_anywhere()
        if step + 2 <= run.total_steps:
            with timer("weight_sync"):
                sent = send_weights(run, step, stopping)
            metrics["weight_sync/bytes"] = float(sent)
            metrics["weight_sync/s"] = timer.seconds["weight_sync"]
        metrics["async/train_began"], metrics["async/train_ended"] = train_began, train_ended
        metrics["async/rollout_began"], metrics["async/rollout_ended"] = (
            batch["began"],
            batch["ended"],
        )
        if incoming is not None:  # this step's training against the next step's generation
            overlap = min(train_ended, incoming["ended"]) - max(train_began, incoming["began"])
            metrics["async/overlap_s"] = max(0.0, overlap)
        step_s = time.perf_counter() - t_step
        metrics |= {f"timing/{k}_s": v for k, v in timer.seconds.items()}
        metrics["timing/step_s"] = step_s
        if t.eval_every and step % t.eval_every == 0 or step == run.total_steps:
            c.rollout.update_weights(c.learner.named_weights())  # this rank's engine validates
            with timer("eval"):
                metrics |= validate(run, step)
            metrics["timing/eval_s"] = timer.seconds["eval"]
        loggers.metrics(step, metrics)
        if t.dump_samples or (t.samples_every and step % t.samples_every == 0):
            from or1.rl.steps import sample_records

            loggers.samples(step, sample_records(step, groups))
        saved_now = t.save_every and step % t.save_every == 0 or step == run.total_steps
        if saved_now or stopping:
            save_async_checkpoint(run, step, stage, incoming, loggers)
        if stopping and step < run.total_steps:
            return stopped(run, step, stop, loggers)
    return finish(run, metrics, loggers)


def send_weights(run: Run, version: int, stop: bool) -> int:
    """Broadcast weights version ``version`` (with the stage schedule's state) to the rollout
    ranks, or only the stop flag; returns the bytes sent."""
    if stop:
        _broadcast_header({"stop": True})
        return 0
    named = [
        (n, t.detach().to("cpu").contiguous()) for n, t in run.components.learner.named_weights()
    ]
    header = {
        "stop": False,
        "version": version,
        "stages": run.components.stages.state_dict(),
        "tensors": [(n, tuple(t.shape), t.dtype) for n, t in named],
    }
    _broadcast_header(header)
    group = distributed.bridge_group()
    for _, t in named:
        dist.broadcast(t, src=LEARNER_RANK, group=group)
    return sum(t.numel() * t.element_size() for _, t in named)


def save_async_checkpoint(
    run: Run, step: int, stage: Any, incoming: dict[str, Any] | None, loggers: Any
) -> None:
    """The learner rank's checkpoint of step ``step``: the learner, its controllers, the
    rollout ranks' state after the in-flight batch ``incoming`` (step + 1) and that batch."""
    c, root = run.components, run.run_dir / "checkpoints"
    tmp = checkpoint.begin(root, step)
    if c.learner.sharded_checkpoints:
        c.learner.save_sharded(tmp / "learner")
    mine = {"rng": rng_state(), "rollout": c.rollout.state_dict()}
    if incoming is not None:
        states = incoming["states"]
        first = states[0]
        sampler, filt, adv = first["sampler"], first["filter"], first["advantage"]
        ranks = [mine, *[s["rank"] for s in states]]
    else:  # the last step: nothing in flight; a longer resumed run regenerates from here
        sampler, filt, adv = (
            run.sampler.state_dict(),
            c.filter.state_dict(),
            c.advantage.state_dict(),
        )
        ranks = [mine] * distributed.world_size()
    parts = {
        **({} if c.learner.sharded_checkpoints else {"learner": c.learner.state_dict()}),
        "state": {
            "step": step,
            "sampler": sampler,
            "components": {
                "filter": filt,
                "advantage": adv,
                "entropy": c.entropy.state_dict(),
                "stages": c.stages.state_dict(),
            },
            "ranks": ranks,
            "start_metrics": run.start_metrics,
            "async": pickle.dumps(
                {
                    "batch": None if incoming is None else {**incoming, "states": None},
                    "trained_stage": stage,
                }
            ),
        },
    }
    path = checkpoint.commit(root, step, tmp, parts, keep=run.cfg.trainer.keep_checkpoints)
    loggers.message(f"checkpoint saved: {path}")


# --- the exchange --------------------------------------------------------------------------


def _exchange_batch(batch: dict[str, Any] | None) -> dict[str, Any] | None:
    """Every rollout rank's batch of one step, merged on the learner (its groups in rollout
    rank order, the step's metrics, the earliest start and latest end, each rank's state);
    collective over every rank. None on the rollout ranks."""
    parts = _gather_bridge(batch)
    sent = [p for p in parts if p is not None]
    if batch is not None:
        return None
    return {
        "step": sent[0]["step"],
        "groups": [g for p in sent for g in p["groups"]],
        "stage": sent[0]["stage"],
        "metrics": sent[0]["metrics"],
        "version": sent[0]["version"],
        "began": min(p["began"] for p in sent),
        "ended": max(p["ended"] for p in sent),
        "states": [p["state"] for p in sent],
    }


def _gather_bridge(obj: Any) -> list[Any]:
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj, group=distributed.bridge_group())
    return out


def _broadcast_header(obj: Any) -> Any:
    box = [obj]
    dist.broadcast_object_list(box, src=LEARNER_RANK, group=distributed.bridge_group())
    return box[0]


def _in_flight(run: Run) -> dict[str, Any]:
    """The checkpoint's in-flight batch and the stage the learner last trained in."""
    assert run.resumed_from is not None
    saved = pickle.loads(checkpoint.load(run.resumed_from, "state")["async"])
    if saved["batch"] is None:
        raise RuntimeError(
            f"{run.resumed_from} is the last step of an asynchronous run and holds no in-flight "
            "batch; it cannot be continued with more steps"
        )
    return {"batch": saved["batch"], "stage": saved["batch"]["stage"], **saved}
