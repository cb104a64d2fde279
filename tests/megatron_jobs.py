"""Jobs for the multi-process tests (the Megatron learner, the data-parallel split), run in
real worker processes (spawned, gloo).

Imported by the spawned ranks by module name, so they stay free of pytest fixtures. Each rank
uses one torch thread and a 60 s process-group timeout; rank 0 saves the job's result.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import torch

TIMEOUT_S = 60
VOCAB_LOW = 3  # token ids drawn from [3, vocab): skips pad / chat specials


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_batch(lengths: list[int], vocab: int, prompt_len: int = 3, seed: int = 0, budget: int = 0):
    """A right-padded TrainBatch with random ids, a response mask after ``prompt_len`` and a
    random advantage per sequence."""
    from or1.core.types import TrainBatch

    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    attn = torch.zeros_like(ids)
    resp = torch.zeros(len(lengths), width)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(VOCAB_LOW, vocab, (n,), generator=g)
        attn[i, :n] = 1
        resp[i, prompt_len:n] = 1.0
    adv = resp * torch.randn(len(lengths), 1, generator=g)
    return TrainBatch(
        ids, attn, resp, adv, list(lengths), temperature=0.8, micro_batch_tokens=budget
    )


def behaviour_logprobs(logp: torch.Tensor, batch: Any, seed: int = 1) -> torch.Tensor:
    """Old log-probs a little off the current policy, so that ratios and clipping matter."""
    noise = 0.3 * torch.randn(logp.shape, generator=torch.Generator().manual_seed(seed))
    return (logp + noise) * batch.response_mask


def mismatch_offset(batch: Any) -> torch.Tensor:
    """``[B, T]`` known log-prob offsets in [-1.5, 1.5] on the response tokens (0 elsewhere):
    the sampling log-probs of :func:`on_policy_pair` are the learner's own minus these."""
    b, t = batch.input_ids.shape
    return torch.linspace(-1.5, 1.5, b * t).reshape(b, t) * batch.response_mask


def make_learner(model_path: str, tp: int, lr: float = 1e-3, **settings: Any):
    from omegaconf import OmegaConf

    from or1.core.interfaces import BuildContext
    from or1_plugins.learner.megatron.learner import MegatronLearner, MegatronLearnerConfig

    cfg = OmegaConf.structured(MegatronLearnerConfig(lr=lr, tensor_parallel_size=tp, **settings))
    p = Path(model_path)
    return MegatronLearner(
        cfg, BuildContext(run_dir=p, model_path=p, cache_dir=p, seed=0, config=None)
    )


def record_hf_gradients(learner: Any) -> list[dict[str, torch.Tensor]]:
    """Full (gathered) gradients under HF names, captured when the optimiser steps (after
    clipping): the summed ``main_grad`` buffers of Megatron's DDP (whole on every rank unless
    the optimiser is distributed)."""
    from or1_plugins.learner.megatron.hf_mapping import gather, megatron_to_hf, tp_layout

    seen: list[dict[str, torch.Tensor]] = []
    step = learner.optimizer.step_with_ready_grads

    def recording_step(*args: Any, **kwargs: Any) -> Any:
        grads = {}
        for name, p in learner.model.named_parameters():
            full = gather(p.main_grad, tp_layout(name), learner.tp_group, learner.tp)
            if name in ("embedding.word_embeddings.weight", "output_layer.weight"):
                full = full[: learner.arch.vocab_size]
            grads.update((n, t.clone()) for n, t in megatron_to_hf(name, full, learner.arch))
        seen.append(grads)
        return step(*args, **kwargs)

    learner.optimizer.step_with_ready_grads = recording_step
    return seen


def share(learner: Any, batch: Any) -> tuple[list[int], Any]:
    """This rank's rows of ``batch`` and their sub-batch, as the trainer's token-balanced
    split deals them (every rank builds the same whole batch here)."""
    from or1.rl.dp_balance import partition

    index, count = learner.data_shard()
    bins = partition(batch.seq_lens, count)
    rows = [i for i, b in enumerate(bins) if b == index]
    return rows, batch.select(rows)


