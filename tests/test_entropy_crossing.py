"""``entropy.target`` from the command line to its use: the core hands the config section to the
entropy plugin once, at build time, and then calls into the controller exactly twice per RL
step (``coefficient(e_k)`` from the learner step, ``update(e_k)`` from the trainer, with the
same measured ``e_k``); the target itself is read only inside the plugin (issue: one place
that says what a hook point is)."""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import FAST_RUN, ROOT

STEPS = 3
TARGET = 100.0  # above any entropy: the coefficient rises by delta every step


def test_entropy_target_crosses_into_the_plugin_twice_per_step(tmp_path, cache_dir, monkeypatch):
    import or1
    from or1_plugins.entropy import controllers

    calls: list[tuple[str, float | None]] = []
    built: list[float] = []
    cls = controllers.AdaptiveEntropy
    init, coefficient, update = cls.__init__, cls.coefficient, cls.update

    def spy_init(self, cfg, ctx=None):  # noqa: ANN001
        built.append(float(cfg.target))
        init(self, cfg, ctx)

    def spy_coefficient(self, entropy):  # noqa: ANN001
        calls.append(("coefficient", entropy))
        return coefficient(self, entropy)

    def spy_update(self, entropy):  # noqa: ANN001
        calls.append(("update", entropy))
        return update(self, entropy)

    monkeypatch.setattr(cls, "__init__", spy_init)
    monkeypatch.setattr(cls, "coefficient", spy_coefficient)
    monkeypatch.setattr(cls, "update", spy_update)
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    or1.train(
        [
            *FAST_RUN,
            f"trainer.total_steps={STEPS}",
            "trainer.eval_at_start=false",
            "eval.max_problems=2",
            "eval.k=1",
            "filter=none",
            "entropy=adaptive",
            f"entropy.target={TARGET}",
            "entropy.delta=0.001",
        ],
        run_dir=run,
    )
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").open()]
    measured = [m["entropy/value"] for m in metrics if "entropy/value" in m]
    assert built == [TARGET]  # the section reaches the plugin once, unchanged
    assert len(measured) == STEPS
    expected = [(name, e) for e in measured for name in ("coefficient", "update")]
    assert [c[0] for c in calls] == [c[0] for c in expected]  # two crossings per step
    assert [c[1] for c in calls] == pytest.approx([c[1] for c in expected], rel=1e-6)
    # the coefficient the run logged is the plugin's rule applied to those e_k: from
    # coef_init=0, +delta after every step whose entropy is below the target
    assert [m["entropy/coef"] for m in metrics if "entropy/coef" in m] == pytest.approx(
        [0.001 * k for k in range(STEPS)]
    )


def test_the_core_never_reads_the_entropy_target():
    readers = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "or1").rglob("*.py")
        if re.search(r"entropy\.target|\[.entropy.\]\[.target.\]", p.read_text())
    ]
    assert readers == []  # the range check too is the plugin's (``check_config``)
