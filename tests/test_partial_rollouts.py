"""Partial rollouts (:mod:`or1.rl.partial_rollouts`): samples generate a bounded number of tokens
per step and carry on in the next one with newer weights.

The pool is tested against a scripted engine (a fake: the engine is outside the subject here;
the real engines run it in the slow torchrun test of ``tests/test_async.py``). Its "language"
makes every sample's full response known in advance: a sample's first token is ``k`` (from the
request's seed), then ``k - 1``, ..., ``1``, then the EOS ``0``: ``k + 1`` tokens. Every token's
log-prob is minus the engine's weight version, so a test sees which weights sampled it.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence

import pytest
import torch

from or1.core.interfaces import RolloutEngine
from or1.core.types import FINISH_LENGTH, FINISH_STOP, Completion, Prompt, SamplingParams
from or1.rl.partial_rollouts import PartialRollouts

EOS = 0


class ScriptedEngineFake(RolloutEngine):
    """Continues every request by the count-down rule; records the requests it got."""

    def __init__(self) -> None:
        self.version = 0
        self.calls: list[list[list[int]]] = []
        self.prompt_len: dict[int, int] = {}  # a prompt's first token -> its length

    def generate(
        self, prompts: Sequence[list[int]], params: SamplingParams
    ) -> list[list[Completion]]:
        assert params.n == 1
        self.calls.append([list(p) for p in prompts])
        out = []
        for i, p in enumerate(prompts):
            start = self.prompt_len[p[0]]
            prefix = p[start:]
            if prefix:
                nxt = prefix[-1] - 1
            else:
                nxt = first_token(params.seed, i)
            ids = []
            while len(ids) < params.max_tokens:
                ids.append(nxt)
                if nxt == EOS:
                    break
                nxt -= 1
            finish = FINISH_STOP if ids[-1] == EOS else FINISH_LENGTH
            lps = [-float(self.version)] * len(ids)
            out.append([Completion(list(p), ids, lps, finish, "")])
        return out

    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        self.version += 1

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def first_token(seed: int | None, i: int) -> int:
    return ((seed or 0) * 7 + i * 3) % 20 + 1


def prompts(engine: ScriptedEngineFake, first: int, count: int) -> list[Prompt]:
    out = []
    for j in range(first, first + count):
        ids = [1000 + j, 5, 6]
        engine.prompt_len[ids[0]] = len(ids)
        out.append(Prompt(f"p{j}", {"id": j}, ids))
    return out


def params(seed: int, limit: int = 12) -> SamplingParams:
    return SamplingParams(n=2, temperature=1.0, max_tokens=limit, seed=seed)


def decode(ids: list[int]) -> str:
    return " ".join(map(str, ids))


def test_samples_carry_on_across_steps_with_their_own_log_probs_until_eos_or_the_stage_length():
    engine, pool = ScriptedEngineFake(), PartialRollouts(budget_tokens=4, group_size=2)
    batch = prompts(engine, 0, 3)
    finished, step_of = {}, {}
    for step in range(1, 6):  # three prompts in step 1, none after
        groups, metrics = pool.step(engine, batch if step == 1 else [], params(3), step, decode)
        for g in groups:
            finished[g.prompt.uid] = g
            step_of[g.prompt.uid] = step
        engine.update_weights([])  # the learner's new weights reach the engine every step
        assert metrics["partial/finished_groups"] == len(groups)
    assert not pool.open and sorted(finished) == ["p0", "p1", "p2"]
    # the six samples' first tokens, worked out from the scripted seeds (request order in
    # step 1: p0's two samples, p1's, p2's)
    firsts = [first_token(3, i) for i in range(6)]
    assert firsts == [2, 5, 8, 11, 14, 17]
    for j, uid in enumerate(["p0", "p1", "p2"]):
        g = finished[uid]
        assert [c.prompt_ids for c in g.completions] == [[1000 + j, 5, 6]] * 2
        for s, c in enumerate(g.completions):
            k = firsts[2 * j + s]
            full = list(range(k, -1, -1))  # k, k-1, ..., 1, EOS: k + 1 tokens
            assert c.response_ids == full[:12]  # the stage's limit cuts the long ones
            assert c.finish_reason == (FINISH_STOP if k + 1 <= 12 else FINISH_LENGTH)
            # token t was generated in step t // 4 + 1, by weights version t // 4
            assert c.logprobs == [-float(t // 4) for t in range(len(c.response_ids))]
            assert c.text == decode(c.response_ids)
    # a group is handed on when its slowest sample is done: p0 (3 and 6 tokens) in step 2,
    # p1 (9 and 12 tokens, the second one stopping by EOS exactly at the limit) in step 3,
    # p2 (both cut at 12) in step 3
    assert step_of == {"p0": 2, "p1": 3, "p2": 3}
    # continuations are the prompt followed by the tokens so far; finished samples are not
    # sent again: step 1 sends 6 requests, step 2 the 5 unfinished (p0's first ended at 3)
    assert [len(c) for c in engine.calls] == [6, 5, 4]
    assert engine.calls[1][0] == [1000, 5, 6, 5, 4, 3, 2]  # p0's second sample (k = 5)


def test_new_prompts_join_an_open_pool_and_its_metrics_count_what_is_left():
    engine, pool = ScriptedEngineFake(), PartialRollouts(budget_tokens=4, group_size=2)
    g1, m1 = pool.step(engine, prompts(engine, 0, 3), params(3), 1, decode)
    assert g1 == []  # every group has a sample longer than 4 tokens
    assert (
        m1["partial/open_groups"] == 3 and m1["partial/open_samples"] == 5
    )  # p0's 3-token one ended
    assert m1["partial/requests"] == 6 and m1["partial/generated_tokens"] == 3 + 5 * 4
    g2, m2 = pool.step(engine, prompts(engine, 3, 1), params(3), 2, decode)
    assert [g.prompt.uid for g in g2] == ["p0"]  # oldest first; p3 only just started
    assert m2["partial/age_max"] == 1.0  # p0 was started one step before it finished
    assert m2["partial/requests"] == 5 + 2


def test_the_pool_state_round_trips_so_a_resumed_run_continues_the_same_samples():
    def run(split: bool) -> list[tuple[str, list[int], list[float], str]]:
        engine, pool = ScriptedEngineFake(), PartialRollouts(budget_tokens=3, group_size=2)
        out = []
        for step in range(1, 8):
            new = prompts(engine, 2 * step, 2) if step <= 3 else []
            groups, _ = pool.step(engine, new, params(step), step, decode)
            out += [
                (g.prompt.uid, c.response_ids, c.logprobs, c.finish_reason)
                for g in groups
                for c in g.completions
            ]
            engine.update_weights([])
            if split and step == 2:  # a checkpoint and a fresh process
                state = pickle.loads(pickle.dumps(pool.state_dict()))
                pool = PartialRollouts(budget_tokens=3, group_size=2)
                pool.load_state_dict(state)
        return out

    whole = run(split=False)
    assert len(whole) == 12 and whole == run(split=True)


def test_a_budget_below_one_token_or_a_group_of_another_size_is_refused():
    with pytest.raises(ValueError, match="budget of >= 1 token"):
        PartialRollouts(budget_tokens=0, group_size=2)
    engine, pool = ScriptedEngineFake(), PartialRollouts(budget_tokens=4, group_size=4)
    with pytest.raises(ValueError, match="groups of 4, got n=2"):
        pool.step(engine, prompts(engine, 0, 1), params(1), 1, decode)