def whole(learner: Any, batch: Any, rows: list[int], local: torch.Tensor) -> torch.Tensor:
    """The ``[B, T]`` tensor of the whole batch from every data-parallel rank's ``local``
    rows (a collective)."""
    from or1.launch import distributed

    full = torch.zeros(batch.input_ids.shape)
    for tp_rank, r, t in distributed.all_gather_object((learner.tp_rank, rows, local)):
        if tp_rank == 0 and r:
            full[torch.as_tensor(r), : t.shape[1]] = t
    return full


def equivalence(
    model_path: str,
    tp: int,
    state_out: str | None = None,
    state_in: str | None = None,
    on_policy: bool = True,
    **settings: Any,
) -> dict:
    """Initial weights, log-probs, one train step (metrics, gradients, new weights, new
    log-probs, every rank's optimiser-state bytes); then optionally save the learner state
    and take a second step, or load a state saved by another job and take the second step
    from it. Every rank runs it on its share of the same batch (SPMD); rank 0's result holds
    whole-batch tensors. ``settings``: more learner config (precision, packing, ...); with
    the distributed optimiser no gradients are recorded (each rank holds its range only)."""
    from omegaconf import OmegaConf

    from or1.launch import distributed
    from or1_plugins.loss.or1 import OR1Loss, OR1LossConfig

    learner = make_learner(model_path, tp, **settings)
    grads = [] if settings.get("distributed_optimizer") else record_hf_gradients(learner)
    vocab = learner.arch.vocab_size
    batch = make_batch([6, 9, 4, 12, 7], vocab, budget=16)
    rows, sub = share(learner, batch)
    loss = OR1Loss(OmegaConf.structured(OR1LossConfig(clip_eps_high=0.28)))

    def logprobs() -> tuple[torch.Tensor, torch.Tensor]:
        lp, h = learner.compute_logprobs(sub)
        return whole(learner, batch, rows, lp), whole(learner, batch, rows, h)

    out: dict[str, Any] = {"weights0": {n: t.clone() for n, t in learner.named_weights()}}
    out["logp0"], out["ent0"] = logprobs()
    old = behaviour_logprobs(out["logp0"], batch)
    sub.old_logprobs = old[rows, : sub.input_ids.shape[1]] if rows else old[:0, :1]
    out["metrics1"] = learner.train_step(sub, loss, 0.01)
    out["grads1"] = grads[0] if grads else None
    out["weights1"] = {n: t.clone() for n, t in learner.named_weights()}
    out["logp1"], out["ent1"] = logprobs()
    out["optimizer_bytes"] = distributed.all_gather_object(learner.optimizer_state_bytes())
    if state_out:  # both formats: the full state (rank 0's file) and the sharded folder
        state = learner.state_dict()
        if int(os.environ.get("RANK", "0")) == 0:
            torch.save(state, state_out)
        learner.save_sharded(Path(state_out + ".sharded"))
    if state_in:  # a folder: the sharded format; a file: the full state
        if state_in.endswith(".sharded"):
            learner.load_sharded(Path(state_in))
        else:
            learner.load_state_dict(torch.load(state_in, weights_only=False, mmap=True))
        out["logp_loaded"], _ = logprobs()
    if state_out or state_in:
        out["metrics2"] = learner.train_step(sub, loss, 0.01)
        out["logp2"], _ = logprobs()
    if state_out:  # a non-finite loss: no step on any rank
        before = {n: t.clone() for n, t in learner.named_weights()}
        bad = sub.select(list(range(sub.num_sequences)))
        bad.old_logprobs = sub.old_logprobs
        bad.advantages = bad.advantages * float("nan")
        out["metrics_nan"] = learner.train_step(bad, loss, 0.01)
        out["nan_step_moved"] = max(
            float((t - before[n]).abs().max()) for n, t in learner.named_weights()
        )
    if on_policy:
        out |= on_policy_pair(learner, loss, grads)
    learner.close()
    return out


