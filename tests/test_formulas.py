"""Formula tests with hand-computed numbers: GRPO advantages, PPO-clip, loss aggregation."""

from __future__ import annotations

import math

import pytest
import torch
from omegaconf import OmegaConf

from or1_plugins.advantage.grpo import GRPOAdvantage, GRPOConfig
from or1_plugins.loss.or1 import OR1LossConfig, ppo_clip_loss, token_weights

EPS = 1e-6


def grpo(rewards, truncated=None, mode="none", **kw):
    est = GRPOAdvantage(OmegaConf.structured(GRPOConfig(**kw)))
    r = torch.tensor(rewards, dtype=torch.float32)
    t = torch.zeros_like(r, dtype=torch.bool) if truncated is None else torch.tensor(truncated)
    return est.compute(r, t, mode)


def test_grpo_unbiased_std_and_eps():
    # rewards 1,0,0,1: mean 0.5; unbiased variance (4 * 0.25) / 3 = 1/3
    adv = grpo([[1.0, 0.0, 0.0, 1.0]])
    a = 0.5 / (math.sqrt(1 / 3) + EPS)
    assert adv.tolist()[0] == pytest.approx([a, -a, -a, a], rel=1e-6)
    # the biased std (0.5) would give 1.0: make sure it is not used
    assert abs(adv[0, 0].item() - 1.0) > 0.1


def test_grpo_equal_rewards_give_zero_and_eps_is_used():
    assert grpo([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]).abs().max().item() == 0.0
    # two rewards 0 and 1e-6: std = 1e-6/sqrt(2); A = (5e-7) / (7.07e-7 + 1e-6)
    adv = grpo([[0.0, 1e-6]])
    std = 1e-6 / math.sqrt(2)
    assert adv[0, 1].item() == pytest.approx(5e-7 / (std + EPS), rel=1e-4)


def test_grpo_truncation_modes_differ_in_group_statistics():
    rewards, trunc = [[1.0, 0.0, 0.0, 0.0]], [[False, False, False, True]]
    # none: mean .25, unbiased std sqrt((.5625 + 3 * .0625) / 3) = .5
    assert grpo(rewards, trunc, "none").tolist()[0] == pytest.approx(
        [0.75 / (0.5 + EPS), -0.25 / (0.5 + EPS), -0.25 / (0.5 + EPS), -0.25 / (0.5 + EPS)],
        rel=1e-6,
    )
    # mask_after: same statistics, the truncated one gets 0
    assert grpo(rewards, trunc, "mask_after").tolist()[0] == pytest.approx(
        [0.75 / (0.5 + EPS), -0.25 / (0.5 + EPS), -0.25 / (0.5 + EPS), 0.0], rel=1e-6
    )
    # mask_before: statistics over the first three only: mean 1/3, std sqrt(1/3)
    s = math.sqrt(1 / 3) + EPS
    assert grpo(rewards, trunc, "mask_before").tolist()[0] == pytest.approx(
        [(2 / 3) / s, -(1 / 3) / s, -(1 / 3) / s, 0.0], rel=1e-6
    )


def test_grpo_without_std_normalisation():
    assert grpo([[1.0, 0.0, 0.0, 0.0]], norm_by_std=False).tolist()[0] == pytest.approx(
        [0.75, -0.25, -0.25, -0.25]
    )


def test_ppo_clip_by_hand():
    ratio = torch.tensor([1.5, 0.5, 0.5, 1.5, 1.1])
    adv = torch.tensor([1.0, 1.0, -1.0, -1.0, 2.0])
    old = torch.zeros(5)
    loss, clipped = ppo_clip_loss(ratio.log(), old, adv, 0.2, 0.2)
    # A>0, r=1.5: min(1.5, 1.2) -> -1.2 (clipped); A>0, r=.5: -.5; A<0, r=.5: max(.5, .8) = .8 (clipped);
    # A<0, r=1.5: max(1.5, 1.2) = 1.5; inside the band: -2 * 1.1 = -2.2
    assert loss.tolist() == pytest.approx([-1.2, -0.5, 0.8, 1.5, -2.2], rel=1e-6)
    assert clipped.tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]
    # clip-higher: eps_high .28 lets the positive-advantage ratio reach 1.28
    loss_hi, _ = ppo_clip_loss(ratio.log(), old, adv, 0.2, 0.28)
    assert loss_hi[0].item() == pytest.approx(-1.28, rel=1e-6)
    # dual clip c=3 caps the negative-advantage loss at 3 * |A|
    big = torch.tensor([5.0]).log()
    capped, _ = ppo_clip_loss(big, torch.zeros(1), torch.tensor([-1.0]), 0.2, 0.2, dual_clip=3.0)
    assert capped.item() == pytest.approx(3.0)


