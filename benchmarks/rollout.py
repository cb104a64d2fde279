"""Rollout throughput: the or1 vLLM plugin vs raw ``vllm.LLM.generate`` vs the reference
transformers engine, on the same tiny-task prompts, alternated, several repetitions.

    .venv/bin/python benchmarks/rollout.py [--prompts 32 --n 8 --max-tokens 224 64 --reps 5]
    .venv/bin/python benchmarks/rollout.py --workload long_cot --warmed-up [--prompts 8 --n 8
        --max-tokens 1024 512 --reps 3 --no-reference]

Each ``--max-tokens`` value is one workload (same engines, same prompts); the untrained tiny
model writes until ``max_tokens``, so 224 (the tiny model's 256-token context minus the
prompt) is the long-response regime of RL rollouts and 64 a short one, where per-step
bookkeeping dominates. The headline (last line) is the first workload.

Tokens/s counts generated response tokens (EOS included) per second of wall time of one
``generate`` call. Raw vLLM runs on the plugin's own ``LLM`` object (same engine settings)
with the request a direct vLLM user would write: one seeded ``SamplingParams(n, temperature,
top_p, top_k, max_tokens, seed, logprobs=0)`` for all prompts. The last line is
``ratio_vs_raw_vllm=<x> ratio_vs_reference=<y>`` (plugin tokens/s over each baseline's).

``--workload long_cot`` runs the same engines on the long chain-of-thought task
(``experiment=cpu_long_cot``, docs/long-cot.md): the ``tiny_cot`` model and chat-templated
prompts of the task's training rows, 8 prompts x n=8 (the preset's step), ``--max-tokens``
1024 (the preset's last stage) and 512. With ``--warmed-up`` (the cached, warmed-up model of
``$OR1_CACHE_DIR``) responses follow the task's long-tailed lengths (24-1,445 tokens), so a
few long responses decode alone at the end of each call; the untrained model (default)
samples its EOS at random. As responses end at their own EOS here, raw vLLM's request takes the
plugin's per-prompt seeds (one seed for all prompts would give every prompt's j-th sample the
same random stream, so other lengths), so that all three vLLM engines decode the very same
samples. Every workload prints its response-length distribution (per engine, pooled over the
repetitions) beside its tokens/s, and splits each vLLM engine's seconds per call into those
inside vLLM's ``add_request`` / ``step`` and the rest. ``--no-reference`` leaves the
transformers engine out (on long responses it is the slowest by far); the last line then has
no ``ratio_vs_reference``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from omegaconf import OmegaConf

from or1.core.interfaces import BuildContext
from or1.core.registry import get_registry
from or1.core.types import SamplingParams
from or1_plugins.sources.tiny import cot_task
from or1_plugins.sources.tiny.cot_model import TinyCotModelConfig, prepare_tiny_cot_model
from or1_plugins.sources.tiny.model import TinyModelConfig, prepare_tiny_model
from or1_plugins.sources.tiny.task import TinyArithDataConfig, make_splits, prompt_text

WORKLOAD_DEFAULTS = {  # --prompts, --max-tokens, --reps
    "tiny": (32, [224, 64], 5),
    "long_cot": (8, [1024, 512], 3),  # the first preset's step (8 prompts x 8), its last two stages
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--workload",
        choices=list(WORKLOAD_DEFAULTS),
        default="tiny",
        help="tiny: the demo's arithmetic task and model; long_cot: the tiny_cot task and model",
    )
    p.add_argument("--prompts", type=int, default=None, help="32 (tiny), 8 (long_cot)")
    p.add_argument("--n", type=int, default=8)
    p.add_argument(
        "--max-tokens",
        type=int,
        nargs="+",
        default=None,
        help="one workload per value; 224 64 (tiny), 1024 512 (long_cot)",
    )
    p.add_argument("--reps", type=int, default=None, help="5 (tiny), 3 (long_cot)")
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
    p.add_argument(
        "--no-reference",
        action="store_true",
        help="leave the reference transformers engine out (slow on long responses)",
    )
    p.add_argument("--cache-dir", default=os.environ.get("OR1_CACHE_DIR", "~/.cache/or1"))
    a = p.parse_args()
    prompts, max_tokens, reps = WORKLOAD_DEFAULTS[a.workload]
    a.prompts = a.prompts or prompts
    a.max_tokens = a.max_tokens or max_tokens
    a.reps = a.reps or reps
    return a


def tiny_prompts(tokenizer, count: int) -> list[list[int]]:
    train, _ = make_splits(TinyArithDataConfig())
    out = []
    for problem in train[:count]:
        messages = [{"role": "user", "content": prompt_text(problem)}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        out.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    return out


def long_cot_prompts(tokenizer, count: int) -> list[list[int]]:
    """The first ``count`` training rows of the tiny_cot task (default config), chat-templated."""
    train, _ = cot_task.make_splits(cot_task.TinyCotDataConfig())
    out = []
    for problem in train[:count]:
        messages = [{"role": "user", "content": cot_task.prompt_text(problem)}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        out.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    return out


def count_parameters(model_path: Path) -> int:
    """Parameters in the model folder's safetensors files (tied weights stored once)."""
    from safetensors import safe_open

    total = 0
    for f in sorted(model_path.glob("*.safetensors")):
        with safe_open(str(f), framework="pt") as handle:
            total += sum(math.prod(handle.get_slice(k).get_shape()) for k in handle.keys())
    return total


