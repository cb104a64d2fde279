"""The Megatron learner on one GPU: bf16 with the distributed optimiser, packed long sequences,
recompute on and off; tokens/s, model FLOP utilisation, peak memory, bf16 vs fp32 log-probs.

    python benchmarks/gpu_check.py [--hidden 1536 --layers 28 --lengths 4096,6144,6144]
    python benchmarks/gpu_check.py --smoke      # a few seconds on CPU: the same code path, tiny

Needs only PyTorch, Transformers and megatron-core (no vLLM, no Transformer Engine: the
learner then runs Megatron's local layer spec with or1's packed attention, PyTorch SDPA per
document) plus or1's own light dependencies (omegaconf, pluggy); on a machine without them,
carry them as wheels (``docs/benchmarks.md``, "GPU check", gives the commands).

What it does, in one process (TP=1, DP=1; the distributed optimiser's code path still runs):

1. a randomly initialised Qwen2-architecture model (default: the Qwen2-1.5B shape, 1.54e9
   parameters) saved as a Hugging Face folder in a temporary directory;
2. ``learner.precision=bf16``, ``distributed_optimizer=true``, ``packing=true``, one
   micro-batch of packed sequences (``--lengths``, 4K-16K tokens each), for
   ``recompute=none`` and ``recompute=full``: one warm-up step, then ``--steps`` timed
   training steps (forward, backward, clipping, AdamW); tokens/s, model FLOP utilisation
   (``6 * params * tokens`` plus causal attention ``6 * layers * hidden * sum(L^2)``,
   recompute not counted, over ``--peak-tflops``), and peak GPU memory
   (``torch.cuda.max_memory_allocated``) against the memory plan's figure for the same
   settings (``or1_plugins.learner.megatron.memory.learner_step_bytes``);
3. the same weights in an fp32 learner: the max and mean absolute difference of the two
   learners' log-probs on the same packed batch.

A third run repeats ``recompute=full`` with ``offload_optimizer=true`` (master weights and
moments in host memory between updates). The last line is
``tokens_per_s=<none>/<full>/<offload> mfu=<none>/<full> peak_gib=<none>/<full>/<offload>
bf16_logp_max_abs=<x>``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def use_checkout() -> None:
    """``or1`` and ``or1_plugins`` (the ``plugins/`` folder) from this checkout when the
    project is not installed (the GPU machine)."""
    import importlib.util

    sys.path.insert(0, str(ROOT))
    if importlib.util.find_spec("or1_plugins") is None:
        spec = importlib.util.spec_from_file_location(
            "or1_plugins",
            ROOT / "plugins" / "__init__.py",
            submodule_search_locations=[str(ROOT / "plugins")],
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["or1_plugins"] = module
        spec.loader.exec_module(module)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--hidden", type=int, default=1536)
    p.add_argument("--layers", type=int, default=28)
    p.add_argument("--heads", type=int, default=12)
    p.add_argument("--kv-heads", type=int, default=2)
    p.add_argument("--ffn", type=int, default=8960)
    p.add_argument("--vocab", type=int, default=151936)
    p.add_argument("--lengths", default="4096,6144,6144", help="packed sequences (tokens)")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--peak-tflops", type=float, default=989.0, help="H100/H200 dense bf16")
    p.add_argument("--smoke", action="store_true", help="tiny shape on CPU: check the path")
    a = p.parse_args()
    if a.smoke:
        a.hidden, a.layers, a.heads, a.kv_heads, a.ffn, a.vocab = 64, 2, 4, 2, 128, 512
        a.lengths, a.steps = "48,80,64", 1
    return a


def make_model(a: argparse.Namespace, folder: Path) -> int:
    """A random Qwen2 folder (bf16 safetensors); returns its parameter count."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        hidden_size=a.hidden,
        num_hidden_layers=a.layers,
        num_attention_heads=a.heads,
        num_key_value_heads=a.kv_heads,
        intermediate_size=a.ffn,
        vocab_size=a.vocab,
        max_position_embeddings=32768,
        tie_word_embeddings=False,
    )
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    n = sum(p.numel() for p in model.parameters())
    del model
    return n


def make_batch(lengths: list[int], vocab: int):
    from or1.core.types import TrainBatch

    g = torch.Generator().manual_seed(0)
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    attn = torch.zeros_like(ids)
    resp = torch.zeros(len(lengths), width)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(3, vocab, (n,), generator=g)
        attn[i, :n] = 1
        resp[i, 256:n] = 1.0  # a 256-token prompt
    adv = resp * torch.randn(len(lengths), 1, generator=g)
    return TrainBatch(ids, attn, resp, adv, list(lengths), 1.0, micro_batch_tokens=sum(lengths))


