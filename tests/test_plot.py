"""or1-plot: stage spans, labels and smoothing by hand; figures from two synthetic runs."""

from __future__ import annotations

import json
import struct

import pytest

from or1.commands.plot import labels_for, load_run, moving_average, val_metrics
from tests.conftest import run_cli
from tests.test_cli import assert_one_line_error


def write_run(folder, steps, stage_of, reward, val_every=5):
    """A run folder with metrics.jsonl as the trainer writes it (step 0: validation only)."""
    folder.mkdir(parents=True)
    rows = [{"step": 0, "val/val/avg@4": 0.3, "val/val/pass@1": 0.3, "val/val/pass@4": 0.5}]
    for s in range(1, steps + 1):
        row = {
            "step": s,
            "stage": stage_of(s),
            "stage/max_response_length": 32 * (1 + stage_of(s)),
            "reward/mean": reward(s),
            "response_length/mean": 20.0 + s,
            "response/truncated_frac": 0.1,
            "entropy/value": 0.05,
            "entropy/coef": 0.001 * s,
            "timing/rollout_s": 1.0,
            "timing/reward_s": 0.1,
            "timing/train_s": 0.5,
            "timing/weight_sync_s": 0.01,
            "timing/other_s": 0.09,
            "timing/step_s": 1.7,
            "loss/pg": -0.01 * s,
            "grad_norm": 0.5,
            "loss/clipfrac": 0.02,
            "filter/groups_kept": 4,
        }
        if s % val_every == 0:
            row |= {
                "val/val/avg@4": 0.3 + 0.01 * s,
                "val/val/pass@1": 0.3 + 0.01 * s,
                "val/val/pass@2": 0.5,
                "val/val/pass@4": 0.6,
                "timing/eval_s": 2.0,
            }
        rows.append(row)
    (folder / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 3'
    )  # torn line
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "config.yaml").write_text(
        "entropy:\n  target: 0.2\nstages:\n  stages:\n  - name: short\n    max_response_length: 32\n"
        "  - name: long\n    max_response_length: 64\n"
    )
    return folder


def png_size(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_helpers_by_hand(tmp_path):
    run = load_run(write_run(tmp_path / "a", 12, lambda s: 0 if s <= 5 else 1, lambda s: 0.1))
    assert len(run.rows) == 13  # the torn last line is skipped
    assert run.stage_spans() == [(0, 1, 5), (1, 6, 12)]
    assert run.stage_name(1) == "stage 1: long (64 tok)" and run.entropy_target() == 0.2
    assert run.series("val/val/avg@4", train_only=False)[0] == [0, 5, 10]
    assert val_metrics([run]) == {"val": {"avg": "val/val/avg@4", "pass": "val/val/pass@4"}}
    assert moving_average([1, 2, 3, 4], 2) == [1, 1.5, 2.5, 3.5]
    assert labels_for([tmp_path / "x" / "run", tmp_path / "y" / "run"]) == ["x/run", "y/run"]
    (tmp_path / "steps_s0").symlink_to(tmp_path / "x" / "run")  # a variant linked to its twin
    assert labels_for([tmp_path / "steps_s0", tmp_path / "y" / "run"]) == ["steps_s0", "run"]


def test_or1_plot_overlays_two_runs(tmp_path):
    a = write_run(tmp_path / "adaptive", 20, lambda s: 0 if s <= 8 else 1, lambda s: 0.3 + 0.02 * s)
    b = write_run(tmp_path / "constant", 20, lambda s: 0 if s <= 8 else 1, lambda s: 0.3 + 0.01 * s)
    proc = run_cli("or1-plot", [str(a), str(b), "-o", str(tmp_path / "cmp")], tmp_path)
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.name for p in (tmp_path / "cmp").iterdir())
    assert written == [
        "entropy.png",
        "length.png",
        "reward.png",
        "timing.png",
        "training.png",
        "validation.png",
    ]
    for name in written:
        width, height = png_size(tmp_path / "cmp" / name)
        assert width >= 800 and height >= 450, (name, width, height)


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_or1_plot_bad_input(tmp_path, make):
    folder = tmp_path / "run"
    if make == "empty":
        folder.mkdir()
    proc = run_cli("or1-plot", [str(folder)], tmp_path)
    assert_one_line_error(proc, str(folder))


def test_training_figure_has_a_panel_per_signal_and_the_mismatch_ones_when_logged(tmp_path):
    from or1.commands.plot import load_run, plot_training

    plain = load_run(write_run(tmp_path / "plain", 6, lambda s: 0, lambda s: 0.3))
    assert plot_training([plain], tmp_path / "a.png") is not None
    _, plain_h = png_size(tmp_path / "a.png")
    folder = write_run(tmp_path / "mm", 6, lambda s: 0, lambda s: 0.3)
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()[:-1]]
    for r in rows:
        r |= {"mismatch/kl": 0.001, "mismatch/ratio_max": 1.5}
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert plot_training([load_run(folder)], tmp_path / "b.png") is not None
    _, mm_h = png_size(tmp_path / "b.png")
    assert mm_h > plain_h  # two more panels (4 -> 6)


def test_the_entropy_figure_takes_the_held_out_entropy_of_each_evaluation(tmp_path):
    from or1.commands.plot import held_out_entropy, plot_entropy

    folder = write_run(tmp_path / "run", 10, lambda s: 0, lambda s: 0.3)
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()[:-1]]
    assert held_out_entropy(load_run(folder)) == {}
    for r in rows:
        if "val/val/avg@4" in r:  # steps 0, 5 and 10
            r["val/val/sample_entropy"] = 0.1 + 0.01 * r["step"]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    run = load_run(folder)
    (name, (steps, values)), *more = held_out_entropy(run).items()
    assert (name, steps, more) == ("val", [0, 5, 10], [])
    assert values == pytest.approx([0.1, 0.15, 0.2])
    assert plot_entropy([run], tmp_path / "entropy.png") is not None
    assert png_size(tmp_path / "entropy.png")[0] > 0


def test_a_run_whose_stages_start_elsewhere_gets_its_own_stage_lines(tmp_path):
    from matplotlib.figure import Figure

    from or1.commands.plot import shade_stages

    fixed = load_run(write_run(tmp_path / "steps", 12, lambda s: 0 if s <= 8 else 1, lambda s: 0.5))
    early = load_run(write_run(tmp_path / "trunc", 12, lambda s: 0 if s <= 3 else 1, lambda s: 0.5))
    ax = Figure().add_subplot()
    shade_stages(ax, [fixed, early], label_top=False)
    # the first run's change before step 9 (dotted), the second run's before step 4 (dashed)
    lines = sorted((line.get_xdata()[0], line.get_linestyle()) for line in ax.get_lines())
    assert lines == [(3.5, "--"), (8.5, ":")]
    ax = Figure().add_subplot()
    shade_stages(ax, [fixed, fixed], label_top=False)  # the same stages: no second line
    assert [line.get_linestyle() for line in ax.get_lines()] == [":"]
