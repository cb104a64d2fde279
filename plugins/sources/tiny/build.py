"""Building a small Qwen2 for a generated task, shared by the tiny plugin's model sources.

A model source of this package (``model=tiny``, ``model=tiny_cot``) describes its task as
:class:`Example` rows (a user message, the supervised response, the reference answer); the
functions here train a byte-level BPE tokenizer on that text, build a random-initialised
``Qwen2ForCausalLM``, warm it up by supervised fine-tuning until its sampled accuracy on a
probe set reaches a target, and save the result once, under a content hash, as an ordinary
Hugging Face folder.

Everything heavy (torch, transformers, tokenizers) is imported inside the functions.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from or1.core.config import ModelConfig

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

log = logging.getLogger("or1.tiny")

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [PAD_TOKEN, IM_START, IM_END]
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
BUILD_INFO_FILE = "or1_tiny_build.json"

_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


@dataclass
class BuiltModelConfig(ModelConfig):
    """A random-initialised Qwen2 (fp32) with a task-trained tokenizer, warmed up by
    supervised fine-tuning on its task.

    The warm-up stops as soon as the accuracy of one sample per problem at temperature 1.0 on
    a fixed probe set reaches ``warmup_target_accuracy`` (checked every ``warmup_eval_every``
    steps, every ``warmup_eval_every_near`` steps once it is past half the target), or after
    ``warmup_max_steps``.
    """

    seed: int = 0
    """Seed of the initialisation and the warm-up."""
    # architecture
    hidden_size: int = 128
    """Qwen2 hidden size."""
    intermediate_size: int = 384
    """Qwen2 MLP size."""
    num_layers: int = 2
    """Transformer layers."""
    num_heads: int = 4
    """Attention heads."""
    num_kv_heads: int = 2
    """Key/value heads (GQA)."""
    max_position_embeddings: int = 256
    """Context length of the model."""
    tie_word_embeddings: bool = False
    """Share the input embedding and the output head."""
    initializer_range: float = 0.02
    """Std of the normal weight initialisation."""
    tokenizer_vocab_size: int = 128  # BPE cap (alphabet + specials + merges)
    tokenizer_byte_alphabet: bool = False  # True: all 256 bytes; False: the task text's bytes
    # supervised warm-up
    warmup_lr: float = 3e-3
    """AdamW learning rate of the supervised warm-up."""
    warmup_betas: tuple[float, float] = (0.9, 0.98)
    """AdamW betas of the warm-up."""
    warmup_weight_decay: float = 0.0
    """AdamW weight decay of the warm-up."""
    warmup_label_smoothing: float = 0.0
    """Label smoothing of the warm-up's cross-entropy."""
    warmup_batch_size: int = 64
    """Problems per warm-up step."""
    warmup_max_steps: int = 3000
    """Warm-up step limit (0: no warm-up, an untrained model)."""
    warmup_eval_every: int = 25
    """Warm-up steps between probe checks."""
    warmup_eval_every_near: int = 5  # once probe accuracy >= half the target
    warmup_probe_size: int = 256
    """Probe problems of each check."""
    warmup_target_accuracy: float = 0.45
    """Stop the warm-up once the probe accuracy reaches this."""
    warmup_max_new_tokens: int = 48
    """Token budget of the probe's samples."""
    num_threads: int = 2  # torch threads while building (fixed for determinism); 0: unchanged


@dataclass(frozen=True)
class Example:
    """One supervised example of a task."""

    prompt: str
    """The user message."""
    response: str
    """The target response (worked steps in ``<think>``, then the boxed answer)."""
    answer: str
    """The reference answer, as :func:`boxed_answer` must read it from a correct response."""


@dataclass
class WarmupResult:
    """What the supervised warm-up did."""

    steps: int
    accuracy: float
    hit_target: bool
    history: list[dict[str, float]]
    seconds: float


AccuracyFn = Callable[..., float]
"""``(model, tokenizer, examples, *, max_new_tokens, seed) -> accuracy`` (see
:func:`sampled_accuracy`)."""


# ------------------------------------------------------------------------------ tokenizer


def chat_prompt_text(user: str) -> str:
    """The chat-templated prompt of a user message (ends with the generation prompt)."""
    return f"{IM_START}user\n{user}{IM_END}\n{IM_START}assistant\n"


