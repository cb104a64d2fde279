"""Fuzzing the user's inputs: dataset rows and config overrides never end in a traceback,
only in a clear error (``Or1Error`` / exit status 2 with one ``or1: error:`` line) or a valid run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from or1.core.data import read_dataset, tokenize_prompts
from or1.core.errors import Or1Error
from tests.conftest import FAST_RUN, run_cli

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
messages = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "role": st.sampled_from(["user", "system", "assistant", "bogus"]),
                "content": st.one_of(st.text(max_size=40), scalars),
            }
        ),
        json_values,
    ),
    max_size=3,
)
rows = st.fixed_dictionaries(
    {},
    optional={
        "data_source": st.one_of(st.text(max_size=10), scalars),
        "prompt": st.one_of(messages, st.text(max_size=40), scalars),
        "ability": st.one_of(st.sampled_from(["math", "code"]), scalars),
        "reward_model": st.one_of(
            st.fixed_dictionaries(
                {}, optional={"ground_truth": json_values, "style": st.text(max_size=5)}
            ),
            scalars,
        ),
        "extra_info": json_values,
    },
)


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@SETTINGS
@given(data=st.lists(rows, min_size=1, max_size=4))
def test_any_dataset_rows_load_or_fail_with_a_named_row(tmp_path_factory, tokenizer, data):
    path = tmp_path_factory.mktemp("rows") / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in data))
    try:
        loaded = read_dataset([path])
        prompts = tokenize_prompts(loaded, tokenizer, 256)
    except Or1Error as exc:
        message = str(exc)
        assert "\n" not in message and str(path) in message and "row " in message, message
        return
    assert len(prompts) == len(data) and all(p.prompt_ids for p in prompts)


@SETTINGS
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_as_a_dataset_file(tmp_path_factory, raw):
    for name in ("train.jsonl", "train.parquet"):
        path = tmp_path_factory.mktemp("bytes") / name
        path.write_bytes(raw)
        try:
            read_dataset([path])
        except Or1Error as exc:
            assert str(path) in str(exc)


KEYS = {
    "trainer.total_steps": st.one_of(st.integers(-3, 4), st.none()),
    "trainer.prompts_per_step": st.integers(-2, 8),
    "trainer.group_size": st.integers(-2, 8),
    "trainer.max_refill_rounds": st.integers(-2, 3),
    "trainer.resume": st.sampled_from(["auto", "never", "/nonexistent/ckpt", "bogus"]),
    "eval.k": st.integers(-1, 5),
    "eval.pass_k": st.lists(st.integers(-1, 6), max_size=3),
    "eval.temperature": st.floats(-1, 3),
    "rollout.temperature": st.floats(-1, 3),
    "rollout.top_p": st.floats(-0.5, 1.5),
    "entropy.target": st.floats(-1, 1),
    "entropy.coef_init": st.floats(-1, 1),
    "entropy.coef_max": st.floats(-1, 1),
    "entropy.estimator": st.sampled_from(["full_vocab", "sampled_nll", "nope"]),
    "loss.agg": st.sampled_from(["token_mean", "seq_mean_token_sum", "nope"]),
    "loss.clip_eps_low": st.floats(-1, 2),
    "loss.kl_coef": st.floats(-1, 1),
    "advantage.eps": st.floats(-1, 1),
    "stages.stages.0.max_response_length": st.integers(-4, 64),
    "stages.stages.0.truncation": st.sampled_from(["none", "mask_after", "mask_before", "later"]),
    "filter": st.sampled_from(["zero_variance", "none", "bogus"]),
    "entropy": st.sampled_from(["adaptive", "constant", "none", "bogus"]),
    "trainer.seed": st.one_of(st.integers(0, 10), st.text(max_size=4)),
    "trainer.no_such_key": st.integers(0, 3),
}


def _value(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, list):
        return "[" + ",".join(str(x) for x in v) + "]"
    if isinstance(v, str):
        return v if v.strip() and all(c.isalnum() or c in "/_." for c in v) else repr(v)
    return str(v)


overrides = (
    st.dictionaries(st.sampled_from(sorted(KEYS)), st.none(), min_size=1, max_size=4)
    .flatmap(lambda keys: st.fixed_dictionaries({k: KEYS[k] for k in keys}))
    .map(lambda d: [f"{k}={_value(v)}" for k, v in d.items()])
)


def _check_in_process(args: list[str]) -> None:
    """What ``or1-train`` checks before anything heavy: composition and types, value ranges,
    and each cheap component's own checks (built with no run context)."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    from or1.cli.common import check_overrides
    from or1.core.registry import get_registry
    from or1.core.schemas import CONFIG_MODULE, CONFIG_NAME, store_schemas
    from or1.launch.config_checks import check_values

    registry = get_registry()
    store_schemas(registry)
    check_overrides(CONFIG_MODULE, CONFIG_NAME, args)  # SystemExit(2) with one line, or passes
    try:
        with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
            cfg = compose(config_name=CONFIG_NAME, overrides=args)
    finally:
        GlobalHydra.instance().clear()
    check_values(cfg)
    for group in ("filter", "advantage", "loss", "entropy", "stages"):
        registry.build(group, cfg[group], None)


@SETTINGS
@given(args=overrides)
@example(args=["rollout.temperature=2.3e-149"])  # found by this test: sampling overflowed
def test_config_overrides_give_a_valid_config_or_one_clear_line(args, capsys):
    try:
        _check_in_process(args)
    except SystemExit as exc:
        assert exc.code == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("or1: error: "), err
    except Or1Error as exc:
        assert "\n" not in str(exc)


@settings(max_examples=3, deadline=None, suppress_health_check=list(HealthCheck))
@given(args=overrides)
@example(args=["eval.temperature=2.2987260571122835e-149"])  # found by this test
def test_the_command_never_shows_a_traceback(tmp_path_factory, cache_dir, args):
    run_dir: Path = tmp_path_factory.mktemp("cli") / "run"
    proc = run_cli(
        "or1-train",
        [
            *FAST_RUN,
            "trainer.eval_at_start=false",
            "eval.max_problems=2",
            f"hydra.run.dir={run_dir}",
            "trainer.total_steps=1",
            *args,
        ],
        run_dir.parent,
    )
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode in (0, 2)
    if proc.returncode == 2:
        assert proc.stderr.strip().splitlines()[-1].startswith("or1: error: ")