def test_ppo_gradient_on_policy_is_minus_advantage():
    # at ratio 1 the gradient of the loss wrt log-prob is -A (the policy-gradient estimator)
    logp = torch.zeros(3, requires_grad=True)
    adv = torch.tensor([1.0, -2.0, 0.5])
    loss, _ = ppo_clip_loss(logp, logp.detach(), adv, 0.2, 0.2)
    loss.sum().backward()
    assert logp.grad.tolist() == pytest.approx([-1.0, 2.0, -0.5])


def _mask(lengths, width):
    m = torch.zeros(len(lengths), width)
    for i, n in enumerate(lengths):
        m[i, :n] = 1.0
    return m


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_sum", "seq_mean_token_mean"])
def test_aggregation_independent_of_split(agg):
    torch.manual_seed(0)
    lengths = [3, 7, 1, 5, 2, 6]
    mask = _mask(lengths, 8)
    per_token = torch.randn(6, 8)
    expected = {
        "token_mean": (per_token * mask).sum() / mask.sum(),
        "seq_mean_token_sum": (per_token * mask).sum(1).mean(),
        "seq_mean_token_mean": ((per_token * mask).sum(1) / mask.sum(1)).mean(),
    }[agg]
    for split in ([[0, 1, 2, 3, 4, 5]], [[0, 1], [2, 3], [4, 5]], [[0], [1, 2, 3, 4], [5]]):
        w = token_weights(mask, split, agg)
        total = sum((w[rows] * per_token[rows]).sum() for rows in split)  # per micro-batch, summed
        assert total.item() == pytest.approx(expected.item(), abs=1e-6)


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_sum", "seq_mean_token_mean"])
def test_data_parallel_shares_with_the_step_totals_sum_to_the_whole_batch_loss(agg):
    """Each data-parallel rank weights only its own rows, with the step's LossTotals summed
    over the ranks: the ranks' sums add up to the one-rank loss (hand-computed above)."""
    from or1.core.types import LossTotals

    torch.manual_seed(1)
    lengths = [3, 7, 1, 5, 2, 6]
    mask = _mask(lengths, 8)
    per_token = torch.randn(6, 8)
    whole = (token_weights(mask, [list(range(6))], agg) * per_token).sum()
    totals = LossTotals(tokens=float(sum(lengths)), sequences=6)
    shares = ([0, 3, 4], [1, 2, 5])  # what two DP ranks might hold
    parts = [
        (token_weights(mask[rows], [list(range(len(rows)))], agg, totals) * per_token[rows]).sum()
        for rows in shares
    ]
    assert sum(parts).item() == pytest.approx(whole.item(), abs=1e-6)
    # without the totals each rank would normalise by its own share: not the step's loss
    local = [
        (token_weights(mask[rows], [list(range(len(rows)))], agg) * per_token[rows]).sum()
        for rows in shares
    ]
    assert sum(local).item() != pytest.approx(whole.item(), abs=1e-3)


def test_microbatch_token_mean_depends_on_split():
    # released-code weighting: (token mean within micro-batch) * (seqs in it / all seqs)
    mask = _mask([1, 3], 3)
    per_token = torch.tensor([[4.0, 0, 0], [1.0, 1.0, 1.0]])
    one = token_weights(mask, [[0, 1]], "microbatch_token_mean")
    two = token_weights(mask, [[0], [1]], "microbatch_token_mean")
    assert (one * per_token).sum().item() == pytest.approx(
        (4 + 3) / 4
    )  # one micro-batch: token mean
    assert (two * per_token).sum().item() == pytest.approx(
        4 * 0.5 + 1 * 0.5
    )  # mean of per-mb means
    assert OR1LossConfig().agg == "token_mean"


def test_k3_kl_by_hand_and_no_reference_without_kl():
    from or1_plugins.loss.or1 import OR1Loss, k3_kl

    # policy p = 0.5, reference q = 0.25 on the sampled token: q/p - log(q/p) - 1 = 0.5 + ln 2 - 1
    kl = k3_kl(torch.tensor([math.log(0.5)]), torch.tensor([math.log(0.25)]))
    assert kl.item() == pytest.approx(0.5 + math.log(2) - 1, rel=1e-6)
    assert k3_kl(torch.tensor([-1.3]), torch.tensor([-1.3])).item() == 0.0
    assert OR1Loss(OmegaConf.structured(OR1LossConfig())).needs_reference is False
    with_kl = OR1Loss(OmegaConf.structured(OR1LossConfig(kl_coef=0.1)))
    assert with_kl.needs_reference is True
    logp = torch.tensor([[math.log(0.5)]])
    loss, stats = with_kl.per_token_loss(
        logp, logp, torch.zeros(1, 1), torch.ones(1, 1), logp.new_tensor([[math.log(0.25)]])
    )
    assert loss.item() == pytest.approx(
        0.1 * (0.5 + math.log(2) - 1), rel=1e-6
    )  # A = 0: only the KL term
    assert stats["kl_ref"].item() == pytest.approx(0.5 + math.log(2) - 1, rel=1e-6)


