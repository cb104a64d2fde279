"""Partial rollouts (``trainer.partial_rollout_tokens=N`` with ``trainer.async_steps=1``): a
step's generation is bounded by a token budget per sample, and samples that have not finished
within it carry on in the next step, with that step's (newer) weights.

Without them, a step's generation lasts as long as its longest sample: one chain of the long
tail keeps the whole batch waiting, and the engine's batch thins out to that one sequence. With
them, each step every open sample of the rollout rank's pool generates at most ``N`` more
tokens in one engine call (the step's new prompts, ``trainer.prompts_per_step`` of them, join
the pool first), so a step costs about ``N`` decoding iterations whatever the tail. A group
goes to the learner once all its samples are finished: by the EOS, or by reaching the stage's
``max_response_length`` (then truncated, as in a full rollout; tokens generated past the
budget in the last chunk are dropped). A sample's tokens keep the log-probs they were sampled
with, so one sample can hold tokens of several weight versions; the learner's rollout
correction (``loss.rollout_correction``) weighs each token by its own sampling log-prob.

The batch of a step is whatever groups finished in it: about ``prompts_per_step`` on average
once the pool has filled, fewer in the first steps. The pool (every open sample's tokens and
log-probs) is part of the rollout rank's checkpointed state, so a resumed run continues the
same samples. Continuations are sent to the engine as the prompt followed by the tokens so far
(one request per sample); the engine must fit ``max_prompt_length + max_response_length + N``
tokens in its context.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from or1.core.interfaces import RolloutEngine
from or1.core.types import FINISH_LENGTH, FINISH_STOP, Completion, Group, Prompt, SamplingParams
from or1.launch import distributed
from or1.rl.steps import generate_groups


@dataclass
class OpenSample:
    """One sample of an open group: its tokens and their sampling log-probs so far, and how it
    finished (None while it still generates)."""

    response_ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    finish_reason: str | None = None


@dataclass
class OpenGroup:
    """A prompt whose group is being generated, and the step that started it."""

    prompt: Prompt
    samples: list[OpenSample]
    started: int

    @property
    def finished(self) -> bool:
        return all(s.finish_reason is not None for s in self.samples)


class PartialRollouts:
    """One rollout rank's pool of open groups (see the module docstring)."""

    def __init__(self, budget_tokens: int, group_size: int) -> None:
        if budget_tokens < 1:
            raise ValueError(f"partial rollouts need a budget of >= 1 token, got {budget_tokens}")
        self.budget, self.group_size = int(budget_tokens), int(group_size)
        self.open: list[OpenGroup] = []

    def step(
        self,
        engine: RolloutEngine,
        new_prompts: Sequence[Prompt],
        params: SamplingParams,
        step: int,
        decode: Callable[[list[int]], str],
        restart: Callable[[], RolloutEngine] | None = None,
    ) -> tuple[list[Group], dict[str, float]]:
        """Start ``new_prompts`` (``params.n`` samples each), let every open sample generate at
        most the budget of tokens (at most up to ``params.max_tokens``, the stage's length)
        with ``params``' temperature, top-p, top-k and seed, and return the groups finished by
        it (unscored, oldest first) and the pool's metrics, summed over the rollout ranks
        (``partial/age_max``: the most steps a finished group took, over the ranks). ``decode`` turns a whole response
        into the text the verifier reads."""
        if params.n != self.group_size:
            raise ValueError(f"partial rollouts of groups of {self.group_size}, got n={params.n}")
        self.open += [
            OpenGroup(p, [OpenSample() for _ in range(self.group_size)], step) for p in new_prompts
        ]
        limit = params.max_tokens
        requests: list[Prompt] = []
        owners: list[OpenSample] = []
        for g in self.open:
            for s in g.samples:
                if s.finish_reason is None and len(s.response_ids) >= limit:
                    s.finish_reason = FINISH_LENGTH  # a stage that shrank: cut at its length
                if s.finish_reason is None:
                    requests.append(
                        Prompt(g.prompt.uid, g.prompt.row, g.prompt.prompt_ids + s.response_ids)
                    )
                    owners.append(s)
        chunk = SamplingParams(
            n=1,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            max_tokens=self.budget,
            seed=params.seed,
        )
        generated = 0
        for s, out in zip(owners, generate_groups(engine, requests, chunk, restart), strict=True):
            c = out.completions[0]
            room = limit - len(s.response_ids)
            ids, logprobs = c.response_ids[:room], c.logprobs[:room]
            generated += len(ids)
            s.response_ids += ids
            s.logprobs += logprobs
            if c.finish_reason == FINISH_STOP and len(c.response_ids) <= room:
                s.finish_reason = FINISH_STOP
            elif len(s.response_ids) >= limit:
                s.finish_reason = FINISH_LENGTH
        done = [g for g in self.open if g.finished]
        self.open = [g for g in self.open if not g.finished]
        groups = [
            Group(
                g.prompt,
                [
                    Completion(
                        list(g.prompt.prompt_ids),
                        s.response_ids,
                        s.logprobs,
                        s.finish_reason or FINISH_LENGTH,
                        decode(s.response_ids),
                    )
                    for s in g.samples
                ],
            )
            for g in done
        ]
        sums = distributed.all_reduce(
            [
                len(self.open),
                sum(s.finish_reason is None for g in self.open for s in g.samples),
                len(requests),
                generated,
                len(done),
            ]
        )
        (age,) = distributed.all_reduce([max((step - g.started for g in done), default=0)], "max")
        names = ("open_groups", "open_samples", "requests", "generated_tokens", "finished_groups")
        metrics = {f"partial/{k}": v for k, v in zip(names, sums, strict=True)}
        metrics["partial/age_max"] = age
        return groups, metrics

    def state_dict(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "open": [
                {
                    "prompt": g.prompt,
                    "started": g.started,
                    "samples": [(s.response_ids, s.logprobs, s.finish_reason) for s in g.samples],
                }
                for g in self.open
            ],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.open = [
            OpenGroup(
                o["prompt"],
                [OpenSample(list(ids), list(lps), fin) for ids, lps, fin in o["samples"]],
                int(o["started"]),
            )
            for o in state["open"]
        ]
