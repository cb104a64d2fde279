"""The memory plan (``or1-plan``): the Megatron learner's and vLLM engine's arithmetic worked
out by hand on a tiny shape, the layout search, the CLI's last line and its bad input.
The measured validation is ``benchmarks/memory_plan.py --validate`` (docs/memory-plan.md)."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from or1.core.errors import ConfigError
from or1.launch.memory_plan import GIB, MemoryQuery, ModelShape, ParallelLayout, StageLoad
from or1_plugins.learner.megatron import memory as megatron_memory
from or1_plugins.rollout.vllm import memory as vllm_memory

from .conftest import ROOT, run_cli

# 2 layers, hidden 8, 2 heads (= KV heads) of 4, FFN 16, vocabulary 32, QKV bias
SHAPE = ModelShape("hand", 2, 8, 2, 2, 4, 16, 32)
# per layer: QKV 8 x 24 + bias 24, projection 8 x 8, MLP 3 x 8 x 16, two norms 2 x 8
LAYER = 192 + 24 + 64 + 384 + 16
PARAMS = 2 * LAYER + 2 * 32 * 8 + 8  # + embedding, output layer, final norm


def learner(**kw):
    base = dict(
        precision="fp32",
        distributed_optimizer=False,
        grad_reduce_in_fp32=True,
        recompute="none",
        packing=True,
        tensor_parallel_size=1,
        context_parallel_size=1,
    )
    return SimpleNamespace(**{**base, **kw})


def query(tp=1, cp=1, dp=1, tokens=64, width=64, sequences=1, device="cpu"):
    stage = StageLoad("s", 0, width, tokens, sequences)
    return MemoryQuery(SHAPE, ParallelLayout(tp, cp, dp, 1), stage, 80 * GIB, device)


def learner_phase(cfg, q):
    return megatron_memory.estimate(cfg, q).phases["learner"]


def test_parameter_count_by_hand():
    assert SHAPE.layer_params() == LAYER == 680
    assert SHAPE.num_params() == PARAMS == 1880
    # TP=2: matrices and QKV bias halved, norms whole, vocabulary rows halved
    assert (
        megatron_memory.local_params(SHAPE, 2)
        == 2 * ((192 + 24 + 64) // 2 + 384 // 2 + 16) + 2 * 16 * 8 + 8
    )


def test_weights_gradients_optimizer_by_hand():
    fp32 = learner_phase(learner(), query())
    assert (fp32["weights"], fp32["gradients"], fp32["optimizer"]) == (4 * 1880, 4 * 1880, 8 * 1880)
    bf16 = learner_phase(learner(precision="bf16"), query())
    # bf16 weights, fp32 gradient buffer, fp32 master weights + two fp32 moments
    assert (bf16["weights"], bf16["gradients"], bf16["optimizer"]) == (
        2 * 1880,
        4 * 1880,
        12 * 1880,
    )
    low = learner_phase(learner(precision="bf16", grad_reduce_in_fp32=False), query())
    assert low["gradients"] == 2 * 1880


def test_distributed_optimizer_shards_over_data_and_context_parallel():
    cfg = learner(precision="bf16", distributed_optimizer=True)
    one = learner_phase(cfg, query(dp=1))
    two = learner_phase(cfg, query(dp=2))
    assert two["optimizer"] * 2 == one["optimizer"] == 12 * 1880
    assert (two["weights"], two["gradients"]) == (one["weights"], one["gradients"])
    assert learner_phase(cfg, query(dp=2, cp=2))["optimizer"] * 4 == one["optimizer"]
    # without it every data-parallel rank keeps the whole state
    assert learner_phase(learner(precision="bf16"), query(dp=2))["optimizer"] == 12 * 1880


def test_tensor_parallel_divides_and_must_divide_the_model():
    one = learner_phase(learner(), query(tp=1))
    two = learner_phase(learner(), query(tp=2))
    assert two["weights"] == 4 * megatron_memory.local_params(SHAPE, 2) < one["weights"]
    assert two["activations"] < one["activations"]
    with pytest.raises(ConfigError, match=r"learner.tensor_parallel_size=4 does not divide"):
        learner_phase(learner(), query(tp=4))  # 2 heads


def test_activations_by_hand_packed_fp32():
    # per token and layer: norms 2 (8h + 4) = 136, QKV + FC1 inputs 2 h p = 64, MLP 5 f p = 320,
    # SDPA q 32 + k 32 + v (view of the QKV output, (a + 2g) d p) 96 + output and its
    # concatenation 64 + log-sum-exp 8 = 232; RoPE 4 d p = 64 per position
    layer = 64 * (136 + 64 + 320 + 232 + 64)
    head = 64 * (8 * 8 + 4 + 8 * 4) + 5 * 64 * 32 * 4  # final norm, output input, 5 logit copies
    assert learner_phase(learner(), query())["activations"] == 2 * layer + head == 151808
    # full recompute: each layer's input, plus one layer recomputed with its MLP backward
    backward = 64 * (2 * 16 + 2 * 8) * 4
    full = learner_phase(learner(recompute="full"), query())["activations"]
    assert full == 2 * 64 * 8 * 4 + max(head, layer + backward) == 68608


def test_recompute_and_packing_change_activations():
    peaks = {
        rc: learner_phase(learner(recompute=rc), query(tokens=512, width=512))["activations"]
        for rc in ("none", "selective", "full")
    }
    assert peaks["full"] < peaks["selective"] <= peaks["none"]
    padded = learner_phase(learner(packing=False), query(tokens=512, width=512))
    packed = learner_phase(learner(packing=True), query(tokens=512, width=512))
    assert padded["activations"] > packed["activations"]  # 512^2 scores per head


def test_vllm_kv_cache_is_what_the_utilisation_leaves():
    cfg = SimpleNamespace(gpu_memory_utilization=0.5, dtype="auto", enable_sleep_mode=False)
    est = vllm_memory.estimate(cfg, query(device="cuda"))
    awake = est.phases["rollout"]
    assert awake["weights"] == 2 * PARAMS
    assert sum(awake.values()) == 40 * GIB
    assert est.phases["learner"] == awake  # no sleep mode: it keeps its memory
    assert ("enable_sleep_mode", True) in est.levers
    asleep = vllm_memory.estimate(
        SimpleNamespace(**{**vars(cfg), "enable_sleep_mode": True}), query()
    )
    assert asleep.phases["learner"] == {}


@pytest.mark.parametrize(
    "experiment, nodes, fits",
    [("or1_7b", 1, True), ("or1_7b", 8, True), ("or1_32b", 8, True), ("or1_32b", 1, False)],
)
def test_the_presets_fit_8_and_64_h100s(capsys, experiment, nodes, fits):
    """The presets as written (bf16, distributed optimiser, full recompute, packing, vLLM sleep
    mode) fit every stage on 8 x 8 80 GB GPUs, the 7B also on one node; on one node the 32B's
    fp32 master weights and moments (45.8 GiB per GPU at TP=8 x DP=1) need host memory between
    updates, and the plan says to set exactly that, with which it fits."""
    from or1.cli.plan import run

    code = run(
        [
            f"experiment={experiment}",
            f"cluster.nodes={nodes}",
            "cluster.gpus_per_node=8",
            "cluster.gpu_memory_gib=80",
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    if fits:
        assert code == 0 and lines[-1] == "fits"
        assert any("stage 32k" in line for line in lines)
    else:
        assert code == 1 and lines[-1].startswith("does not fit:")
        assert lines[-1].endswith("; set learner.offload_optimizer=true")
        args = [f"experiment={experiment}", f"cluster.nodes={nodes}", "cluster.gpus_per_node=8"]
        code = run([*args, "cluster.gpu_memory_gib=80", "learner.offload_optimizer=true"])
        assert code == 0 and capsys.readouterr().out.strip().splitlines()[-1] == "fits"


def test_a_too_small_gpu_says_what_to_change(capsys):
    from or1.cli.plan import run

    code = run(["experiment=or1_7b", "cluster.gpus_per_node=8", "cluster.gpu_memory_gib=40"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert code == 1
    assert last.startswith("does not fit: stage ")
    assert re.search(r"[a-z_]+\.[a-z_]+=\S+", last)  # names the key and the number


def compose(overrides):
    from hydra import compose, initialize_config_module

    from or1.core.registry import get_registry
    from or1.core.schemas import store_schemas

    store_schemas(get_registry())
    with initialize_config_module(config_module="or1_conf", version_base=None):
        return compose("train", overrides)


def test_launch_check_names_the_key_and_the_number():
    from or1.launch.memory_plan import check_fits

    run = ["experiment=or1_7b", "model.path=/models/DeepSeek-R1-Distill-Qwen-7B"]
    awake = ["rollout.enable_sleep_mode=false"]  # vLLM keeps its memory during the learner step
    with pytest.raises(ConfigError) as err:
        check_fits(compose([*run, *awake]), world=8, gpu_memory=80 * GIB, gpus_per_node=8)
    message = str(err.value)
    assert "\n" not in message
    assert "learner.tensor_parallel_size=" in message and "GiB" in message
    check_fits(compose(run), world=8, gpu_memory=80 * GIB)  # the preset as written


@pytest.mark.parametrize(
    "args, expected",
    [
        (["cluster.gpus_per_node=0"], "cluster.gpus_per_node=0 must be >= 1"),
        (["cluster.nodez=2"], "nodez"),
        (["cluster.gpu_memory_gib=0"], "cluster.gpu_memory_gib=0.0 must be > 0"),
        (["plan.model=no/such-model"], "plan.model=no/such-model"),
        (["learner.recompute=bogus"], "learner.recompute=bogus"),
        (
            ["experiment=cpu_demo", "learner=torch", "plan.model=Skywork/Skywork-OR1-7B"],
            "learner=torch gives no memory estimate",
        ),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, expected):
    if not any(a.startswith("experiment=") for a in args):
        args = ["experiment=or1_7b", *args]
    result = run_cli("or1-plan", args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("or1: error:") and expected in lines[0]
    assert "Traceback" not in result.stderr


def test_cli_fits_exit_zero(tmp_path):
    result = run_cli(
        "or1-plan",
        [
            "experiment=or1_7b",
            "cluster.nodes=1",
            "cluster.gpus_per_node=8",
            "cluster.gpu_memory_gib=80",
        ],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "fits"
    assert not any(tmp_path.iterdir())  # a plan writes nothing
    assert ROOT.is_dir()
