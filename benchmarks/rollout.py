"""Rollout throughput: the or1 vLLM plugin vs raw ``vllm.LLM.generate`` vs the reference
transformers engine, on the same tiny-task prompts, alternated, several repetitions.

    .venv/bin/python benchmarks/rollout.py [--prompts 32 --n 8 --max-tokens 224 64 --reps 5]

Each ``--max-tokens`` value is one workload (same engines, same prompts); the untrained tiny
model writes until ``max_tokens``, so 224 (the tiny model's 256-token context minus the
prompt) is the long-response regime of RL rollouts and 64 a short one, where per-step
bookkeeping dominates. The headline (last line) is the first workload.

Tokens/s counts generated response tokens (EOS included) per second of wall time of one
``generate`` call. Raw vLLM runs on the plugin's own ``LLM`` object (same engine settings)
with the request a direct vLLM user would write: one seeded ``SamplingParams(n, temperature,
top_p, top_k, max_tokens, seed, logprobs=0)`` for all prompts. The last line is
``ratio_vs_raw_vllm=<x> ratio_vs_reference=<y>`` (plugin tokens/s over each baseline's).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import OmegaConf

from or1.interfaces import BuildContext
from or1.plugins import get_registry
from or1.types import SamplingParams
from or1_plugins.tiny.model import TinyModelConfig, prepare_tiny_model
from or1_plugins.tiny.task import TinyArithDataConfig, make_splits, prompt_text


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--n", type=int, default=8)
    p.add_argument(
        "--max-tokens", type=int, nargs="+", default=[224, 64], help="one workload per value"
    )
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads for every engine")
    p.add_argument("--kv-cache-gib", type=float, default=1.0)
    p.add_argument(
        "--warmed-up",
        action="store_true",
        help="use the default warmed-up tiny model (responses stop early) instead of the "
        "untrained one (responses mostly run to --max-tokens)",
    )
    p.add_argument("--hidden-size", type=int, default=None, help="a wider tiny model (untrained)")
    p.add_argument("--layers", type=int, default=None, help="a deeper tiny model (untrained)")
    p.add_argument("--cache-dir", default=os.environ.get("OR1_CACHE_DIR", "~/.cache/or1"))
    return p.parse_args()


def tiny_prompts(tokenizer, count: int) -> list[list[int]]:
    train, _ = make_splits(TinyArithDataConfig())
    out = []
    for problem in train[:count]:
        messages = [{"role": "user", "content": prompt_text(problem)}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        out.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    return out


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    cache_dir = Path(args.cache_dir).expanduser()
    shape = {}
    if args.hidden_size:
        shape |= {"hidden_size": args.hidden_size, "intermediate_size": 3 * args.hidden_size}
    if args.layers:
        shape["num_layers"] = args.layers
    if args.warmed_up:
        model_cfg = OmegaConf.structured(TinyModelConfig(**shape))
    else:
        model_cfg = OmegaConf.structured(
            TinyModelConfig(warmup_max_steps=0, num_threads=1, **shape)
        )
    model_path = Path(prepare_tiny_model(model_cfg, cache_dir))
    run_dir = Path(tempfile.mkdtemp(prefix="or1-bench-rollout-"))
    ctx = BuildContext(
        run_dir=run_dir, model_path=model_path, cache_dir=cache_dir, seed=0, config=None
    )
    registry = get_registry()

    def build(name: str, **overrides):
        comp = registry.get("rollout", name)
        return comp.factory(OmegaConf.structured(comp.schema(**overrides)), ctx)

    t0 = time.perf_counter()
    plugin = build("vllm", kv_cache_gib=args.kv_cache_gib)
    t_start = time.perf_counter() - t0
    reference = build("transformers")
    n_params = sum(p.numel() for p in reference.model.parameters())
    prompts = tiny_prompts(plugin.tokenizer, args.prompts)

    from vllm import SamplingParams as VLLMSamplingParams
    from vllm.inputs import TokensPrompt

    raw_requests = [TokensPrompt(prompt_token_ids=p) for p in prompts]

    inside_vllm: list[float] = []  # per plugin call: seconds inside vLLM's engine calls
    engine = plugin.llm.llm_engine

    def timed(method):
        def call(*a, **kw):
            t = time.perf_counter()
            try:
                return method(*a, **kw)
            finally:
                inside_vllm[-1] += time.perf_counter() - t

        return call

    def engines_for(max_tokens: int) -> dict[str, Callable[[int], int]]:
        def run_plugin(seed: int) -> int:
            params = SamplingParams(n=args.n, max_tokens=max_tokens, seed=seed)
            inside_vllm.append(0.0)
            engine.step, engine.add_request = timed(engine.step), timed(engine.add_request)
            try:
                groups = plugin.generate(prompts, params)
            finally:
                del engine.step, engine.add_request  # back to the class's methods
            return sum(len(c.response_ids) for g in groups for c in g)

        def run_reference(seed: int) -> int:
            params = SamplingParams(n=args.n, max_tokens=max_tokens, seed=seed)
            return sum(len(c.response_ids) for g in reference.generate(prompts, params) for c in g)

        def run_raw(seed: int) -> int:
            params = VLLMSamplingParams(
                n=args.n, temperature=1.0, top_p=1.0, top_k=0, max_tokens=max_tokens,
                seed=seed, logprobs=0,
            )  # fmt: skip
            outputs = plugin.llm.generate(raw_requests, params, use_tqdm=False)
            return sum(len(c.token_ids) for o in outputs for c in o.outputs)

        def run_raw_same_request(seed: int) -> int:
            """Raw vLLM with exactly the plugin's request (per-prompt seeds, flat log-probs, no
            detokenisation): the plugin's own overhead is the difference to this one."""
            base = dict(
                n=args.n, temperature=1.0, top_p=1.0, top_k=0, max_tokens=max_tokens,
                stop_token_ids=plugin.eos_ids, logprobs=0, flat_logprobs=True, detokenize=False,
            )  # fmt: skip
            seeds = plugin._prompt_seeds(seed, len(prompts))
            params = [VLLMSamplingParams(seed=s, **base) for s in seeds]
            outputs = plugin.llm.generate(raw_requests, params, use_tqdm=False)
            return sum(len(c.token_ids) for o in outputs for c in o.outputs)

        return {
            "or1 vllm plugin": run_plugin,
            "raw vllm.LLM.generate": run_raw,
            "raw vllm, plugin's request": run_raw_same_request,
            "reference (transformers)": run_reference,
        }

    def measure(max_tokens: int) -> dict[str, float]:
        """Alternated repetitions of every engine on one workload; prints its table and
        returns the median tokens/s per engine."""
        engines = engines_for(max_tokens)
        for run in engines.values():  # warm-up
            run(0)
        rates: dict[str, list[float]] = {name: [] for name in engines}
        tokens: dict[str, list[int]] = {name: [] for name in engines}
        seconds: dict[str, list[float]] = {name: [] for name in engines}
        inside_vllm.clear()
        names = list(engines)
        for rep in range(args.reps):
            order = names[rep % len(names) :] + names[: rep % len(names)]  # rotate the first
            for name in order:
                t = time.perf_counter()
                n_tok = engines[name](1000 + rep)
                dt = time.perf_counter() - t
                rates[name].append(n_tok / dt)
                seconds[name].append(dt)
                tokens[name].append(n_tok)
        med = {name: statistics.median(r) for name, r in rates.items()}
        print(
            f"\nrollout benchmark: {args.prompts} prompts x n={args.n} x {max_tokens} tokens, "
            f"{args.reps} reps alternated, torch threads={args.threads}, model={model_path.name} "
            f"({n_params / 1e6:.2f}M params, {'warmed-up' if args.warmed_up else 'untrained'}), "
            f"vLLM engine start {t_start:.1f}s"
        )
        print(f"{'engine':<30}{'median tok/s':>14}{'min':>10}{'max':>10}{'tokens/call':>13}")
        for name in names:
            r = rates[name]
            print(
                f"{name:<30}{med[name]:>14.0f}{min(r):>10.0f}{max(r):>10.0f}"
                f"{statistics.median(tokens[name]):>13.0f}"
            )
        overhead = med["or1 vllm plugin"] / med["raw vllm, plugin's request"]
        print(f"plugin vs raw vLLM with the plugin's own request: {overhead:.3f}")
        plugin_s = seconds["or1 vllm plugin"]
        own = [t - v for t, v in zip(plugin_s, inside_vllm, strict=True)]
        share = statistics.median(o / t for o, t in zip(own, plugin_s, strict=True))
        print(
            f"plugin's own time per call (outside vLLM's add_request / step): "
            f"{statistics.median(own) * 1e3:.1f} ms ({share:.1%} of the call)"
        )
        print(
            f"max_tokens={max_tokens}: ratio_vs_raw_vllm="
            f"{med['or1 vllm plugin'] / med['raw vllm.LLM.generate']:.3f} ratio_vs_reference="
            f"{med['or1 vllm plugin'] / med['reference (transformers)']:.3f}",
            flush=True,
        )
        return med

    results = {m: measure(m) for m in args.max_tokens}
    plugin.close()
    reference.close()
    shutil.rmtree(run_dir, ignore_errors=True)
    med = results[args.max_tokens[0]]  # the headline workload
    ratio_raw = med["or1 vllm plugin"] / med["raw vllm.LLM.generate"]
    ratio_ref = med["or1 vllm plugin"] / med["reference (transformers)"]
    sys.stdout.flush()
    print(f"ratio_vs_raw_vllm={ratio_raw:.3f} ratio_vs_reference={ratio_ref:.3f}", flush=True)


if __name__ == "__main__":
    main()