def on_policy_pair(learner: Any, loss: Any, grads: list[dict[str, torch.Tensor]]) -> dict:
    """The same on-policy step twice from the same state: the learner's own
    :func:`or1.rl.learner_step.on_policy_step` (fused when it can) and the two-pass step; the entropy
    coefficient is a function of the log-probs / entropies handed to it (each call kept),
    reduced over the ranks as the trainer's is; the batch's sampling log-probs are the
    learner's own minus :func:`mismatch_offset` (the ``mismatch/*`` metrics)."""
    from or1.launch import distributed
    from or1.rl.learner_step import on_policy_step, two_pass_step

    state = distributed.broadcast_object(learner.state_dict())  # tiny model: small
    out: dict[str, Any] = {"onp_seen": []}
    batch = make_batch([6, 9, 4, 12, 7], learner.arch.vocab_size, seed=3)
    rows, sub = share(learner, batch)
    seen = []

    def coef(old: torch.Tensor, ent: torch.Tensor) -> float:
        seen.append((old.clone(), ent.clone()))
        total, weight = distributed.all_reduce(
            [float((ent * sub.response_mask).sum()), float(sub.response_mask.sum())]
        )
        return 0.5 * total / weight

    own, _ = learner.compute_logprobs(sub)  # sampling log-probs a known offset away
    offset = mismatch_offset(batch)[rows, : sub.input_ids.shape[1]]
    sub.rollout_logprobs = (own - offset) * sub.response_mask
    for key, step in (("fused", on_policy_step), ("default", two_pass_step)):
        learner.load_state_dict(state)
        sub.old_logprobs = None
        out[f"onp_{key}"] = step(learner, sub, loss, coef)
        out[f"onp_{key}_old"] = whole(learner, batch, rows, sub.old_logprobs)
        out[f"onp_{key}_grads"] = grads[-1] if grads else None
    out["onp_seen"] = [
        (whole(learner, batch, rows, o), whole(learner, batch, rows, h)) for o, h in seen
    ]
    out["onp_batch"] = batch
    return out


def sequence(runs: list[dict]) -> list[dict]:
    """Several ``equivalence`` runs one after another in the same processes (Megatron's
    parallel state is rebuilt when the tensor-parallel size changes)."""
    return [equivalence(**kwargs) for kwargs in runs]


def exchange(
    rows_per_rank: list[list[tuple[list[int], int, float, bool]]], dp_of: list[int]
) -> dict:
    """Every rank hands its rows to the token-balanced split (``dp_of[rank]``: its
    data-parallel index); each rank's received rows, gathered on rank 0."""
    from or1.launch import distributed
    from or1.rl.batch import SequenceRow
    from or1.rl.dp_balance import balance

    me = distributed.rank()
    rows = [SequenceRow(*r) for r in rows_per_rank[me]]
    received, imbalance = balance(rows, dp_of[me], len(set(dp_of)))
    got = distributed.all_gather_object(
        [(r.ids, r.start, r.advantage, r.in_loss) for r in received]
    )
    return {"received": got, "imbalance": imbalance}


def recompute_modes(model_path: str, modes: list[str]) -> dict:
    """One train step from the same weights and batch per ``learner.recompute`` mode: its
    metrics and gradients."""
    from omegaconf import OmegaConf

    from or1_plugins.loss.or1 import OR1Loss, OR1LossConfig

    out = {}
    for mode in modes:
        learner = make_learner(model_path, 1, recompute=mode)
        grads = record_hf_gradients(learner)
        batch = make_batch([6, 9, 4, 12, 7], learner.arch.vocab_size, budget=16)
        batch.old_logprobs = behaviour_logprobs(learner.compute_logprobs(batch)[0], batch)
        loss = OR1Loss(OmegaConf.structured(OR1LossConfig(clip_eps_high=0.28)))
        out[mode] = {"metrics": learner.train_step(batch, loss, 0.01), "grads": grads[0]}
    return out


