"""Learner throughput: a training step of the Megatron learner at TP=1 vs the reference
PyTorch learner, and Megatron TP=2 (two processes, gloo on CPU) vs TP=1, in one run.

    .venv/bin/python benchmarks/learner.py [--sequences 64 --length 96 --reps 5 --threads 1]
    .venv/bin/python benchmarks/learner.py --lengths longtail [--sequences 32 --length 2048]

Each learner runs in its own spawned process(es) with ``--threads`` torch threads per rank,
on the same tiny Qwen2 (the demo's architecture, untrained weights) and the same random batch
(``--sequences`` rows of 60-100% of ``--length`` tokens, one micro-batch). Tokens/s counts the
batch's unpadded tokens per second of wall time of ``train_step`` (forward, backward, clipping,
AdamW), median of ``--reps`` steps after one warm-up step. On a 2-core CPU TP=2 is for
correctness, not speed. The last line is ``ratio_vs_reference=<x> ratio_tp2_vs_tp1=<y>``.

``--lengths longtail`` measures what packing buys on RL-like lengths instead: most responses
short, a few run to the limit (log-normal, median 15% of ``--length``, clipped to
[16, ``--length``], the longest row at ``--length``), micro-batches of ``--micro-batch-tokens``
unpadded tokens (default 4 x ``--length``), and the Megatron learner at TP=1 with packed
micro-batches (one row of sequences end to end, per-document attention) against padded ones
(rows padded to the micro-batch's longest, explicit causal mask). Last line:
``packed_vs_padded=<x>`` (tokens/s ratio; the goal is >= 1.5).

``--workload long_cot`` is the floor of the long chain-of-thought preset's learner
(``experiment=cpu_long_cot``, docs/long-cot.md): real token ids, the chat-templated prompts
plus reference solutions (``target_response`` and EOS) of the first ``--sequences`` (64, the
preset's 8 prompts x 8 samples) tiny_cot training rows, responses truncated at ``--length``
(1024, the preset's last stage), so the batch has the task's long-tailed lengths; the tiny_cot
model's architecture and tokenizer (untrained weights: speed does not depend on them); the
Megatron learner at TP=1, packed, micro-batches of ``--micro-batch-tokens`` (16384, the
preset's), or1's loss as the preset configures it. In one process, alternated, ``--reps``
times after one warm-up each:

* or1 ``compute_logprobs`` (the old-log-prob pass the trainer runs before each update when the
  step needs more than one micro-batch) and or1 ``train_step`` (forward, or1's loss, backward,
  gradient reduction, global-norm clipping, AdamW, metrics);
* the floor: a bare Megatron step on exactly the same packed micro-batches (or1's own plan
  by the token budget), written here from megatron-core calls only, on the learner's own
  ``DistributedDataParallel`` module and Megatron optimiser (same weights, same parameter
  buffers; none of or1's loss, normalisation or bookkeeping): ``GPTModel`` forward with
  ``labels`` (Megatron's own cross-entropy) over the packed row with THD
  ``PackedSeqParams``, a token mean over the response tokens, backward,
  ``finalize_model_grads``, ``optimizer.step()`` (Megatron's norm, clipping and AdamW); and
  the bare no-gradient forward as the floor of ``compute_logprobs``. The module is
  Megatron's local layer spec with the learner's per-document core attention
  (:mod:`or1_plugins.learner.megatron.packed_attention`: megatron-core's local attention refuses THD
  on CPU; Transformer Engine's takes it on GPU), so both sides run the same kernels.

Each step is broken down by timers around the calls it makes (model forward, log-probs and
entropy, packing, loss, backward, gradient reduction, optimiser), so or1's seconds beyond the
floor are accounted for. Last line: ``learner_vs_bare_megatron=<x> logprobs_s=<y>
logprobs_vs_bare_forward=<z>`` (or1 train_step tokens/s over the bare step's; the median
seconds of compute_logprobs; its tokens/s over the bare forward's).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import socket
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--workload",
        choices=["tiny", "long_cot"],
        default="tiny",
        help="tiny: random ids on the demo's model (--lengths); long_cot: tiny_cot rows",
    )
    p.add_argument(
        "--sequences", type=int, default=None, help="64 (uniform, long_cot), 32 (longtail)"
    )
    p.add_argument(
        "--length",
        type=int,
        default=None,
        help="96 (uniform), 2048 (longtail); long_cot: response tokens kept (1024)",
    )
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--lengths", choices=["uniform", "longtail"], default="uniform")
    p.add_argument(
        "--micro-batch-tokens", type=int, default=0, help="long_cot: 16384 (the preset's)"
    )
    p.add_argument(
        "--cache-dir", default=os.environ.get("OR1_CACHE_DIR", str(Path.home() / ".cache" / "or1"))
    )
    a = p.parse_args()
    if a.workload == "long_cot":
        a.sequences = a.sequences or 64
        a.length = a.length or 1024
        a.micro_batch_tokens = a.micro_batch_tokens or 16384
        return a
    longtail = a.lengths == "longtail"
    a.sequences = a.sequences or (32 if longtail else 64)
    a.length = a.length or (2048 if longtail else 96)
    return a


def make_batch(sequences: int, length: int, vocab: int, lengths: str = "uniform", budget: int = 0):
    from or1.core.types import TrainBatch

    g = torch.Generator().manual_seed(0)
    if lengths == "longtail":
        draw = torch.exp(torch.randn(sequences, generator=g) + torch.log(torch.tensor(0.15)))
        lens = (draw * length).clamp(16, length).long().tolist()
        lens[sequences // 2] = length  # a response that ran to the limit
    else:
        lens = torch.randint(int(0.6 * length), length + 1, (sequences,), generator=g).tolist()
    ids = torch.zeros(sequences, length, dtype=torch.long)
    attn = torch.zeros_like(ids)
    resp = torch.zeros(sequences, length)
    for i, n in enumerate(lens):
        ids[i, :n] = torch.randint(3, vocab, (n,), generator=g)
        attn[i, :n] = 1
        resp[i, 16:n] = 1.0
    adv = resp * torch.randn(sequences, 1, generator=g)
    return TrainBatch(ids, attn, resp, adv, lens, temperature=1.0, micro_batch_tokens=budget)


def worker(
    rank: int, world: int, port: int, kind: str, args: argparse.Namespace, model: str, out: str
) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(args.threads)
    from omegaconf import OmegaConf

    from or1.core.interfaces import BuildContext
    from or1.launch import distributed
    from or1_plugins.loss.or1 import OR1Loss, OR1LossConfig

    distributed.init(300)
    ctx = BuildContext(Path(model), Path(model), Path(model), 0, None)
    if kind == "reference":
        from or1_plugins.learner.torch.learner import TorchLearner, TorchLearnerConfig

        learner = TorchLearner(OmegaConf.structured(TorchLearnerConfig(lr=1e-4)), ctx)
    else:
        from or1_plugins.learner.megatron.learner import MegatronLearner, MegatronLearnerConfig

        cfg = MegatronLearnerConfig(
            lr=1e-4, tensor_parallel_size=world, packing=kind != "megatron-padded"
        )
        learner = MegatronLearner(OmegaConf.structured(cfg), ctx)  # TP: every rank, one batch
    from transformers import AutoConfig

    vocab = AutoConfig.from_pretrained(model).vocab_size
    budget = args.micro_batch_tokens or (4 * args.length if args.lengths == "longtail" else 0)
    batch = make_batch(args.sequences, args.length, vocab, args.lengths, budget)
    batch.old_logprobs, _ = learner.compute_logprobs(batch)
    loss = OR1Loss(OmegaConf.structured(OR1LossConfig()))
    learner.train_step(batch, loss, 0.0)  # warm-up
    times = []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        learner.train_step(batch, loss, 0.0)
        times.append(time.perf_counter() - t0)
    learner.close()
    if rank == 0:  # TP: every rank trains the same batch (its shards)
        Path(out).write_text(f"{sum(batch.seq_lens) / statistics.median(times)}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def measure(kind: str, world: int, args: argparse.Namespace, model: str) -> float:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "tokens_per_s")
        mp.start_processes(
            worker,
            args=(world, free_port(), kind, args, model, out),
            nprocs=world,
            start_method="spawn",
        )
        return float(Path(out).read_text())


# ------------------------------------------------------------ long_cot: the preset's floor


class Clock:
    """Seconds spent in timed calls, by label, since the last :meth:`take`."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)

    @contextlib.contextmanager
    def timing(self, label: str) -> Iterator[None]:
        t = time.perf_counter()
        try:
            yield
        finally:
            self.spent[label] += time.perf_counter() - t

    def wrap(self, owner: Any, attr: str, label: str) -> None:
        """Time every call of ``owner.attr`` under ``label`` (set on ``owner`` itself: a
        module's function, or one object's method)."""
        original = getattr(owner, attr)

        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.timing(label):
                return original(*args, **kwargs)

        setattr(owner, attr, timed)

    def take(self) -> dict[str, float]:
        out, self.spent = dict(self.spent), defaultdict(float)
        return out


