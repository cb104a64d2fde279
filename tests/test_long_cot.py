"""The long chain-of-thought workload: the tiny_cot task, its model and the cpu_long_cot preset.

Everything here runs in seconds on small configurations; the full model build and the preset's
30-minute run are measured in docs/long-cot.md, not tested.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from omegaconf import OmegaConf

from or1_plugins.sources.tiny import build, cot_model, cot_task
from or1_plugins.sources.tiny.cot_model import TinyCotModelConfig, prepare_tiny_cot_model
from or1_plugins.sources.tiny.cot_task import ChainProblem, TinyCotDataConfig, prepare_tiny_cot

ROOT = Path(__file__).resolve().parents[1]
SMALL_DATA = dict(num_train=50, num_val=20)
SMALL_MODEL = dict(
    hidden_size=32,
    intermediate_size=64,
    num_layers=1,
    num_heads=2,
    num_kv_heads=1,
    warmup_batch_size=6,
    warmup_max_steps=2,
    warmup_eval_every=1,
    warmup_probe_size=3,
    warmup_max_new_tokens=8,
    warmup_target_accuracy=1.0,
    warmup_train_size=300,
    warmup_micro_batch_tokens=256,
)


@pytest.fixture(scope="module")
def tokenizer():
    """The task's tokenizer as the model build trains it (on a smaller corpus)."""
    cfg = TinyCotModelConfig(**SMALL_MODEL)
    train, _ = cot_model.warmup_problems(cfg)
    return cot_model.build_tokenizer(cfg, train)


@pytest.fixture(scope="module")
def sample_problems() -> list[ChainProblem]:
    """2,000 training problems of the default task distribution."""
    train, _ = cot_task.make_splits(TinyCotDataConfig(num_train=2000, num_val=10))
    return train


def _response_tokens(tokenizer, p: ChainProblem) -> int:
    """Tokens of the reference response as the policy would generate it (with its EOS)."""
    return len(tokenizer.encode(cot_task.target_response(p))) + 1


def _first_stage_budget() -> int:
    stages = OmegaConf.load(ROOT / "conf" / "stages" / "cpu_long_cot.yaml").stages
    budgets = [int(s.max_response_length) for s in stages]
    assert len(budgets) == 3 and budgets == sorted(budgets)
    return budgets[0]


# ------------------------------------------------------------------------------------ task


def test_solution_writes_one_addition_per_line() -> None:
    p = ChainProblem(start=17, step=7, count=3)
    assert cot_task.prompt_text(p) == "Add 7 to 17, 3 times."
    assert cot_task.target_response(p) == (
        "<think>\n3:17+7=24\n2:24+7=31\n1:31+7=38\n</think>\n\\boxed{38}"
    )
    assert p.answer == 38
    assert cot_task.solution_lines(ChainProblem(95, 9, 2)) == ["2:95+9=104", "1:104+9=113"]
    long = cot_task.solution_lines(ChainProblem(1, 9, 110))
    assert len(long) == 110 and long[0] == "110:1+9=10" and long[-1] == "1:982+9=991"
    assert build.boxed_answer(cot_task.target_response(p)) == "38"


def test_rows_follow_the_schema_and_splits_are_disjoint(tmp_path: Path) -> None:
    cfg = TinyCotDataConfig(**SMALL_DATA)
    train, val = prepare_tiny_cot(cfg, tmp_path)
    assert train[0].parent.name.startswith("tiny_cot-")
    seen: dict[str, set[str]] = {}
    for path, split, n in ((train[0], "train", 50), (val[0], "val", 20)):
        rows = pq.read_table(path).to_pylist()
        assert len(rows) == n
        for i, row in enumerate(rows):
            assert set(row) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
            assert row["data_source"] == "or1/tiny_cot" and row["ability"] == "math"
            [msg] = row["prompt"]
            assert msg["role"] == "user"
            step, start, count = map(
                int, re.fullmatch(r"Add (\d) to (\d+), (\d+) times\.", msg["content"]).groups()
            )
            assert 1 <= count <= 110 and 1 <= step <= 9 and 1 <= start <= 99
            assert row["reward_model"] == {
                "style": "rule",
                "ground_truth": str(start + step * count),
            }
            assert row["extra_info"] == {"index": i, "split": split, "count": count}
            seen.setdefault(split, set()).add(msg["content"])
    assert not seen["train"] & seen["val"]
    assert len(seen["val"]) == 20  # held-out problems are distinct
    # deterministic, and reused from the cache
    again = prepare_tiny_cot(TinyCotDataConfig(**SMALL_DATA), tmp_path / "b")
    assert again[0][0].read_bytes() == train[0].read_bytes()
    assert prepare_tiny_cot(cfg, tmp_path) == (train, val)