def test_adaptive_entropy_controller_sequence():
    from or1_plugins.entropy.controllers import AdaptiveEntropy, AdaptiveEntropyConfig

    ctl = AdaptiveEntropy(
        OmegaConf.structured(AdaptiveEntropyConfig(target=0.2, delta=1e-4, coef_max=2.5e-4))
    )
    seen = []
    for e in [0.1, 0.1, 0.1, 0.1, 0.3, 0.15, 0.3, 0.3, 0.3]:
        seen.append(ctl.coefficient(e))
        ctl.update(e)
    # c: 0 -> 1e-4 -> 2e-4 -> 2.5e-4 (cap) -> 2.5e-4 -> 1.5e-4 (e above target) -> 2.5e-4 -> 1.5e-4 -> 0.5e-4 -> 0
    coefs = [c for c, _ in seen]
    assert coefs == pytest.approx(
        [0, 1e-4, 2e-4, 2.5e-4, 2.5e-4, 1.5e-4, 2.5e-4, 1.5e-4, 0.5e-4], abs=1e-12
    )
    assert [a for _, a in seen] == [True, True, True, True, False, True, False, False, False]
    assert ctl.coef == pytest.approx(0.0, abs=1e-12)  # clipped at coef_min
    ctl.reset()
    assert ctl.state_dict() == {"coef": 0.0}


def test_rollout_metrics_give_the_length_distribution_by_hand():
    """Lengths 1..10 over two groups (one dropped by the filter): mean 5.5, max 10, and the
    nearest-rank percentiles p10 = 1, p50 = 5, p90 = 9; 2 of 10 hit the budget."""
    from or1.core.types import Completion, Group, Prompt
    from or1.rl.steps import rollout_metrics

    def comp(n: int, reason: str = "stop") -> Completion:
        return Completion([0], [7] * n, [0.0] * n, reason, "")

    a = Group(Prompt("a", {}, [0]), [comp(n) for n in (5, 1, 9, 3, 7)], rewards=[1, 0, 0, 0, 0])
    b = Group(Prompt("b", {}, [0]), [comp(n) for n in (2, 8, 4, 6)] + [comp(10, "length")])
    b.rewards, b.kept = [0.0] * 5, False
    a.completions[2].finish_reason = "length"
    m = rollout_metrics([a, b], extra_rollouts=0)
    assert m["response_length/mean"] == 5.5 and m["response_length/max"] == 10
    assert (m["response_length/p10"], m["response_length/p50"], m["response_length/p90"]) == (
        1,
        5,
        9,
    )
    assert m["response/truncated_frac"] == 0.2
    assert (m["filter/groups_kept"], m["filter/groups_dropped"]) == (1, 1)
    assert m["reward/mean"] == 0.1 and m["reward/kept_mean"] == 0.2
    assert m["rollout/sampled_nll"] == 0.0  # every token sampled with probability 1


def test_sampled_nll_covers_every_response_with_log_probs():
    """-log p over the tokens of both groups, the dropped one included: tokens with log-probs
    -0.1, -0.3 (kept group) and -0.5, -0.5, -1.1 (dropped): 2.5 / 5 = 0.5 nats per token; a
    response without log-probs is left out."""
    from or1.core.types import Completion, Group, Prompt
    from or1.rl.steps import rollout_metrics

    a = Group(Prompt("a", {}, [0]), [Completion([0], [7, 7], [-0.1, -0.3], "stop", "")])
    a.rewards = [1.0]
    b = Group(
        Prompt("b", {}, [0]),
        [Completion([0], [7, 7, 7], [-0.5, -0.5, -1.1], "stop", ""),
         Completion([0], [7, 7], [], "stop", "")],
    )  # fmt: skip
    b.rewards, b.kept = [0.0, 0.0], False
    assert rollout_metrics([a, b], extra_rollouts=0)["rollout/sampled_nll"] == pytest.approx(0.5)
