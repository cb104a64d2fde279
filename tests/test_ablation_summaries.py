"""``benchmarks/ablations.py``'s summaries of finished runs: generated tokens, entropy windows,
accuracy after equal step time and the entropy controller's tracking, on hand-made run folders
whose figures are worked out by hand below."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ablations():
    spec = importlib.util.spec_from_file_location("ablations", ROOT / "benchmarks" / "ablations.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_run(path: Path, step_s: list[float], evals: dict[int, float], entropy: list[float]):
    """A run folder as or1-train leaves it: metrics.jsonl with one row per step (length 100
    tokens x 8 samples) and one per evaluation, and the composed config."""
    rows = [{"step": k, "val/tiny_cot/avg@1": v} for k, v in evals.items() if k == 0]
    for i, (t, e) in enumerate(zip(step_s, entropy, strict=True), start=1):
        rows.append(
            {
                "step": i,
                "reward/mean": 0.5,
                "entropy/value": e,
                "response_length/mean": 100.0 + i,
                "rollout/engine0_samples": 8.0,
                "response/truncated_frac": 0.25 if i == 1 else 0.0,
                "timing/step_s": t,
            }
        )
        if i in evals:
            rows.append({"step": i, "val/tiny_cot/avg@1": evals[i]})
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "config.yaml").write_text("trainer: {}\n")
    (path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_a_run_is_summarised_from_its_metrics(ablations, tmp_path: Path):
    write_run(tmp_path, [10, 20, 30, 40], {0: 0.40, 2: 0.45, 4: 0.50}, [0.1, 0.2, 0.3, 0.4])
    run = ablations.read(tmp_path)
    # tokens: 8 samples x (101 + 102 + 103 + 104) mean tokens
    assert run["tokens"] == pytest.approx(8 * 410)
    assert run["acc_start"] == 0.40 and run["acc"] == 0.50
    # the first and the last three steps' entropy
    assert run["entropy_start"] == pytest.approx(0.2) and run["entropy_end"] == pytest.approx(0.3)
    assert run["truncated"] == pytest.approx(0.0625)
    # summed step time at each evaluation: 0, 10 + 20, 10 + 20 + 30 + 40
    assert run["elapsed"] == {0: 0, 2: 30, 4: 100}
    assert run["step_s"] == 100 and run["reward"] == 0.5 and run["coef"] == 0.0


def test_accuracy_after_equal_step_time(ablations, tmp_path: Path):
    write_run(tmp_path / "slow", [10, 20, 30, 40], {0: 0.40, 2: 0.45, 4: 0.50}, [0.1] * 4)
    write_run(tmp_path / "fast", [5, 5, 5, 5], {0: 0.40, 2: 0.42, 4: 0.44}, [0.1] * 4)
    slow, fast = ablations.read(tmp_path / "slow"), ablations.read(tmp_path / "fast")
    # the budget is the fast run's 20 s: the slow run has only its step-0 evaluation by then
    assert ablations.accuracy_within(slow, 20.0) == 0.40
    assert ablations.accuracy_within(slow, 30.0) == 0.45
    assert ablations.accuracy_within(fast, 20.0) == 0.44
    assert ablations.equal_time([slow], [fast]) == (0.40, 0.44)
    # two seeds: the means of the per-seed pairs (second seed: both finish within 100 s)
    assert ablations.equal_time([slow, slow], [fast, slow]) == pytest.approx((0.45, 0.47))


def test_tracking_skips_the_first_fifth(ablations):
    # 10 steps: the first 2 are skipped; of the other 8, |e - 0.1| is 0.02 four times
    # (within 25% of the target) and 0.05 four times (outside)
    entropy = [0.0, 0.0] + [0.12, 0.08, 0.12, 0.08, 0.15, 0.05, 0.15, 0.05]
    mae, within = ablations.tracking(entropy, 0.1)
    assert mae == pytest.approx(0.035)
    assert within == 0.5


def test_each_controller_gets_only_the_entropy_overrides_it_has(ablations, tmp_path: Path):
    a = ablations.argparse.Namespace(
        steps="2,1,1", prompts=4, eval_every=2, eval_problems=8, constant_coef=None, extra=[],
        entropy=["target=0.06", "coef_max=0.5", "delta=0.02", "kp=3.0"],
    )  # fmt: skip

    def entropy_of(name: str, variant: str) -> dict:
        from omegaconf import OmegaConf

        args = ablations.overrides(a, ablations.VARIANTS[name][variant], 0, tmp_path)
        return OmegaConf.to_container(OmegaConf.create(ablations.composed(tuple(args)))["entropy"])

    adaptive = entropy_of("entropy", "adaptive")
    assert (adaptive["name"], adaptive["target"], adaptive["coef_max"], adaptive["delta"]) == (
        "adaptive", 0.06, 0.5, 0.02,
    )  # fmt: skip
    pi = entropy_of("controller", "pi")  # no delta; kp from --entropy
    assert (pi["name"], pi["target"], pi["coef_max"], pi["kp"]) == ("pi", 0.06, 0.5, 3.0)
    constant = entropy_of("entropy", "constant")  # half the bound, nothing else
    assert constant == {"name": "constant", "estimator": "full_vocab", "coef": 0.25}
    assert entropy_of("recipe", "plain") == {"name": "none", "estimator": "full_vocab"}


def test_runs_keep_the_documented_rounds_settings_whatever_the_preset_has(ablations, tmp_path):
    from omegaconf import OmegaConf

    a = ablations.argparse.Namespace(
        steps="2,1,1", prompts=4, eval_every=2, eval_problems=8, constant_coef=None, extra=[],
        entropy=[],
    )  # fmt: skip

    def composed(variant: list[str]):
        args = ablations.overrides(a, variant, 0, tmp_path)
        return OmegaConf.create(ablations.composed(tuple(args)))

    # the preset has the scaled control (0.1, cap 0.05), lr 3e-4 and 16 samples per prompt; the
    # rounds ran with the published control, lr 2e-4 and 8 samples
    cfg = composed([])
    assert (cfg.entropy.name, cfg.entropy.target, cfg.entropy.coef_max) == ("adaptive", 0.2, 0.005)
    assert (cfg.learner.lr, cfg.trainer.group_size, cfg.trainer.prompts_per_step) == (2e-4, 8, 4)
    assert composed(["entropy=none"]).entropy.name == "none"  # a variant's controller wins
    # round 4's command: --entropy and --extra override the pinned settings
    a.entropy, a.extra = ["target=0.1", "coef_max=0.05", "delta=1e-3"], ["learner.lr=3e-4"]
    cfg = composed([])
    assert (cfg.entropy.target, cfg.entropy.coef_max, cfg.entropy.delta) == (0.1, 0.05, 1e-3)
    assert cfg.learner.lr == 3e-4


def test_runs_of_the_same_composed_config_are_run_once(ablations, tmp_path: Path):
    preset = ("experiment=cpu_long_cot",)
    # two spellings of the preset (its defaults set explicitly) compose to the same config
    assert ablations.composed((*preset, "rollout.temperature=1.0")) == ablations.composed(
        (*preset, "trainer.updates_per_step=1")
    )
    assert ablations.composed((*preset, "rollout.temperature=0.6")) != ablations.composed(preset)

    def finished(folder: Path, overrides: list[str], done: bool = True) -> Path:
        (folder / ".hydra").mkdir(parents=True)
        (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
        if done:
            (folder / "summary.json").write_text("{}")
        return folder

    finished(tmp_path / "temperature" / "t06_s0", [*preset, "rollout.temperature=0.6"])
    finished(tmp_path / "stages" / "multi_s0", [*preset, "trainer.seed=0"], done=False)
    twin = finished(tmp_path / "updates" / "u1_s0", [*preset, "trainer.updates_per_step=1"])
    wanted = tmp_path / "filter" / "zero_variance_s0"
    args = [*preset, "rollout.temperature=1.0", f"hydra.run.dir={wanted}"]
    assert ablations.finished_twin(tmp_path, args, wanted) == twin
    # the unfinished run of the same config is never taken; another seed is another run
    assert ablations.finished_twin(tmp_path, [*preset, "trainer.seed=1"], wanted) is None


def test_every_variant_composes(ablations, tmp_path: Path):
    a = ablations.argparse.Namespace(
        steps="10,6,4", prompts=16, eval_every=5, eval_problems=64, constant_coef=None, extra=[],
        entropy=["target=0.06", "coef_max=0.5", "delta=0.03"],
    )  # fmt: skip
    from omegaconf import OmegaConf

    for name, variants in ablations.VARIANTS.items():
        for variant in variants.values():
            args = ablations.overrides(a, variant, 1, tmp_path)
            cfg = OmegaConf.create(ablations.composed(tuple(args)))
            assert cfg.trainer.seed == 1 and cfg.trainer.prompts_per_step == 16, (name, variant)
    schedule = ablations.overrides(a, ablations.VARIANTS["schedule"]["truncation"], 0, tmp_path)
    stages = OmegaConf.create(ablations.composed(tuple(schedule))).stages
    assert (stages.advance, stages.advance_threshold, stages.advance_patience) == (
        "truncation", 0.2, 2,
    )  # fmt: skip
    assert [s.steps for s in stages.stages] == [10, 6, 4]
