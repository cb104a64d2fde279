"""The embedded default task (tiny_arith) and model (tiny)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from or1_plugins.sources.tiny import model as tiny_model
from or1_plugins.sources.tiny import task as tiny_task
from or1_plugins.sources.tiny.model import TinyModelConfig, prepare_tiny_model
from or1_plugins.sources.tiny.task import Problem, TinyArithDataConfig, prepare_tiny_arith

SMALL_DATA = dict(num_train=60, num_val=20)
# a model small and short enough to build in a second or two
SMALL_MODEL = dict(
    hidden_size=32,
    intermediate_size=64,
    num_layers=1,
    num_heads=2,
    num_kv_heads=1,
    warmup_batch_size=8,
    warmup_max_steps=2,
    warmup_eval_every=1,
    warmup_probe_size=4,
    warmup_max_new_tokens=8,
    warmup_target_accuracy=1.0,
)


def _rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


# ------------------------------------------------------------------------------------ task


def test_rows_follow_the_schema(tmp_path: Path) -> None:
    train, val = prepare_tiny_arith(TinyArithDataConfig(**SMALL_DATA), tmp_path)
    assert [p.name for p in train] == ["train.parquet"]
    assert [p.name for p in val] == ["val.parquet"]
    assert train[0].parent.parent == tmp_path / "data"
    assert train[0].parent.name.startswith("tiny_arith-")
    for path, split, n in ((train[0], "train", 60), (val[0], "val", 20)):
        rows = _rows(path)
        assert len(rows) == n
        for i, row in enumerate(rows):
            assert set(row) == {"data_source", "prompt", "ability", "reward_model", "extra_info"}
            assert row["data_source"] == "or1/tiny_arith"
            assert row["ability"] == "math"
            assert row["extra_info"] == {"index": i, "split": split}
            [msg] = row["prompt"]
            assert msg["role"] == "user"
            assert msg["content"].startswith("What is ") and msg["content"].endswith("?")
            a, op, b = msg["content"][len("What is ") : -1].split(" ")
            assert op == "+"
            assert row["reward_model"] == {"style": "rule", "ground_truth": str(int(a) + int(b))}


def test_splits_are_disjoint_and_avoid_the_probe_pool() -> None:
    cfg = TinyArithDataConfig(ops="+-", num_train=3000, num_val=400)
    train, val = tiny_task.make_splits(cfg)
    assert len(set(train)) == 3000 and len(set(val)) == 400
    assert not set(train) & set(val)
    assert {tiny_task.pool_of(p, cfg) for p in train} == {"train"}
    assert {tiny_task.pool_of(p, cfg) for p in val} == {"val"}
    assert all(p.answer >= 0 for p in train + val)


def test_files_are_deterministic_and_reused(tmp_path: Path, monkeypatch) -> None:
    cfg = TinyArithDataConfig(**SMALL_DATA)
    a_train, a_val = prepare_tiny_arith(cfg, tmp_path / "a")
    b_train, b_val = prepare_tiny_arith(TinyArithDataConfig(**SMALL_DATA), tmp_path / "b")
    assert a_train[0].read_bytes() == b_train[0].read_bytes()
    assert a_val[0].read_bytes() == b_val[0].read_bytes()
    # the cache key ignores fields that do not change the content
    c_train, _ = prepare_tiny_arith(
        TinyArithDataConfig(**SMALL_DATA, shuffle=False, max_prompt_length=7), tmp_path / "a"
    )
    assert c_train == a_train
    # another seed: other problems, other folder
    d_train, _ = prepare_tiny_arith(TinyArithDataConfig(**SMALL_DATA, seed=1), tmp_path / "a")
    assert d_train[0].parent != a_train[0].parent
    assert _rows(d_train[0]) != _rows(a_train[0])

    def boom(cfg):
        raise AssertionError("rebuilt")

    monkeypatch.setattr(tiny_task, "make_splits", boom)
    assert prepare_tiny_arith(cfg, tmp_path / "a") == (a_train, a_val)
    assert not list(a_train[0].parent.glob("*.tmp"))


def test_omegaconf_node_is_accepted(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    node = OmegaConf.structured(TinyArithDataConfig(**SMALL_DATA))
    assert prepare_tiny_arith(node, tmp_path) == prepare_tiny_arith(
        TinyArithDataConfig(**SMALL_DATA), tmp_path
    )


def test_pool_too_small_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_val"):
        prepare_tiny_arith(TinyArithDataConfig(max_operand=9, num_train=10, num_val=50), tmp_path)


def test_target_response_works_columns_with_carries() -> None:
    assert tiny_task.target_response(Problem(87, "+", 45)) == (
        "<think>\n7 + 5 = 12\n8 + 4 + 1 = 13\n</think>\n\\boxed{132}"
    )
    assert tiny_task.target_response(Problem(5, "+", 23)) == (
        "<think>\n5 + 3 = 8\n0 + 2 = 2\n</think>\n\\boxed{28}"
    )
    assert tiny_task.target_response(Problem(50, "-", 7)).endswith("\\boxed{43}")
    for a in range(0, 100, 7):
        for b in range(0, 100, 3):
            p = Problem(a, "+", b)
            assert tiny_model.boxed_answer(tiny_task.target_response(p)) == str(a + b)


def test_boxed_answer() -> None:
    assert tiny_model.boxed_answer("<think>\\boxed{1}</think> so \\boxed{2} \\boxed{ 3 }") == "3"
    assert tiny_model.boxed_answer("\\boxed{2}") is None
    assert tiny_model.boxed_answer("<think></think> 2") is None


# ------------------------------------------------------------------------------- tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    cfg = TinyModelConfig()
    pools = tiny_task.problem_pools(tiny_model.task_config(cfg))
    return tiny_model.build_tokenizer(cfg, pools["train"])


def test_tokenizer_round_trips_task_text(tokenizer) -> None:
    for p in [Problem(87, "+", 45), Problem(0, "+", 0), Problem(99, "-", 9), Problem(7, "*", 8)]:
        for text in (tiny_task.target_response(p), tiny_model.chat_prompt(p)):
            assert tokenizer.decode(tokenizer.encode(text)) == text
    ids = tokenizer.encode("12 + 345")
    digits = [t for t in tokenizer.convert_ids_to_tokens(ids) if any(c.isdigit() for c in t)]
    assert digits == list("12345")  # one token per digit


def test_special_tokens_and_chat_template(tokenizer) -> None:
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.pad_token == "<|endoftext|>"
    assert tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [
        0,
        1,
        2,
    ]
    msgs = [{"role": "user", "content": "What is 1 + 2?"}]
    text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text == "<|im_start|>user\nWhat is 1 + 2?<|im_end|>\n<|im_start|>assistant\n"
    assert text == tiny_model.chat_prompt(Problem(1, "+", 2))
    full = tokenizer.apply_chat_template(
        msgs + [{"role": "assistant", "content": "x"}], tokenize=False
    )
    assert full.endswith("<|im_start|>assistant\nx<|im_end|>\n")
    ids = tokenizer.encode(text)
    assert ids.count(1) == 2 and ids.count(2) == 1
    assert tokenizer.decode(ids) == text


def test_tokenizer_is_deterministic(tokenizer) -> None:
    cfg = TinyModelConfig()
    pools = tiny_task.problem_pools(tiny_model.task_config(cfg))
    again = tiny_model.build_tokenizer(cfg, pools["train"])
    assert again.get_vocab() == tokenizer.get_vocab()


# ----------------------------------------------------------------------------------- model


def test_model_folder_loads_and_is_reused(tmp_path: Path, monkeypatch) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cfg = TinyModelConfig(**SMALL_MODEL)
    folder = prepare_tiny_model(cfg, tmp_path)
    assert folder.parent == tmp_path / "models" and folder.name.startswith("tiny-")
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temp leftovers
    model = AutoModelForCausalLM.from_pretrained(folder)
    tok = AutoTokenizer.from_pretrained(folder)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.dtype == torch.float32
    assert model.config.vocab_size == len(tok)
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 1
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.convert_tokens_to_ids("<|endoftext|>")
    assert model.generation_config.eos_token_id == eos == tok.eos_token_id
    assert model.generation_config.pad_token_id == pad == tok.pad_token_id
    assert (folder / "model.safetensors").is_file()
    assert tok.chat_template == tiny_model.CHAT_TEMPLATE
    info = json.loads((folder / tiny_model.BUILD_INFO_FILE).read_text())
    assert info["warmup_steps"] == 2 and not info["warmup_hit_target"]
    # generate runs and stops at <|im_end|> or the length limit
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "What is 1 + 2?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    out = model.generate(**prompt, max_new_tokens=4)
    assert out.shape[1] <= prompt["input_ids"].shape[1] + 4

    # reused: no second build
    def boom(cfg, folder):
        raise AssertionError("rebuilt")

    monkeypatch.setattr(tiny_model, "_build_model_folder", boom)
    assert prepare_tiny_model(TinyModelConfig(**SMALL_MODEL), tmp_path) == folder
    # another config is another folder
    with pytest.raises(AssertionError, match="rebuilt"):
        prepare_tiny_model(TinyModelConfig(**{**SMALL_MODEL, "seed": 1}), tmp_path)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # failed build cleaned


def test_build_is_deterministic(tmp_path: Path) -> None:
    cfg = TinyModelConfig(**SMALL_MODEL)
    a = prepare_tiny_model(cfg, tmp_path / "a")
    b = prepare_tiny_model(cfg, tmp_path / "b")
    assert (a / "model.safetensors").read_bytes() == (b / "model.safetensors").read_bytes()
    assert (a / "tokenizer.json").read_bytes() == (b / "tokenizer.json").read_bytes()


def test_warmup_stops_when_the_target_is_hit(tokenizer, monkeypatch) -> None:
    cfg = TinyModelConfig(
        **{
            **SMALL_MODEL,
            "warmup_max_steps": 100,
            "warmup_eval_every": 4,
            "warmup_eval_every_near": 2,
            "warmup_target_accuracy": 0.3,
        }
    )
    scripted = iter([0.0, 0.1, 0.2, 0.25, 0.31, 0.9])
    calls: list[int] = []

    def fake_accuracy(model, tok, problems, *, max_new_tokens, seed, **kw):
        calls.append(seed)
        return next(scripted)

    monkeypatch.setattr(tiny_model, "sampled_accuracy", fake_accuracy)
    model = tiny_model.build_model(cfg, tokenizer)
    result = tiny_model.warmup(model, tokenizer, cfg)
    # every 4 steps until 0.15 (half the target) is reached, then every 2 steps
    assert [h["step"] for h in result.history] == [4, 8, 12, 14, 16]
    assert result.steps == 16 and result.hit_target and result.accuracy == 0.31


def test_warmup_actually_learns(tokenizer) -> None:
    """A few real steps lower the loss (the real accuracy probe runs too)."""
    cfg = TinyModelConfig(
        **{**SMALL_MODEL, "warmup_max_steps": 12, "warmup_eval_every": 6, "warmup_lr": 1e-2}
    )
    model = tiny_model.build_model(cfg, tokenizer)
    result = tiny_model.warmup(model, tokenizer, cfg)
    assert result.steps == 12 and len(result.history) == 2
    assert result.history[1]["loss"] < result.history[0]["loss"]
    assert 0.0 <= result.accuracy <= 1.0


def test_sampling_stops_at_eos_and_respects_the_limit(tokenizer) -> None:
    import torch

    cfg = TinyModelConfig(**SMALL_MODEL)
    model = tiny_model.build_model(cfg, tokenizer)
    prompts = [tokenizer.encode(tiny_model.chat_prompt(Problem(i, "+", 3 * i))) for i in (1, 42)]
    outs = tiny_model.sample(
        model, prompts, eos_id=2, pad_id=0, max_new_tokens=6,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert len(outs) == 2
    for o in outs:
        assert 1 <= len(o) <= 6
        assert 2 not in o[:-1]


def test_plugin_registers_both_sources() -> None:
    import or1_plugins.sources.tiny as plugin

    seen: dict[str, tuple] = {}
    groups: dict[str, str] = {}
    plugin.or1_register(lambda g, n, f, s: (seen.__setitem__(n, (f, s)), groups.__setitem__(n, g)))
    assert groups["tiny_arith"] == "data" and groups["tiny"] == "model"
    # (the package's long chain-of-thought sources are tested in tests/test_long_cot.py)
    assert seen["tiny_arith"] == (prepare_tiny_arith, TinyArithDataConfig)
    assert seen["tiny"] == (prepare_tiny_model, TinyModelConfig)
    assert TinyArithDataConfig().name == "tiny_arith" and TinyModelConfig().name == "tiny"