def forward_and_weights(model_path: str, tp: int, lengths: list[int]) -> dict:
    """For ``test_models``: the learner's full weights under HF names (the HF -> Megatron ->
    HF round trip), its log-probs and entropies of a random batch of ``lengths`` (whole on
    every rank: one data-parallel share) and its RoPE inverse frequencies."""
    learner = make_learner(model_path, tp)
    batch = make_batch(lengths, learner.arch.vocab_size, budget=sum(lengths))
    logp, ent = learner.compute_logprobs(batch)
    weights = {n: t.detach().cpu().clone() for n, t in learner.named_weights()}
    inv_freq = learner.model.rotary_pos_emb.inv_freq.detach().cpu().clone()
    return {"batch": batch, "logp": logp, "ent": ent, "weights": weights, "inv_freq": inv_freq}


def split_groups_job(groups_per_rank: list[int], updates: int) -> dict:
    """Every rank cuts its own kept groups (named ``r<rank>g<i>``) into the step's
    mini-batches (``trainer.updates_per_step``); each rank's parts, gathered on rank 0."""
    from or1.launch import distributed
    from or1.rl.mini_batches import split_groups

    me = distributed.rank()
    mine = [f"r{me}g{i}" for i in range(groups_per_rank[me])]
    return {"parts": distributed.all_gather_object(split_groups(mine, updates))}


UPDATE_BATCHES = (([6, 9, 4, 12], 1), ([5, 8, 7, 10], 2))
"""The two mini-batches of :func:`updates` (lengths, seed of :func:`make_batch`)."""


def updates(model_path: str, tp: int) -> dict:
    """Two sequential updates (``trainer.updates_per_step=2``:
    :func:`or1.rl.mini_batches.sequential_updates`) of the Megatron learner on every rank's share
    of the mini-batches of :data:`UPDATE_BATCHES`, with a constant entropy coefficient; the
    step's metrics, the measured entropy and the log-probs of both mini-batches afterwards
    (whole, on rank 0)."""
    from omegaconf import OmegaConf

    from or1.rl.learner_step import EntropyCoefficient
    from or1.rl.mini_batches import sequential_updates
    from or1_plugins.entropy.controllers import ConstantEntropy, ConstantEntropyConfig
    from or1_plugins.loss.or1 import OR1Loss, OR1LossConfig

    learner = make_learner(model_path, tp)
    vocab = learner.arch.vocab_size
    batches = [make_batch(lengths, vocab, seed=seed) for lengths, seed in UPDATE_BATCHES]
    shares = [share(learner, b) for b in batches]
    controller = ConstantEntropy(OmegaConf.structured(ConstantEntropyConfig(coef=0.01)))
    coef = EntropyCoefficient(controller, shares[0][1].response_mask)
    loss = OR1Loss(OmegaConf.structured(OR1LossConfig()))
    metrics = sequential_updates(learner, loss, coef, [sub for _, sub in shares])
    after = [
        whole(learner, b, rows, learner.compute_logprobs(sub)[0])
        for b, (rows, sub) in zip(batches, shares, strict=True)
    ]
    learner.close()
    return {"metrics": metrics, "e_k": coef.e_k, "logp_after": after}


JOBS = {
    "forward_and_weights": forward_and_weights,
    "recompute": recompute_modes,
    "equivalence": equivalence,
    "sequence": sequence,
    "exchange": exchange,
    "split_groups": split_groups_job,
    "updates": updates,
}


def _worker(rank: int, world: int, port: int, job: str, kwargs: dict, out_file: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    from or1.launch import distributed

    distributed.init(TIMEOUT_S)
    result = JOBS[job](**kwargs)
    if rank == 0:
        torch.save(result, out_file)
    distributed.close()


def launch(job: str, world: int, out_dir: Path, **kwargs: Any) -> dict:
    """Run ``job(**kwargs)`` in ``world`` spawned processes; rank 0's result."""
    import torch.multiprocessing as mp

    out_file = str(Path(out_dir) / f"{job}-{world}-{free_port()}.pt")
    mp.start_processes(
        _worker,
        args=(world, free_port(), job, kwargs, out_file),
        nprocs=world,
        join=True,
        start_method="spawn",
    )
    return torch.load(out_file, weights_only=False)
