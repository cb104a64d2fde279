"""Profile mode (``trainer.profile=true``): a torch profiler trace of selected RL steps.

Each profiled step ``N`` (``trainer.profile_steps``) writes a Chrome trace (open it in
``chrome://tracing`` or https://ui.perfetto.dev) to ``<run dir>/profile/step_<N>.json``
covering the step's rollout, rewards, learner and weight sync: CPU operators with Python call
stacks. Steps that are not profiled run without a profiler (no overhead); a profiled step's
``timing/*`` numbers include the profiler's own overhead, the trace export does not count.
The trainer calls :meth:`StepProfiler.begin` at the top of a step and :meth:`StepProfiler.end`
once the step's timings are taken.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class StepProfiler:
    """Profiles the steps in ``steps`` when ``enabled``; writes ``run_dir/profile/step_<N>.json``."""

    def __init__(self, run_dir: Path, enabled: bool, steps: list[int]) -> None:
        self.dir = Path(run_dir) / "profile"
        self.steps = set(steps) if enabled else set()
        self._prof: Any = None
        self._step = 0

    @classmethod
    def of(cls, run: Any) -> StepProfiler:
        """The profiler configured by a run's ``trainer.profile`` / ``trainer.profile_steps``."""
        t = run.cfg.trainer
        return cls(run.run_dir, bool(t.profile), list(t.profile_steps))

    def begin(self, step: int) -> None:
        """Start profiling ``step`` if it is one of the profiled steps."""
        self.end()
        if step not in self.steps:
            return
        from torch.profiler import ProfilerActivity, profile

        self._prof = profile(activities=[ProfilerActivity.CPU], with_stack=True)
        self._prof.__enter__()
        self._step = step

    def end(self) -> Path | None:
        """Stop a running profile and export its trace; returns the trace's path (None if
        nothing was being profiled)."""
        if self._prof is None:
            return None
        prof, self._prof = self._prof, None
        prof.__exit__(None, None, None)
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / f"step_{self._step}.json"
        prof.export_chrome_trace(str(path))
        return path