def make_learner(folder: Path, **settings):
    from omegaconf import OmegaConf

    from or1.core.interfaces import BuildContext
    from or1_plugins.learner.megatron.learner import MegatronLearner, MegatronLearnerConfig

    cfg = OmegaConf.structured(MegatronLearnerConfig(lr=1e-6, **settings))
    return MegatronLearner(cfg, BuildContext(folder, folder, folder, 0, None))


def planned_bytes(learner, lengths: list[int]) -> float:
    """The memory plan's learner-step figure for this run (or1_plugins.learner.megatron.memory)."""
    from or1_plugins.learner.megatron.memory import learner_step_bytes

    return float(
        learner_step_bytes(learner.cfg, learner.arch, sum(lengths), max(lengths), learner.dp)
    )


def free(learner) -> None:
    learner.close()
    del learner
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main() -> None:
    a = parse_args()
    use_checkout()
    from omegaconf import OmegaConf

    from or1_plugins.loss.or1 import OR1Loss, OR1LossConfig

    cuda = torch.cuda.is_available()
    if not cuda and not a.smoke:
        sys.exit("gpu_check: no GPU here (torch.cuda.is_available() is False); --smoke runs on CPU")
    lengths = [int(x) for x in a.lengths.split(",")]
    tokens = sum(lengths)
    loss = OR1Loss(OmegaConf.structured(OR1LossConfig()))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t0 = time.perf_counter()
        params = make_model(a, folder)
        print(
            f"model: {params / 1e9:.2f}e9 parameters (hidden {a.hidden}, {a.layers} layers), "
            f"built in {time.perf_counter() - t0:.0f} s; packed batch {lengths} = {tokens} tokens"
        )
        flops = 6 * params * tokens + 6 * a.layers * a.hidden * sum(n * n for n in lengths)
        results: dict[str, dict] = {}
        logp_bf16 = None
        for run_name, recompute, offload in (
            ("none", "none", False),
            ("full", "full", False),
            ("full+offload", "full", True),
        ):
            learner = make_learner(
                folder,
                precision="bf16",
                distributed_optimizer=True,
                packing=True,
                recompute=recompute,
                offload_optimizer=offload,
            )
            batch = make_batch(lengths, a.vocab)
            logp, _ = learner.compute_logprobs(batch)
            if logp_bf16 is None:
                logp_bf16 = logp
            batch.old_logprobs = logp
            learner.train_step(batch, loss, 0.0)  # warm-up
            if cuda:
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            times = []
            for _ in range(a.steps):
                t0 = time.perf_counter()
                learner.train_step(batch, loss, 0.0)
                if cuda:
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - t0)
            step_s = sorted(times)[len(times) // 2]
            peak = torch.cuda.max_memory_allocated() if cuda else 0
            plan = planned_bytes(learner, lengths)
            results[run_name] = {
                "tokens_per_s": tokens / step_s,
                "mfu": flops / step_s / (a.peak_tflops * 1e12),
                "peak_gib": peak / 2**30,
                "plan_gib": plan / 2**30,
            }
            r = results[run_name]
            print(
                f"{run_name:12s}: {step_s:.2f} s/step, {r['tokens_per_s']:.0f} tokens/s, "
                f"MFU {100 * r['mfu']:.1f}%, peak {r['peak_gib']:.1f} GiB (plan {r['plan_gib']:.1f} GiB)"
            )
            free(learner)
        learner = make_learner(folder, precision="fp32", packing=True)
        logp_fp32, _ = learner.compute_logprobs(make_batch(lengths, a.vocab))
        free(learner)
        mask = make_batch(lengths, a.vocab).attention_mask.bool()
        mask[:, 0] = False
        diff = (logp_bf16 - logp_fp32).abs()[mask]
        print(
            f"bf16 vs fp32 log-probs on the same weights: max |d| {float(diff.max()):.4f}, "
            f"mean {float(diff.mean()):.5f} nats"
        )
    print(json.dumps(results))
    n, f, o = results["none"], results["full"], results["full+offload"]
    print(
        f"tokens_per_s={n['tokens_per_s']:.0f}/{f['tokens_per_s']:.0f}/{o['tokens_per_s']:.0f} "
        f"mfu={n['mfu']:.3f}/{f['mfu']:.3f} "
        f"peak_gib={n['peak_gib']:.1f}/{f['peak_gib']:.1f}/{o['peak_gib']:.1f} "
        f"bf16_logp_max_abs={float(diff.max()):.4f}"
    )


if __name__ == "__main__":
    main()