def breakdown(t: dict[str, float], total: float) -> dict[str, float]:
    """One variant's seconds by part, from its clock's labels (times summed over the step's
    calls; an or1 call's own part is its time beyond the calls it makes); ``rest`` is what no
    timer covered (or1: batch selection, the micro-batch plan and totals, the mismatch
    metrics; bare: the loop itself)."""

    def g(*labels: str) -> float:
        return sum(t.get(k, 0.0) for k in labels)

    def less(outer: str, *inner: str) -> float:
        return g(outer) - g(*inner) if outer in t else 0.0

    parts = {
        "model forward (Megatron GPTModel)": g("forward") - g("cross-entropy"),
        "log-probs + entropy (or1) / cross-entropy (Megatron)": g("logprobs", "cross-entropy"),
        "packing in, scatter out (or1)": less("_forward", "forward", "logprobs"),
        "policy loss, per token (or1)": g("per_token_loss"),
        "token weights (or1)": g("token_weights"),
        "loss sum (bare)": g("bare loss"),
        "backward (+ or1's loss sums)": less("backward_micro_batch", "per_token_loss")
        + g("bare backward"),
        "zero gradient buffers": g("zero_grad_buffer"),
        "gradient reduction (finalize_model_grads)": g("finalize_model_grads"),
        "grad norm + clip + AdamW": g("prepare_grads", "get_grad_norm", "_clip_and_step")
        + g("bare opt"),
        "metrics (or1 finish_step)": less("finish_step", "_clip_and_step"),
    }
    parts["rest"] = total - sum(parts.values())
    return parts