def train_tokenizer(cfg: Any, corpus: Iterable[str], characters: str) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE (digits split one per token) on ``corpus``.

    Unless ``cfg.tokenizer_byte_alphabet``, the base alphabet is only ``characters``
    (byte-level mapped): every task text round-trips exactly and the policy has few useless
    tokens to drift to during RL; other characters cannot be encoded. ``cfg`` gives the
    vocabulary cap (``tokenizer_vocab_size``) and the context length.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    if bool(cfg.tokenizer_byte_alphabet):
        alphabet = pre_tokenizers.ByteLevel.alphabet()
    else:
        mapper = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        alphabet = sorted(set(mapper.pre_tokenize_str(characters)[0][0]))
    trainer = trainers.BpeTrainer(
        vocab_size=int(cfg.tokenizer_vocab_size),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        bos_token=None,
        unk_token=None,
        model_max_length=int(cfg.max_position_embeddings),
        clean_up_tokenization_spaces=False,
        padding_side="left",
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tokenizer_corpus(examples: Iterable[Example]) -> Iterable[str]:
    """The text a task's tokenizer is trained on: each example's roles, prompt and response."""
    return [f"user\n{e.prompt}\nassistant\n{e.response}\n" for e in examples]


# ---------------------------------------------------------------------------------- model


def build_model(cfg: Any, tokenizer: PreTrainedTokenizerFast) -> PreTrainedModel:
    """A randomly initialised fp32 ``Qwen2ForCausalLM`` (seeded by ``cfg.seed``)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    eos_id = tokenizer.convert_tokens_to_ids(IM_END)
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=int(cfg.hidden_size),
        intermediate_size=int(cfg.intermediate_size),
        num_hidden_layers=int(cfg.num_layers),
        num_attention_heads=int(cfg.num_heads),
        num_key_value_heads=int(cfg.num_kv_heads),
        max_position_embeddings=int(cfg.max_position_embeddings),
        rope_theta=10000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=bool(cfg.tie_word_embeddings),
        initializer_range=float(cfg.initializer_range),
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        use_cache=True,
    )
    torch.manual_seed(int(cfg.seed))
    model = Qwen2ForCausalLM(config).float()
    model.generation_config = GenerationConfig(
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        do_sample=True,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        max_new_tokens=int(cfg.warmup_max_new_tokens),
    )
    return model


# ------------------------------------------------------------------------------- sampling


def boxed_answer(response: str) -> str | None:
    """The content of the last ``\\boxed{}`` after the first ``</think>`` (None if absent)."""
    _, sep, after = response.partition("</think>")
    if not sep:
        return None
    found = _BOXED.findall(after)
    return found[-1].strip() if found else None


def sample(
    model: PreTrainedModel,
    prompts: Sequence[Sequence[int]],
    *,
    eos_id: int,
    pad_id: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """Sample one response per prompt (left-padded batch, KV cache, pure temperature
    sampling). Each response ends at and includes ``eos_id``, or has ``max_new_tokens``."""
    import torch

    b = len(prompts)
    width = max(len(p) for p in prompts)
    ids = torch.full((b, width), pad_id, dtype=torch.long)
    attn = torch.zeros((b, width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p) :] = torch.tensor(list(p), dtype=torch.long)
        attn[i, width - len(p) :] = 1
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    out_tokens: list[list[int]] = [[] for _ in range(b)]
    done = torch.zeros(b, dtype=torch.bool)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=attn, position_ids=pos, use_cache=True)
        past = out.past_key_values
        logits = out.logits[:, -1, :]
        pos = pos[:, -1:]
        for _ in range(max_new_tokens):
            probs = torch.softmax(logits.float() / temperature, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(1)
            nxt = torch.where(done, torch.full_like(nxt, pad_id), nxt)
            for i in torch.nonzero(~done).flatten().tolist():
                out_tokens[i].append(int(nxt[i]))
            done |= nxt == eos_id
            if bool(done.all()):
                break
            attn = torch.cat([attn, torch.ones((b, 1), dtype=attn.dtype)], dim=1)
            pos = pos + 1
            out = model(
                input_ids=nxt[:, None],
                attention_mask=attn,
                position_ids=pos,
                past_key_values=past,
                use_cache=True,
            )
            past = out.past_key_values
            logits = out.logits[:, -1, :]
    return out_tokens


def sampled_accuracy(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    examples: Sequence[Example],
    *,
    max_new_tokens: int,
    seed: int,
    temperature: float = 1.0,
    batch_size: int = 256,
) -> float:
    """Fraction of examples whose one sampled response boxes exactly the reference answer."""
    import torch

    eos_id = tokenizer.convert_tokens_to_ids(IM_END)
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    correct = 0
    try:
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            prompts = [
                e.ids
                for e in tokenizer.backend_tokenizer.encode_batch(
                    [chat_prompt_text(x.prompt) for x in chunk], add_special_tokens=False
                )
            ]
            outs = sample(
                model,
                prompts,
                eos_id=eos_id,
                pad_id=pad_id,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                generator=gen,
            )
            for x, toks in zip(chunk, outs, strict=True):
                text = tokenizer.decode(toks, skip_special_tokens=True)
                correct += boxed_answer(text) == x.answer
    finally:
        model.train(was_training)
    return correct / max(1, len(examples))


# -------------------------------------------------------------------------------- warm-up


def encode_examples(
    tokenizer: PreTrainedTokenizerFast, examples: Sequence[Example]
) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids + EOS) per example."""
    eos_id = tokenizer.convert_tokens_to_ids(IM_END)
    backend = tokenizer.backend_tokenizer
    prompts = backend.encode_batch(
        [chat_prompt_text(e.prompt) for e in examples], add_special_tokens=False
    )
    targets = backend.encode_batch([e.response for e in examples], add_special_tokens=False)
    return [(p.ids, t.ids + [eos_id]) for p, t in zip(prompts, targets, strict=True)]


def collate(
    examples: Sequence[tuple[list[int], list[int]]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ``(input_ids, attention_mask, labels)``; labels only on response tokens."""
    import torch

    width = max(len(p) + len(t) for p, t in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (p, t) in enumerate(examples):
        seq = p + t
        ids[i, : len(seq)] = torch.tensor(seq)
        attn[i, : len(seq)] = 1
        labels[i, len(p) : len(seq)] = torch.tensor(t)
    return ids, attn, labels


def micro_batches(
    examples: Sequence[tuple[list[int], list[int]]], max_tokens: int
) -> list[list[tuple[list[int], list[int]]]]:
    """``examples`` sorted by length and cut into groups whose padded size (members x longest
    member) stays within ``max_tokens`` (a longer example is a group of its own)."""
    groups: list[list[tuple[list[int], list[int]]]] = []
    current: list[tuple[list[int], list[int]]] = []
    for ex in sorted(examples, key=lambda e: len(e[0]) + len(e[1])):
        width = len(ex[0]) + len(ex[1])  # the longest so far, as they are sorted
        if current and (len(current) + 1) * width > max_tokens:
            groups.append(current)
            current = []
        current.append(ex)
    if current:
        groups.append(current)
    return groups


def _next_token_loss(
    model: Any, tensors: tuple[Any, Any, Any], smoothing: float, reduction: str
) -> Any:
    """Cross-entropy of each next token where ``labels`` is not -100 (``mean`` or ``sum``)."""
    import torch

    ids, attn, labels = tensors
    logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]),
        labels[:, 1:].reshape(-1),
        ignore_index=-100,
        label_smoothing=smoothing,
        reduction=reduction,
    )


def _loss_and_backward(
    model: PreTrainedModel,
    batch: Sequence[tuple[list[int], list[int]]],
    pad_id: int,
    smoothing: float,
    micro_batch_tokens: int,
) -> torch.Tensor:
    """The mean cross-entropy over the batch's response tokens, back-propagated; with
    ``micro_batch_tokens > 0`` in length-sorted micro-batches (gradients accumulated, weighted
    by their response tokens) so that short examples are not padded to the longest one."""
    import torch

    if micro_batch_tokens <= 0:
        loss = _next_token_loss(model, collate(batch, pad_id), smoothing, "mean")
        loss.backward()
        return loss.detach()
    total_tokens = sum(len(t) for _, t in batch)
    total = torch.zeros(())
    for group in micro_batches(batch, micro_batch_tokens):
        loss = _next_token_loss(model, collate(group, pad_id), smoothing, "sum")
        loss = loss / max(1, total_tokens)
        loss.backward()
        total += loss.detach()
    return total


def supervised_warmup(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    cfg: Any,
    *,
    train: Sequence[Example],
    probe: Sequence[Example],
    rng: random.Random,
    accuracy: AccuracyFn = sampled_accuracy,
    label: str = "tiny",
    micro_batch_tokens: int = 0,
) -> WarmupResult:
    """Supervised warm-up (AdamW, teacher forcing, loss on response tokens only) on batches
    of ``cfg.warmup_batch_size`` examples drawn by ``rng`` from ``train``, until the probe
    accuracy (``accuracy`` on ``probe``) reaches ``cfg.warmup_target_accuracy``."""
    import torch

    t0 = time.perf_counter()
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    target = float(cfg.warmup_target_accuracy)
    smoothing = float(cfg.warmup_label_smoothing)
    opt = torch.optim.AdamW(
        model.parameters(),
        lr=float(cfg.warmup_lr),
        betas=tuple(float(b) for b in cfg.warmup_betas),
        weight_decay=float(cfg.warmup_weight_decay),
    )
    history: list[dict[str, float]] = []
    acc, step, losses = 0.0, 0, []
    max_steps = int(cfg.warmup_max_steps)
    every = max(1, int(cfg.warmup_eval_every))
    near = max(1, int(cfg.warmup_eval_every_near))
    last_eval = 0
    model.train()
    while step < max_steps:
        batch = encode_examples(tokenizer, rng.sample(train, int(cfg.warmup_batch_size)))
        opt.zero_grad(set_to_none=True)
        loss = _loss_and_backward(model, batch, pad_id, smoothing, micro_batch_tokens)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        losses.append(float(loss))
        log.debug(
            "%s warm-up step %d loss %.4f (%.0fs)",
            label,
            step,
            losses[-1],
            time.perf_counter() - t0,
        )
        interval = near if acc >= 0.5 * target else every
        if step - last_eval >= interval or step == max_steps:
            last_eval = step
            acc = accuracy(
                model,
                tokenizer,
                probe,
                max_new_tokens=int(cfg.warmup_max_new_tokens),
                seed=int(cfg.seed) + step,
            )
            mean_loss = sum(losses) / len(losses)
            losses = []
            history.append({"step": step, "loss": mean_loss, "accuracy": acc})
            log.info(
                "%s warm-up step %d/%d loss %.4f probe accuracy %.3f (target %.3f, %.0fs)",
                label, step, max_steps, mean_loss, acc, target, time.perf_counter() - t0,
            )  # fmt: skip
            if acc >= target:
                break
    model.eval()
    hit = acc >= target
    if not hit:
        log.warning(
            "%s warm-up: accuracy %.3f below target %.3f after %d steps", label, acc, target, step
        )
    return WarmupResult(step, acc, hit, history, time.perf_counter() - t0)


# ---------------------------------------------------------------------------------- build


def build_model_folder(
    cfg: Any,
    folder: Path,
    *,
    make_tokenizer: Callable[[], PreTrainedTokenizerFast],
    run_warmup: Callable[[PreTrainedModel, PreTrainedTokenizerFast], WarmupResult],
    label: str = "tiny",
) -> WarmupResult:
    """Build the tokenizer and the model, warm it up and save everything into ``folder``
    (with ``cfg.num_threads`` torch threads while building)."""
    import torch

    prev_threads = torch.get_num_threads()
    if int(cfg.num_threads) > 0:
        torch.set_num_threads(int(cfg.num_threads))
    try:
        tokenizer = make_tokenizer()
        model = build_model(cfg, tokenizer)
        n_params = sum(p.numel() for p in model.parameters())
        log.info(
            "%s model: %d parameters, vocab %d; warming up to accuracy %.2f",
            label, n_params, len(tokenizer), float(cfg.warmup_target_accuracy),
        )  # fmt: skip
        result = run_warmup(model, tokenizer)
    finally:
        torch.set_num_threads(prev_threads)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    info = {
        "params": n_params,
        "vocab_size": len(tokenizer),
        "warmup_steps": result.steps,
        "warmup_accuracy": result.accuracy,
        "warmup_hit_target": result.hit_target,
        "warmup_seconds": round(result.seconds, 3),
        "history": result.history,
    }
    (folder / BUILD_INFO_FILE).write_text(json.dumps(info, indent=1) + "\n")
    return result


def prepare_cached_model(
    folder: Path, build: Callable[[Path], WarmupResult], *, label: str = "tiny"
) -> Path:
    """Return ``folder`` when it holds a model; otherwise run ``build`` into a temporary
    sibling and move it into place atomically (a concurrent builder's result is kept)."""
    if (folder / "config.json").is_file():
        log.info("%s model: reusing %s", label, folder)
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        t0 = time.perf_counter()
        result = build(tmp)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / "config.json").is_file():  # not a concurrent builder's result
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        log.info(
            "%s model: built in %.1fs (%d warm-up steps, probe accuracy %.3f) at %s",
            label, time.perf_counter() - t0, result.steps, result.accuracy, folder,
        )  # fmt: skip
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