def length_summary(lengths: list[int], cap: int) -> str:
    """min / median / p90 / max of response lengths, and the share that reached ``cap``."""
    ordered = sorted(lengths)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    at_cap = sum(n >= cap for n in ordered) / len(ordered)
    return (
        f"{ordered[0]:>6}{statistics.median(ordered):>8.0f}{p90:>7}{ordered[-1]:>7}"
        f"{statistics.mean(ordered):>8.0f}{at_cap:>9.1%}"
    )


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    cache_dir = Path(args.cache_dir).expanduser()
    shape = {}
    if args.hidden_size:
        shape |= {"hidden_size": args.hidden_size, "intermediate_size": 3 * args.hidden_size}
    if args.layers:
        shape["num_layers"] = args.layers
    schema, prepare = (
        (TinyCotModelConfig, prepare_tiny_cot_model)
        if args.workload == "long_cot"
        else (TinyModelConfig, prepare_tiny_model)
    )
    if args.warmed_up:
        model_cfg = OmegaConf.structured(schema(**shape))
    else:
        model_cfg = OmegaConf.structured(schema(warmup_max_steps=0, num_threads=1, **shape))
    model_path = Path(prepare(model_cfg, cache_dir))
    run_dir = Path(tempfile.mkdtemp(prefix="or1-bench-rollout-"))
    ctx = BuildContext(
        run_dir=run_dir, model_path=model_path, cache_dir=cache_dir, seed=0, config=None
    )
    registry = get_registry()

    def build(name: str, **overrides):
        return registry.build_partial("rollout", name, overrides, ctx)

    t0 = time.perf_counter()
    plugin = build("vllm", kv_cache_gib=args.kv_cache_gib)
    t_start = time.perf_counter() - t0
    reference = None if args.no_reference else build("transformers")
    n_params = count_parameters(model_path)
    make_prompts = long_cot_prompts if args.workload == "long_cot" else tiny_prompts
    prompts = make_prompts(plugin.tokenizer, args.prompts)
    prompt_lens = [len(p) for p in prompts]

    from vllm import SamplingParams as VLLMSamplingParams
    from vllm.inputs import TokensPrompt

    raw_requests = [TokensPrompt(prompt_token_ids=p) for p in prompts]

    inside_vllm: list[float] = []  # per vLLM call: seconds inside vLLM's engine calls
    engine = plugin.llm.llm_engine

    def timed(method):
        def call(*a, **kw):
            t = time.perf_counter()
            try:
                return method(*a, **kw)
            finally:
                inside_vllm[-1] += time.perf_counter() - t

        return call

    @contextlib.contextmanager
    def counting_vllm() -> Iterator[None]:
        """Sum this call's seconds inside vLLM's ``add_request`` and ``step`` into a new
        entry of ``inside_vllm``."""
        inside_vllm.append(0.0)
        engine.step, engine.add_request = timed(engine.step), timed(engine.add_request)
        try:
            yield
        finally:
            del engine.step, engine.add_request  # back to the class's methods

    # long_cot: responses stop at their own EOS, so the raw request takes the plugin's
    # per-prompt seeds (else one seed gives every prompt's j-th sample the same random stream,
    # and so other lengths): every vLLM engine then decodes the very same samples
    same_samples = args.workload == "long_cot"

    def engines_for(max_tokens: int) -> dict[str, Callable[[int], list[int]]]:
        """Per engine: a call ``seed -> response lengths`` (tokens, EOS included)."""

        def run_plugin(seed: int) -> list[int]:
            params = SamplingParams(n=args.n, max_tokens=max_tokens, seed=seed)
            with counting_vllm():
                groups = plugin.generate(prompts, params)
            return [len(c.response_ids) for g in groups for c in g]

        def run_reference(seed: int) -> list[int]:
            params = SamplingParams(n=args.n, max_tokens=max_tokens, seed=seed)
            return [len(c.response_ids) for g in reference.generate(prompts, params) for c in g]

        def run_raw(seed: int) -> list[int]:
            base = dict(
                n=args.n, temperature=1.0, top_p=1.0, top_k=0, max_tokens=max_tokens,
                logprobs=0,
            )  # fmt: skip
            if same_samples:  # the plugin's per-prompt seeds: the plugin's very samples
                seeds = plugin._prompt_seeds(seed, len(prompts))
                params = [VLLMSamplingParams(seed=s, **base) for s in seeds]
            else:
                params = VLLMSamplingParams(seed=seed, **base)
            with counting_vllm():
                outputs = plugin.llm.generate(raw_requests, params, use_tqdm=False)
            return [len(c.token_ids) for o in outputs for c in o.outputs]

        def run_raw_same_request(seed: int) -> list[int]:
            """Raw vLLM with exactly the plugin's request (per-prompt seeds, flat log-probs, no
            detokenisation): the plugin's own overhead is the difference to this one."""
            base = dict(
                n=args.n, temperature=1.0, top_p=1.0, top_k=0, max_tokens=max_tokens,
                stop_token_ids=plugin.eos_ids, logprobs=0, flat_logprobs=True, detokenize=False,
            )  # fmt: skip
            seeds = plugin._prompt_seeds(seed, len(prompts))
            params = [VLLMSamplingParams(seed=s, **base) for s in seeds]
            with counting_vllm():
                outputs = plugin.llm.generate(raw_requests, params, use_tqdm=False)
            return [len(c.token_ids) for o in outputs for c in o.outputs]

        engines = {
            "or1 vllm plugin": run_plugin,
            "raw vllm.LLM.generate": run_raw,
            "raw vllm, plugin's request": run_raw_same_request,
            "reference (transformers)": run_reference,
        }
        if reference is None:
            del engines["reference (transformers)"]
        return engines

    def headline(med: dict[str, float]) -> str:
        out = f"ratio_vs_raw_vllm={med['or1 vllm plugin'] / med['raw vllm.LLM.generate']:.3f}"
        if "reference (transformers)" in med:
            ratio_ref = med["or1 vllm plugin"] / med["reference (transformers)"]
            out += f" ratio_vs_reference={ratio_ref:.3f}"
        return out

    def measure(max_tokens: int) -> dict[str, float]:
        """Alternated repetitions of every engine on one workload; prints its table and
        returns the median tokens/s per engine."""
        engines = engines_for(max_tokens)
        for run in engines.values():  # warm-up
            run(0)
        rates: dict[str, list[float]] = {name: [] for name in engines}
        tokens: dict[str, list[int]] = {name: [] for name in engines}
        lengths: dict[str, list[int]] = {name: [] for name in engines}
        seconds: dict[str, list[float]] = {name: [] for name in engines}
        inside: dict[str, list[float]] = {name: [] for name in engines}  # in vLLM's engine
        names = list(engines)
        for rep in range(args.reps):
            order = names[rep % len(names) :] + names[: rep % len(names)]  # rotate the first
            for name in order:
                inside_vllm.clear()
                t = time.perf_counter()
                lens = engines[name](1000 + rep)
                dt = time.perf_counter() - t
                inside[name].append(sum(inside_vllm))
                n_tok = sum(lens)
                lengths[name] += lens
                rates[name].append(n_tok / dt)
                seconds[name].append(dt)
                tokens[name].append(n_tok)
        med = {name: statistics.median(r) for name, r in rates.items()}
        print(
            f"\nrollout benchmark: {args.prompts} prompts x n={args.n} x {max_tokens} tokens, "
            f"{args.reps} reps alternated, torch threads={args.threads}, model={model_path.name} "
            f"({n_params / 1e6:.2f}M params, {'warmed-up' if args.warmed_up else 'untrained'}), "
            f"vLLM engine start {t_start:.1f}s; {args.workload} prompts of "
            f"{min(prompt_lens)}-{max(prompt_lens)} tokens"
        )
        print(f"{'engine':<30}{'median tok/s':>14}{'min':>10}{'max':>10}{'tokens/call':>13}")
        for name in names:
            r = rates[name]
            print(
                f"{name:<30}{med[name]:>14.0f}{min(r):>10.0f}{max(r):>10.0f}"
                f"{statistics.median(tokens[name]):>13.0f}"
            )
        print(
            f"response lengths (tokens, all reps){'':<4}{'min':>6}{'median':>8}{'p90':>7}"
            f"{'max':>7}{'mean':>8}{'at cap':>9}"
        )
        for name in names:
            print(f"  {name:<36}{length_summary(lengths[name], max_tokens)}")
        overhead = med["or1 vllm plugin"] / med["raw vllm, plugin's request"]
        print(f"plugin vs raw vLLM with the plugin's own request: {overhead:.3f}")
        plugin_s = seconds["or1 vllm plugin"]
        own = [t - v for t, v in zip(plugin_s, inside["or1 vllm plugin"], strict=True)]
        share = statistics.median(o / t for o, t in zip(own, plugin_s, strict=True))
        print(
            f"plugin's own time per call (outside vLLM's add_request / step): "
            f"{statistics.median(own) * 1e3:.1f} ms ({share:.1%} of the call)"
        )
        print(
            f"seconds per call (medians){'':<4}{'call':>8}{'in vLLM engine':>16}{'outside':>9}"
            f"{'s per 1k tokens':>17}"
        )
        for name in names:
            if name == "reference (transformers)":
                continue
            outside = [t - v for t, v in zip(seconds[name], inside[name], strict=True)]
            per_k = statistics.median(
                1e3 * t / n for t, n in zip(seconds[name], tokens[name], strict=True)
            )
            print(
                f"  {name:<28}{statistics.median(seconds[name]):>8.2f}"
                f"{statistics.median(inside[name]):>16.2f}{statistics.median(outside):>9.3f}"
                f"{per_k:>17.3f}"
            )
        print(f"max_tokens={max_tokens}: {headline(med)}", flush=True)
        return med

    results = {m: measure(m) for m in args.max_tokens}
    plugin.close()
    if reference is not None:
        reference.close()
    shutil.rmtree(run_dir, ignore_errors=True)
    sys.stdout.flush()
    print(headline(results[args.max_tokens[0]]), flush=True)  # the headline workload


if __name__ == "__main__":
    main()