def test_warmup_problems_avoid_the_held_out_pool() -> None:
    cfg = TinyCotModelConfig(**SMALL_MODEL)
    train, probe = cot_model.warmup_problems(cfg)
    task = cot_model.task_config(cfg)
    assert {cot_task.pool_of(p, task) for p in train} == {"train"}
    assert {cot_task.pool_of(p, task) for p in probe} == {"probe"}


def test_solution_lengths_are_long_tailed(tokenizer, sample_problems) -> None:
    lengths = sorted(_response_tokens(tokenizer, p) for p in sample_problems)
    median = statistics.median(lengths)
    p90 = lengths[int(0.9 * (len(lengths) - 1))]
    assert lengths[0] <= 30  # the shortest chains: a line or two
    assert lengths[-1] >= 1300  # the longest: over a thousand tokens
    assert lengths[-1] / median >= 8  # a long tail, not a spread around the mean
    assert p90 / median >= 4
    assert statistics.mean(lengths) > 1.5 * median  # skewed to the right
    # the length is set by the problem: more additions, a longer chain (about 11 tokens each)
    # (a line's width varies by a few digits, so compare counts ten apart)
    by_decade: dict[int, list[int]] = {}
    for p in sample_problems:
        by_decade.setdefault(p.count // 10, []).append(_response_tokens(tokenizer, p))
        assert len(cot_task.solution_lines(p)) == p.count
    means = [statistics.mean(by_decade[k]) for k in sorted(by_decade)]
    assert len(means) >= 10 and all(a + 50 < b for a, b in zip(means, means[1:], strict=False))


def test_the_first_stage_truncates_a_real_share(tokenizer, sample_problems) -> None:
    budget = _first_stage_budget()
    lengths = [_response_tokens(tokenizer, p) for p in sample_problems]
    share = sum(n > budget for n in lengths) / len(lengths)
    assert 0.2 <= share <= 0.5, share
    # the last stage's budget still cuts a few of the longest chains, not most
    assert sum(n > 4 * budget for n in lengths) / len(lengths) < share / 2


def test_reference_solutions_are_scored_correct_by_the_math_verifier(sample_problems) -> None:
    from or1_plugins.verifier.math import MathVerifier, MathVerifierConfig

    rows = [cot_task.to_row(p, i, "train") for i, p in enumerate(sample_problems[:40])]
    responses = [cot_task.target_response(p) for p in sample_problems[:40]]
    # the same chains with a boxed answer off by one or with a digit prepended
    problems = sample_problems[:5]
    wrong = [
        cot_task.target_response(p)[: -len(f"{p.answer}}}")] + f"{p.answer + 1}}}" for p in problems
    ]
    wrong += [r.replace("\\boxed{", "\\boxed{1") for r in responses[:5]]
    verifier = MathVerifier(MathVerifierConfig(workers=1))
    try:
        scores = verifier.score_many(responses + wrong, rows + rows[:5] + rows[:5])
    finally:
        verifier.close()
    assert [s.value for s in scores[:40]] == [1.0] * 40
    assert [s.value for s in scores[40:]] == [0.0] * 10


# ------------------------------------------------------------------------------- tokenizer


def test_tokenizer_is_character_level_on_the_chains(tokenizer) -> None:
    p = ChainProblem(start=85, step=9, count=4)
    text = cot_task.target_response(p)
    assert tokenizer.decode(tokenizer.encode(text)) == text
    chain = "\n12:103+9=112\n"
    assert len(tokenizer.encode(chain)) == len(chain)  # one token per character
    assert len(tokenizer) <= TinyCotModelConfig().tokenizer_vocab_size


# ----------------------------------------------------------------------------------- model


def test_micro_batched_warmup_loss_equals_the_whole_batch(tokenizer) -> None:
    """Length-sorted micro-batches give the same loss and gradient as one padded batch."""
    import torch

    cfg = TinyCotModelConfig(**SMALL_MODEL)
    problems = [ChainProblem(5, 3, k) for k in (2, 3, 8, 14, 5)]
    batch = build.encode_examples(tokenizer, [cot_model.example(p) for p in problems])
    groups = build.micro_batches(batch, 128)
    assert len(groups) > 1 and sorted(sum(groups, [])) == sorted(batch)
    assert all(len(g) * max(len(a) + len(b) for a, b in g) <= 128 or len(g) == 1 for g in groups)
    grads = []
    for mb in (0, 128):
        model = build.build_model(cfg, tokenizer)
        loss = build._loss_and_backward(model, batch, 0, 0.0, mb)
        grads.append((float(loss), [p.grad.clone() for p in model.parameters()]))
    assert grads[0][0] == pytest.approx(grads[1][0], rel=1e-5)
    for a, b in zip(grads[0][1], grads[1][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_model_folder_builds_and_is_reused(tmp_path: Path, monkeypatch) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = TinyCotModelConfig(**SMALL_MODEL)
    folder = prepare_tiny_cot_model(cfg, tmp_path)
    assert folder.name.startswith("tiny_cot-")
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.max_position_embeddings == 2048
    assert model.config.vocab_size == len(tok)

    def boom(cfg, folder):
        raise AssertionError("rebuilt")

    monkeypatch.setattr(cot_model, "_build_model_folder", boom)
    assert prepare_tiny_cot_model(TinyCotModelConfig(**SMALL_MODEL), tmp_path) == folder


# ---------------------------------------------------------------------------------- preset


def test_preset_composes_to_the_long_cot_recipe() -> None:
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from or1.core.registry import get_registry
    from or1.core.schemas import CONFIG_MODULE, CONFIG_NAME, store_schemas
    from or1.launch.config_checks import check_values

    store_schemas(get_registry())
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            cfg = compose(config_name=CONFIG_NAME, overrides=["experiment=cpu_long_cot"])
    finally:
        GlobalHydra.instance().clear()
    check_values(cfg)
    assert cfg.data.name == "tiny_cot" and cfg.model.name == "tiny_cot"
    assert (cfg.rollout.name, cfg.learner.name) == ("vllm", "megatron")
    assert (cfg.entropy.name, cfg.filter.name, cfg.loss.kl_coef) == ("adaptive", "zero_variance", 0)
    assert [s.max_response_length for s in cfg.stages.stages] == [256, 512, 1024]
    # the warm-up learns the task the data section generates
    for key in ("min_count", "max_count", "size_exponent", "max_start", "max_step", "split_seed"):
        assert cfg.model[f"task_{key}"] == cfg.data[key], key
    assert cfg.model.max_position_embeddings >= cfg.data.max_prompt_length + 1024


def test_plugin_registers_the_long_cot_sources() -> None:
    import or1_plugins.sources.tiny as plugin

    data: dict[str, tuple] = {}
    models: dict[str, tuple] = {}
    found = {"data": data, "model": models}
    plugin.or1_register(lambda g, n, f, s: found[g].__setitem__(n, (f, s)))
    assert data["tiny_cot"] == (prepare_tiny_cot, TinyCotDataConfig)
    assert models["tiny_cot"] == (prepare_tiny_cot_model, TinyCotModelConfig)
    assert TinyCotDataConfig().name == "tiny_cot" and TinyCotModelConfig().name == "tiny_cot"
