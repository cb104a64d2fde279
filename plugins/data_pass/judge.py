"""The ``judge`` pass (off by default): a model served by the rollout engine flags problems
that are unclear, incomplete, have several correct answers, or are badly formatted.

Each row's problem and reference answer fill ``template`` (``{problem}``, ``{answer}``,
``{ability}``), sent as one user message through the judge model's chat template
(``model_path``; None: the run's policy, the ``model`` section). The reply's last
``VERDICT: <word>`` line is the verdict and the text after ``REASON:`` the reason; both are
kept as the columns ``judge_verdict`` / ``judge_reason``. Rows whose verdict is in ``drop`` are
dropped with reason ``judge_<verdict>``; a reply without a known verdict is ``unparsed`` and
kept unless ``drop_unparsed``. Replies are appended to a work file as they arrive, so an
interrupted run resumes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from or1.core.config import DataPassConfig
from or1.core.data import ground_truth
from or1.core.errors import ConfigError
from or1.core.interfaces import DataPass, DataPassContext
from or1.core.types import DroppedRow, PassResult, SamplingParams

from .text import problem_text
from .worklog import WorkLog

VERDICTS = ("ok", "unclear", "incomplete", "multi_answer", "misformatted")
UNPARSED = "unparsed"
TEMPLATE = """You review {ability} problems for a training set with automatically checked answers.
Problem:
{problem}

Reference answer: {answer}

Is the problem clear and complete, with exactly one correct answer that matches the reference,
and well formatted? Reply with two lines:
VERDICT: one of ok, unclear, incomplete, multi_answer, misformatted
REASON: one sentence"""

_VERDICT = re.compile(r"VERDICT\s*:\s*\**\s*([A-Za-z_\-]+)", re.IGNORECASE)
_REASON = re.compile(r"REASON\s*:\s*(.+)", re.IGNORECASE)


@dataclass
class JudgeConfig(DataPassConfig):
    """``model_path``: the judge (None: the policy of the ``model`` section), served by the
    ``rollout`` section's engine; ``template``: the user message; ``drop``: verdicts that
    drop a row; ``drop_unparsed``: also drop rows whose reply has no known verdict;
    ``max_tokens`` / ``temperature``: the judge's sampling; ``prompts_per_call``: rows per
    rollout call."""

    name: str = "judge"
    enabled: bool = False
    model_path: str | None = None
    template: str = TEMPLATE
    drop: list[str] = field(
        default_factory=lambda: ["unclear", "incomplete", "multi_answer", "misformatted"]
    )
    drop_unparsed: bool = False
    max_tokens: int = 256
    temperature: float = 0.6
    prompts_per_call: int = 16


def parse_verdict(text: str) -> tuple[str, str]:
    """``(verdict, reason)`` of a judge reply: the last ``VERDICT:`` word (lower case, ``-``
    as ``_``) when it is one of :data:`VERDICTS`, else ``unparsed``; the last ``REASON:``."""
    found = _VERDICT.findall(text or "")
    verdict = found[-1].lower().replace("-", "_") if found else UNPARSED
    if verdict not in VERDICTS:
        verdict = UNPARSED
    reasons = _REASON.findall(text or "")
    return verdict, reasons[-1].strip() if reasons else ""


class Judge(DataPass):
    """LLM-judged problem quality (module docstring)."""

    fingerprint_sections = ("model", "rollout")

    def __init__(self, cfg: Any, ctx: Any = None) -> None:
        self.cfg = cfg
        bad = [v for v in cfg.drop if v not in VERDICTS]
        if bad:
            raise ConfigError(
                f"data_pass.judge.drop: unknown verdicts {bad} (known: {', '.join(VERDICTS)})"
            )
        try:
            cfg.template.format(problem="", answer="", ability="")
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"data_pass.judge.template: bad placeholder ({exc}); use {{problem}}, {{answer}}, {{ability}}"
            ) from None

    def message(self, row: dict[str, Any]) -> str:
        return self.cfg.template.format(
            problem=problem_text(row), answer=ground_truth(row), ability=row.get("ability", "")
        )

    def run(self, rows: list[dict[str, Any]], ctx: DataPassContext) -> PassResult:
        c = self.cfg
        log = WorkLog(ctx.prefix.with_name(f"{ctx.prefix.name}.{ctx.fingerprint}.progress.jsonl"))
        pending = [r for r in rows if r["uid"] not in log.done]
        advance = ctx.progress(len(rows), "judge")
        advance(len(rows) - len(pending))
        if pending:
            engine, tokenizer = ctx.rollout(c.model_path)
            params = SamplingParams(
                n=1, temperature=c.temperature, max_tokens=c.max_tokens, seed=ctx.seed
            )
            for start in range(0, len(pending), c.prompts_per_call):
                part = pending[start : start + c.prompts_per_call]
                ids = [
                    tokenizer.apply_chat_template(
                        [{"role": "user", "content": self.message(r)}],
                        tokenize=True,
                        add_generation_prompt=True,
                        return_dict=False,
                    )
                    for r in part
                ]
                ids = [list(x["input_ids"]) if isinstance(x, dict) else list(x) for x in ids]
                try:
                    outs = engine.generate(ids, params)
                except ValueError as exc:  # a prompt longer than the judge's context
                    raise ConfigError(
                        f"data_pass.judge: the judge model cannot take the prompts of rows "
                        f"{part[0]['uid']}..{part[-1]['uid']} ({exc}); use a model with a longer "
                        "context, a shorter template or a smaller max_tokens"
                    ) from None
                log.add(
                    {"uid": r["uid"], "reply": o[0].text} for r, o in zip(part, outs, strict=True)
                )
                advance(len(part))
        kept, dropped = [], []
        for row in rows:
            verdict, reason = parse_verdict(log.done[row["uid"]]["reply"])
            if verdict in c.drop or (verdict == UNPARSED and c.drop_unparsed):
                dropped.append(DroppedRow(row["uid"], f"judge_{verdict}", {"reason": reason}))
            else:
                kept.append({**row, "judge_verdict": verdict, "judge_reason": reason})
        return PassResult(kept, dropped)