def long_cot_rows(tokenizer: Any, sequences: int, length: int) -> list[Any]:
    """``SequenceRow``s of the first ``sequences`` tiny_cot training rows (default config):
    the chat-templated prompt, then the reference solution and EOS cut at ``length`` tokens,
    as the trainer collates a sampled response; advantages N(0, 1), seeded."""
    from or1.rl.batch import SequenceRow
    from or1_plugins.sources.tiny import cot_task

    train, _ = cot_task.make_splits(cot_task.TinyCotDataConfig())
    g = torch.Generator().manual_seed(0)
    rows = []
    for problem in train[:sequences]:
        messages = [{"role": "user", "content": cot_task.prompt_text(problem)}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        prompt = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        solution = tokenizer.encode(cot_task.target_response(problem), add_special_tokens=False)
        response = [*solution, tokenizer.eos_token_id][:length]
        advantage = float(torch.randn(1, generator=g))
        rows.append(SequenceRow(prompt + response, len(prompt), advantage, True))
    return rows


def packed_micro_batches(batch: Any, plan: list[list[int]]) -> list[tuple[Any, ...]]:
    """Per micro-batch of ``plan``, the bare step's inputs: its sequences laid end to end in
    one row ``[1, t]``, each one's positions from 0, the next-token labels within each
    sequence, the loss weights (1 / the step's response tokens at the positions that predict
    a response token, else 0: the token mean over the batch) and Megatron's THD
    ``PackedSeqParams`` of the sequences' boundaries."""
    from megatron.core.packed_seq_params import PackedSeqParams

    total = float(batch.response_mask.sum())
    out = []
    for rows in plan:
        lens = [batch.seq_lens[i] for i in rows]
        ids, positions, labels, weights = [], [], [], []
        for i, n in zip(rows, lens, strict=True):
            ids.append(batch.input_ids[i, :n])
            positions.append(torch.arange(n))
            labels.append(torch.cat([batch.input_ids[i, 1:n], torch.zeros(1, dtype=torch.long)]))
            weights.append(torch.cat([batch.response_mask[i, 1:n], torch.zeros(1)]) / total)
        cu = torch.tensor([0, *itertools.accumulate(lens)], dtype=torch.int32)
        params = PackedSeqParams(
            qkv_format="thd",
            cu_seqlens_q=cu,
            cu_seqlens_kv=cu,
            max_seqlen_q=max(lens),
            max_seqlen_kv=max(lens),
        )
        row = [torch.cat(x).unsqueeze(0) for x in (ids, positions, labels, weights)]
        out.append((*row, params))
    return out


def bare_step(ddp: Any, optimizer: Any, packs: list[tuple[Any, ...]], clock: Clock) -> None:
    """A plain Megatron-core training step on ``packs``: forward with labels (per-token
    cross-entropy), weighted sum, backward, gradient reduction, ``optimizer.step()``."""
    import megatron.core.distributed as mcd

    from or1_plugins.learner.megatron.cpu_shims import cuda_names

    ddp.zero_grad_buffer()
    optimizer.zero_grad()
    for ids, positions, labels, weights, params in packs:
        per_token = ddp(ids, positions, None, labels=labels, packed_seq_params=params)  # [1, t]
        with clock.timing("bare loss"):
            loss = (per_token * weights).sum()
        with clock.timing("bare backward"):
            loss.backward()
    mcd.finalize_model_grads([ddp])
    with clock.timing("bare opt"), cuda_names():  # no GPU: megatron's optimiser on CPU
        optimizer.step()  # prepare grads, global norm, clip, AdamW


@torch.no_grad()
def bare_forward(ddp: Any, packs: list[tuple[Any, ...]]) -> None:
    """The floor of ``compute_logprobs``: the forward with labels (-log p of every token)."""
    for ids, positions, labels, _, params in packs:
        ddp(ids, positions, None, labels=labels, packed_seq_params=params)


def long_cot_worker(rank: int, args: argparse.Namespace, model: str, out: str) -> None:
    import json

    import megatron.core.distributed as mcd
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    from or1.core.interfaces import BuildContext
    from or1.rl.batch import rows_to_batch, split_by_token_budget
    from or1_plugins.learner.megatron import learner as megatron_learner
    from or1_plugins.learner.megatron.learner import MegatronLearner, MegatronLearnerConfig
    from or1_plugins.loss.or1 import OR1Loss, OR1LossConfig

    torch.set_num_threads(args.threads)
    tokenizer = AutoTokenizer.from_pretrained(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = long_cot_rows(tokenizer, args.sequences, args.length)
    batch = rows_to_batch(rows, pad, 1.0, args.micro_batch_tokens)
    ctx = BuildContext(Path(model), Path(model), Path(model), 0, None)
    cfg = MegatronLearnerConfig(lr=2e-4, tensor_parallel_size=1, packing=True)  # the preset's
    learner = MegatronLearner(OmegaConf.structured(cfg), ctx)
    loss = OR1Loss(OmegaConf.structured(OR1LossConfig(agg="token_mean")))
    plan = split_by_token_budget(batch.seq_lens, batch.micro_batch_tokens)  # or1's own plan
    packs = packed_micro_batches(batch, plan)

    clock = Clock()
    clock.wrap(learner.ddp, "forward", "forward")
    clock.wrap(learner.model, "compute_language_model_loss", "cross-entropy")
    clock.wrap(learner.ddp, "zero_grad_buffer", "zero_grad_buffer")
    clock.wrap(mcd, "finalize_model_grads", "finalize_model_grads")
    for name, label in (("_forward", "_forward"), ("_logprobs", "logprobs")):
        clock.wrap(learner, name, label)
    clock.wrap(learner, "_clip_and_step", "_clip_and_step")
    for name in ("prepare_grads", "get_grad_norm"):
        clock.wrap(learner.optimizer, name, name)
    for name in ("backward_micro_batch", "finish_step"):
        clock.wrap(megatron_learner, name, name)
    for name in ("per_token_loss", "token_weights"):
        clock.wrap(loss, name, name)

    def or1_logprobs() -> None:
        batch.old_logprobs, _ = learner.compute_logprobs(batch)

    variants: dict[str, Callable[[], None]] = {
        "or1 train_step": lambda: learner.train_step(batch, loss, 0.0),
        "bare megatron step": lambda: bare_step(learner.ddp, learner.optimizer, packs, clock),
        "or1 compute_logprobs": or1_logprobs,
        "bare megatron forward": lambda: bare_forward(learner.ddp, packs),
    }
    or1_logprobs()
    # the engine's sampling log-probs, so the step computes its mismatch metrics as in a run
    batch.rollout_logprobs = batch.old_logprobs * batch.response_mask
    for run in variants.values():  # warm-up
        run()
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    parts: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    names = list(variants)
    for rep in range(args.reps):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            clock.take()
            t0 = time.perf_counter()
            variants[name]()
            dt = time.perf_counter() - t0
            seconds[name].append(dt)
            parts[name].append(breakdown(clock.take(), dt))
    info = {
        "seconds": seconds,
        "parts": parts,
        "seq_lens": batch.seq_lens,
        "prompt_lens": [r.start for r in rows],
        "micro_batches": [sum(batch.seq_lens[i] for i in part) for part in plan],
        "params": sum(p.numel() for p in learner.model.parameters()),
    }
    learner.close()
    Path(out).write_text(json.dumps(info))


def run_long_cot(args: argparse.Namespace) -> None:
    import json

    import torch.multiprocessing as mp
    from omegaconf import OmegaConf

    from or1_plugins.sources.tiny.cot_model import TinyCotModelConfig, prepare_tiny_cot_model

    cfg = OmegaConf.structured(TinyCotModelConfig(warmup_max_steps=0, num_threads=args.threads))
    model = str(prepare_tiny_cot_model(cfg, Path(args.cache_dir).expanduser()))
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "long_cot.json")
        mp.start_processes(long_cot_worker, args=(args, model, out), nprocs=1, start_method="spawn")
        info = json.loads(Path(out).read_text())
    lens = info["seq_lens"]
    responses = [n - p for n, p in zip(lens, info["prompt_lens"], strict=True)]
    tokens = sum(lens)
    ordered = sorted(responses)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    cut = sum(n >= args.length for n in responses)
    print(
        f"\nlong_cot learner benchmark: {args.sequences} tiny_cot training rows (chat-templated "
        f"prompt + reference solution + EOS, responses cut at {args.length} tokens: {cut} cut), "
        f"model {Path(model).name} ({info['params'] / 1e6:.2f}M params, untrained weights), "
        f"Megatron TP=1 packed, {args.threads} thread(s), {args.reps} reps alternated"
    )
    print(
        f"tokens {tokens} ({sum(responses)} response); response lengths min {ordered[0]}, "
        f"median {statistics.median(ordered):.0f}, p90 {p90}, max {ordered[-1]}, mean "
        f"{statistics.mean(ordered):.0f}; micro-batches of <= {args.micro_batch_tokens} "
        f"tokens: {len(info['micro_batches'])} ({' + '.join(map(str, info['micro_batches']))})"
    )
    seconds, parts = info["seconds"], info["parts"]
    med = {name: statistics.median(s) for name, s in seconds.items()}
    print(f"{'variant':<28}{'median s':>10}{'tokens/s':>10}{'min s':>9}{'max s':>9}")
    for name, s in seconds.items():
        print(
            f"{name:<28}{med[name]:>10.3f}{tokens / med[name]:>10.0f}{min(s):>9.3f}{max(s):>9.3f}"
        )
    columns = list(seconds)
    print("\nwhere each variant's seconds go (mean over reps; each column sums to its mean total)")
    header = "".join(f"{c.replace('megatron ', ''):>22}" for c in columns)
    print(f"{'':<54}{header}")
    for row in parts[columns[0]][0]:
        values = [statistics.mean(p[row] for p in parts[c]) for c in columns]
        if all(abs(v) < 5e-4 for v in values):
            continue
        print(f"{row:<54}" + "".join(f"{v:>22.3f}" for v in values))
    means = [statistics.mean(seconds[c]) for c in columns]
    print(f"{'total':<54}" + "".join(f"{v:>22.3f}" for v in means))
    fused = len(info["micro_batches"]) == 1
    step = med["or1 train_step"] + (0.0 if fused else med["or1 compute_logprobs"])
    floor = med["bare megatron step"] + (0.0 if fused else med["bare megatron forward"])
    print(
        f"\nthe trainer's learner step (on_policy_step: "
        f"{'fused, one forward' if fused else 'compute_logprobs + train_step, not fused'}): "
        f"{step:.3f} s, {tokens / step:.0f} tokens/s; bare floor "
        f"{'step' if fused else 'forward + step'} {floor:.3f} s; ratio {floor / step:.3f}"
    )
    ratio = med["bare megatron step"] / med["or1 train_step"]
    ratio_lp = med["bare megatron forward"] / med["or1 compute_logprobs"]
    fastest = {name: min(s) for name, s in seconds.items()}
    print(
        f"the same ratios from each variant's fastest rep (a shared machine's noise only adds): "
        f"train_step {fastest['bare megatron step'] / fastest['or1 train_step']:.3f}, "
        f"compute_logprobs "
        f"{fastest['bare megatron forward'] / fastest['or1 compute_logprobs']:.3f}"
    )
    print(
        f"learner_vs_bare_megatron={ratio:.3f} logprobs_s={med['or1 compute_logprobs']:.3f} "
        f"logprobs_vs_bare_forward={ratio_lp:.3f}"
    )


def main() -> None:
    args = parse_args()
    from omegaconf import OmegaConf

    if args.workload == "long_cot":
        run_long_cot(args)
        return

    from or1_plugins.sources.tiny.model import TinyModelConfig, prepare_tiny_model

    cfg = OmegaConf.structured(TinyModelConfig(warmup_max_steps=0, num_threads=args.threads))
    model = str(prepare_tiny_model(cfg, Path(args.cache_dir)))
    print(
        f"batch: {args.sequences} sequences up to {args.length} tokens ({args.lengths}); "
        f"{args.threads} thread(s) per rank"
    )
    results = {}
    if args.lengths == "longtail":
        lens = make_batch(args.sequences, args.length, 8, "longtail").seq_lens
        print(
            f"lengths: mean {statistics.mean(lens):.0f}, median {statistics.median(lens):.0f}, max {max(lens)}"
        )
        for name, kind in (("megatron packed", "megatron"), ("megatron padded", "megatron-padded")):
            results[name] = measure(kind, 1, args, model)
            print(f"{name:20s} {results[name]:10.0f} tokens/s")
        print(f"packed_vs_padded={results['megatron packed'] / results['megatron padded']:.3f}")
        return
    for name, kind, world in (
        ("reference (torch)", "reference", 1),
        ("megatron TP=1", "megatron", 1),
        ("megatron TP=2", "megatron", 2),
    ):
        results[name] = measure(kind, world, args, model)
        print(f"{name:20s} {results[name]:10.0f} tokens/s")
    ratio_ref = results["megatron TP=1"] / results["reference (torch)"]
    ratio_tp = results["megatron TP=2"] / results["megatron TP=1"]
    print(f"ratio_vs_reference={ratio_ref:.3f} ratio_tp2_vs_tp1={ratio_tp:.3f}")


if __name__ == "__main__":
    main()
