"""A deliberately perturbed rollout: the engine samples at temperature 1.2 while the learner
trains at 1.0. The mismatch metrics rise by the amounts computed exactly from the two
distributions, and with ``loss.rollout_correction=tis`` the policy loss's expected gradient is
the on-policy gradient, where ``none`` is biased.

The policy is one categorical choice over six tokens, ``pi = softmax(theta)`` (the learner);
the sampler is ``mu = softmax(theta / 1.2)``. A sample is a one-token response ``a ~ mu`` with
reward ``r(a)`` and advantage ``A(a) = r(a) - E_pi[r]``. The on-policy gradient of the expected
reward is ``g = sum_a pi(a) A(a) (e_a - pi)``, and with TIS weights ``w(a) = min(pi/mu, C)``
(``C`` above every ratio here) ``E_mu[w A (e_a - pi)] = g``; without them the estimate tends to
``E_mu[A (e_a - pi)]``, which is not ``g``. The tolerances are five Monte-Carlo standard errors
of the per-sample terms, measured on the same draw.
"""

from __future__ import annotations

import torch
from omegaconf import OmegaConf

from or1.core.types import TrainBatch
from or1.rl.learner_step import MismatchSums
from or1_plugins.loss.or1 import OR1Loss, OR1LossConfig

THETA = torch.tensor([4.0, 2.5, 1.0, -1.0, -3.0, -5.0], dtype=torch.float64)
REWARD = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
N = 400_000


def draw(temperature: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``N`` tokens sampled at ``temperature``; the learner's and the sampler's probabilities."""
    pi = torch.softmax(THETA, 0)
    mu = torch.softmax(THETA / temperature, 0)
    gen = torch.Generator().manual_seed(7)
    tokens = torch.multinomial(mu, N, replacement=True, generator=gen)
    return tokens, pi, mu


def batch_of(tokens: torch.Tensor, pi: torch.Tensor, mu: torch.Tensor) -> TrainBatch:
    """One-token responses (position 1 of two; position 0 is the prompt)."""
    old = torch.zeros(N, 2, dtype=torch.float32)
    rollout = torch.zeros(N, 2, dtype=torch.float32)
    old[:, 1] = pi.log()[tokens].float()
    rollout[:, 1] = mu.log()[tokens].float()
    mask = torch.zeros(N, 2)
    mask[:, 1] = 1.0
    ids = torch.ones(N, 2, dtype=torch.long)
    return TrainBatch(
        ids, ids, mask, mask.clone(), [2] * N, old_logprobs=old, rollout_logprobs=rollout
    )


def test_mismatch_metrics_rise_by_the_exact_divergence_of_the_two_temperatures():
    same = MismatchSums.of(batch_of(*draw(1.0))).metrics()  # sampler = learner: nothing
    assert same["mismatch/kl"] < 1e-9 and same["mismatch/logprob_abs_diff_mean"] < 1e-6
    assert abs(same["mismatch/ratio_max"] - 1.0) < 1e-6
    assert same["mismatch/ratio_outside_frac"] == 0.0

    tokens, pi, mu = draw(1.2)
    got = MismatchSums.of(batch_of(tokens, pi, mu)).metrics()
    d = (pi.log() - mu.log())[tokens]  # learner minus sampler, per sampled token
    ratio = pi / mu
    kl = float((mu * (mu.log() - pi.log())).sum())  # KL(mu || pi), what k3 estimates
    k3 = d.exp() - d - 1
    assert 0.01 < kl < 0.1  # a real perturbation
    assert abs(got["mismatch/kl"] - kl) < 5 * float(k3.std()) / N**0.5
    abs_diff = float((mu * (pi.log() - mu.log()).abs()).sum())
    assert abs(got["mismatch/logprob_abs_diff_mean"] - abs_diff) < 5 * float(d.abs().std()) / N**0.5
    assert abs(got["mismatch/ratio_max"] - float(ratio.max())) < 1e-5  # every token drawn
    outside = ((ratio < 0.5) | (ratio > 2.0)).double()
    p_out = float((mu * outside).sum())
    assert p_out > 0.01  # the tails: the sampler over-samples the unlikely tokens
    assert abs(got["mismatch/ratio_outside_frac"] - p_out) < 5 * (p_out / N) ** 0.5


def test_tis_recovers_the_on_policy_gradient_where_none_is_biased():
    tokens, pi, mu = draw(1.2)
    baseline = float((pi * REWARD).sum())
    adv_of = REWARD - baseline
    exact = (pi * adv_of).unsqueeze(1) * (torch.eye(6, dtype=torch.float64) - pi)
    g = exact.sum(0)  # sum_a pi(a) A(a) (e_a - pi): the on-policy gradient of E_pi[r]
    ratio = pi / mu
    cap = 10.0
    assert float(ratio.max()) < cap  # the cap never binds: TIS is unbiased here

    def estimate(correction: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Minus the gradient of the loss's mean over the draw, and its standard errors."""
        theta = THETA.clone().requires_grad_()
        logp = torch.log_softmax(theta, 0)[tokens].unsqueeze(1)
        old = logp.detach()  # on-policy learner: its pre-update log-probs are its own
        rollout = mu.log()[tokens].unsqueeze(1)
        adv = adv_of[tokens].unsqueeze(1)
        loss = OR1Loss(
            OmegaConf.structured(OR1LossConfig(rollout_correction=correction, tis_cap=cap))
        )
        per_token, _ = loss.per_token_loss(
            logp, old, adv, torch.ones_like(logp), rollout_logprobs=rollout
        )
        (grad,) = torch.autograd.grad(per_token.mean(), theta)
        weight = ratio[tokens].clamp(max=cap) if correction == "tis" else torch.ones(N)
        terms = (weight * adv_of[tokens]).unsqueeze(1) * (
            torch.nn.functional.one_hot(tokens, 6).double() - pi
        )
        assert torch.allclose(-grad, terms.mean(0), rtol=1e-6, atol=1e-9)  # the same estimator
        return -grad, terms.std(0) / N**0.5

    tis, se_tis = estimate("tis")
    assert ((tis - g).abs() < 5 * se_tis).all(), (tis, g, se_tis)
    none, se_none = estimate("none")
    biased = ((mu * adv_of).unsqueeze(1) * (torch.eye(6, dtype=torch.float64) - pi)).sum(0)
    assert ((none - biased).abs() < 5 * se_none).all()  # what `none` converges to instead
    assert ((none - g).abs() > 20 * se_none).any(), (none, g, se_none)
    # relative error of the whole gradient: TIS within 2%, none off by more than 10%
    assert float((tis - g).norm() / g.norm()) < 0.02
    assert float((none - g).norm() / g.norm()) > 0.10
