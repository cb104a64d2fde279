"""The few data types that cross hook boundaries.

Everything here is plain data: no engine, no plugin. Tensors appear only in `TrainBatch`,
the learner's input. Conventions used throughout or1:

* A *prompt* is a dataset row (a dict in the OR1 row schema: ``data_source``, ``prompt``
  (chat messages), ``ability``, ``reward_model.ground_truth``, ``extra_info``) plus its
  chat-templated token ids, computed once by the core.
* A *group* is one prompt with its ``n`` sampled completions (GRPO's group).
* Token-aligned tensors are indexed ``[sequence, position]`` over ``prompt + response`` ids,
  right-padded; the value at position ``t`` concerns the token ``input_ids[:, t]`` (e.g. its
  log-probability given ``input_ids[:, :t]``). Position 0 never carries a loss.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

FINISH_STOP = "stop"
FINISH_LENGTH = "length"
TRUNCATION_MODES = ("none", "mask_after", "mask_before")


@dataclass
class SamplingParams:
    """How a rollout engine samples. ``top_k <= 0`` means off; ``seed`` makes a call repeatable."""

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1
    max_tokens: int = 64
    seed: int | None = None


@dataclass
class Completion:
    """One sampled response to one prompt.

    ``logprobs[i]`` is the log-probability of ``response_ids[i]`` under the distribution the
    engine sampled from (after temperature / top-p / top-k). ``finish_reason`` is ``"stop"``
    (an EOS / stop token ended it, the EOS id included in ``response_ids``) or ``"length"``
    (it hit ``max_tokens``: truncated).
    """

    prompt_ids: list[int]
    response_ids: list[int]
    logprobs: list[float]
    finish_reason: str
    text: str

    @property
    def truncated(self) -> bool:
        return self.finish_reason == FINISH_LENGTH


@dataclass
class Score:
    """A verifier's verdict on one response: ``value`` in [0, 1] and why.

    ``status`` is one of ``correct``, ``wrong``, ``no_answer``, ``timeout``, ``error``.
    """

    value: float
    status: str
    reason: str = ""


@dataclass
class Prompt:
    """A dataset row ready for rollout: the row itself, a stable id, and its prompt token ids."""

    uid: str
    row: dict[str, Any]
    prompt_ids: list[int]


@dataclass
class Group:
    """One prompt and its completions, filled in step by step by the trainer.

    ``rewards``/``statuses`` come from the verifier, ``kept`` from the online filter,
    ``advantages`` (one scalar per completion, broadcast over its response tokens) from the
    advantage estimator.
    """

    prompt: Prompt
    completions: list[Completion]
    rewards: list[float] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    advantages: list[float] = field(default_factory=list)
    kept: bool = True


@dataclass
class Stage:
    """One stage of a multi-stage schedule, as the stage scheduler reports it for a step."""

    index: int
    name: str
    start_step: int
    steps: int
    max_response_length: int
    micro_batch_tokens: int
    truncation: str = "none"
    reset_optimizer: bool = False
    reset_entropy: bool = False
    reset_data: bool = False


@dataclass
class TrainBatch:
    """The learner's input for one optimisation step (``B`` sequences, ``T`` positions).

    * ``input_ids``/``attention_mask``: prompt + response ids, right-padded, ``[B, T]``.
    * ``response_mask``: 1.0 where position ``t`` is a response token that enters the loss
      (truncation masks already applied), else 0.0.
    * ``advantages``: per-token advantages, ``[B, T]`` (0 outside the response).
    * ``old_logprobs``: the behaviour policy's log-probs of each token, ``[B, T]``; filled by
      the trainer from the learner's own no-grad pass before the update.
    * ``ref_logprobs``: the frozen reference policy's log-probs, ``[B, T]``; only set when the
      policy loss has a KL term (``PolicyLoss.needs_reference``).
    * ``rollout_logprobs``: the log-probs the rollout engine sampled each response token with
      (``Completion.logprobs``), ``[B, T]``, 0 outside the responses; None when an engine
      returned none for some row. Learners compare them with ``old_logprobs``
      (``mismatch/*`` metrics); losses with a rollout correction use them.
    * ``seq_lens``: unpadded lengths, used to cut micro-batches by a token budget.
    * ``temperature``: the sampling temperature; learners divide logits by it.
    * ``micro_batch_tokens``: the stage's token budget per micro-batch (0: one micro-batch).
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    response_mask: torch.Tensor
    advantages: torch.Tensor
    seq_lens: list[int]
    temperature: float = 1.0
    micro_batch_tokens: int = 0
    old_logprobs: torch.Tensor | None = None
    ref_logprobs: torch.Tensor | None = None
    rollout_logprobs: torch.Tensor | None = None

    @property
    def num_sequences(self) -> int:
        return int(self.input_ids.shape[0])

    def to(self, device: torch.device | str) -> TrainBatch:
        """The same batch with every tensor on ``device``."""

        def move(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t.to(device)

        return TrainBatch(
            input_ids=move(self.input_ids),
            attention_mask=move(self.attention_mask),
            response_mask=move(self.response_mask),
            advantages=move(self.advantages),
            seq_lens=list(self.seq_lens),
            temperature=self.temperature,
            micro_batch_tokens=self.micro_batch_tokens,
            old_logprobs=move(self.old_logprobs),
            ref_logprobs=move(self.ref_logprobs),
            rollout_logprobs=move(self.rollout_logprobs),
        )

    def select(self, rows: list[int]) -> TrainBatch:
        """The sub-batch of the given rows, trimmed to its own longest sequence."""
        idx = torch.as_tensor(rows, dtype=torch.long)
        width = max(self.seq_lens[i] for i in rows)

        def cut(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[idx, :width]

        return TrainBatch(
            input_ids=cut(self.input_ids),
            attention_mask=cut(self.attention_mask),
            response_mask=cut(self.response_mask),
            advantages=cut(self.advantages),
            seq_lens=[self.seq_lens[i] for i in rows],
            temperature=self.temperature,
            micro_batch_tokens=self.micro_batch_tokens,
            old_logprobs=cut(self.old_logprobs),
            ref_logprobs=cut(self.ref_logprobs),
            rollout_logprobs=cut(self.rollout_logprobs),
        )


@dataclass(frozen=True)
class LossTotals:
    """A step's counts that normalise its loss, summed over every data-parallel rank (and
    over every micro-batch): ``tokens`` is the number of response tokens in the loss (the
    sum of every ``response_mask``), ``sequences`` the number of sequences."""

    tokens: float
    sequences: int

    @classmethod
    def of(cls, response_mask: torch.Tensor) -> LossTotals:
        """The totals of one batch that is the whole step (one rank)."""
        return cls(float(response_mask.sum()), int(response_mask.shape[0]))


@dataclass
class DroppedRow:
    """A row an ``or1-data`` pass removed: its ``uid``, a short machine-readable ``reason``
    (``exact_duplicate``, ``reference_failed``, ...) and ``details`` (JSON-able: the matching
    row, the evaluation hit, the verifier's message, ...)."""

    uid: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class PassResult:
    """What an ``or1-data`` pass returns: the kept rows (input order, possibly with new
    columns) and one :class:`DroppedRow` for every input row it did not keep."""

    rows: list[dict[str, Any]]
    dropped: list[DroppedRow] = field(default_factory=list)
