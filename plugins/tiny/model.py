"""The embedded default model: a tiny Qwen2 with a task-trained byte-level BPE tokenizer,
warmed up by supervised fine-tuning on the tiny arithmetic task until its sampled accuracy
reaches a target band (so that RL has room to improve it).

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from or1.config import ModelConfig

from .task import (
    Problem,
    TinyArithDataConfig,
    config_hash,
    ground_truth,
    problem_pools,
    prompt_text,
    target_response,
)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

log = logging.getLogger("or1.tiny")

FORMAT_VERSION = 1
"""Bumped whenever the built folder changes for the same config (it is part of the hash)."""

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
TASK_CHARACTERS = "0123456789+-*=?<>/{}\\\n " + "Whatisuserassistantthinkboxed"

_NON_CONTENT_FIELDS = {"name", "path"}
_BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


@dataclass
class TinyModelConfig(ModelConfig):
    """A tiny random-initialised Qwen2 (fp32) plus a supervised warm-up on tiny_arith.

    The warm-up trains on ``train``-pool problems of the task defined by the ``task_*`` fields
    (keep them equal to the data section's) and stops as soon as the accuracy of one sample per
    problem at temperature 1.0 on a fixed probe set reaches ``warmup_target_accuracy`` (checked
    every ``warmup_eval_every`` steps, every ``warmup_eval_every_near`` steps once it is past
    half the target), or after ``warmup_max_steps``.
    """

    name: str = "tiny"
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
    # the task the warm-up learns (must match the data section's tiny_arith settings)
    task_ops: str = "+"
    """Operators of the warm-up task (keep equal to ``data.ops``)."""
    task_min_operand: int = 0
    """Smallest operand of the warm-up task (keep equal to ``data.min_operand``)."""
    task_max_operand: int = 99
    """Largest operand of the warm-up task (keep equal to ``data.max_operand``)."""
    task_split_seed: int = 0
    """Pool seed of the warm-up task (keep equal to ``data.split_seed``)."""
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


@dataclass
class WarmupResult:
    """What the supervised warm-up did."""

    steps: int
    accuracy: float
    hit_target: bool
    history: list[dict[str, float]]
    seconds: float


# ------------------------------------------------------------------------------ tokenizer


def task_config(cfg: Any) -> TinyArithDataConfig:
    """The tiny_arith config whose problems the model's tokenizer and warm-up use."""
    return TinyArithDataConfig(
        ops=str(cfg.task_ops),
        min_operand=int(cfg.task_min_operand),
        max_operand=int(cfg.task_max_operand),
        split_seed=int(cfg.task_split_seed),
    )


def chat_prompt(p: Problem) -> str:
    """The chat-templated prompt text of a problem (ends with the generation prompt)."""
    return f"{IM_START}user\n{prompt_text(p)}{IM_END}\n{IM_START}assistant\n"


def build_tokenizer(cfg: Any, problems: Sequence[Problem]) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE (digits split one per token) on the task's own chat text.

    Unless ``cfg.tokenizer_byte_alphabet``, the base alphabet is only the characters that
    tiny_arith text can contain (any operators): every task prompt and response round-trips
    exactly and the policy has few useless tokens to drift to during RL; other characters
    cannot be encoded.
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
    else:  # every character any tiny_arith config can produce, byte-level mapped
        mapper = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        alphabet = sorted(set(mapper.pre_tokenize_str(TASK_CHARACTERS)[0][0]))
    trainer = trainers.BpeTrainer(
        vocab_size=int(cfg.tokenizer_vocab_size),
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=alphabet,
        show_progress=False,
    )
    corpus = [f"user\n{prompt_text(p)}\nassistant\n{target_response(p)}\n" for p in problems]
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
    problems: Sequence[Problem],
    *,
    max_new_tokens: int,
    seed: int,
    temperature: float = 1.0,
    batch_size: int = 256,
) -> float:
    """Fraction of problems whose one sampled response boxes exactly the right answer."""
    import torch

    eos_id = tokenizer.convert_tokens_to_ids(IM_END)
    pad_id = tokenizer.convert_tokens_to_ids(PAD_TOKEN)
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    correct = 0
    try:
        for start in range(0, len(problems), batch_size):
            chunk = problems[start : start + batch_size]
            prompts = [
                e.ids
                for e in tokenizer.backend_tokenizer.encode_batch(
                    [chat_prompt(p) for p in chunk], add_special_tokens=False
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
            for p, toks in zip(chunk, outs, strict=True):
                text = tokenizer.decode(toks, skip_special_tokens=True)
                correct += boxed_answer(text) == ground_truth(p)
    finally:
        model.train(was_training)
    return correct / max(1, len(problems))


# -------------------------------------------------------------------------------- warm-up


def _encode_examples(
    tokenizer: PreTrainedTokenizerFast, problems: Sequence[Problem]
) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, response ids + EOS) per problem."""
    eos_id = tokenizer.convert_tokens_to_ids(IM_END)
    backend = tokenizer.backend_tokenizer
    prompts = backend.encode_batch([chat_prompt(p) for p in problems], add_special_tokens=False)
    targets = backend.encode_batch([target_response(p) for p in problems], add_special_tokens=False)
    return [(p.ids, t.ids + [eos_id]) for p, t in zip(prompts, targets, strict=True)]


def _collate(
    examples: Sequence[tuple[list[int], list[int]]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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


def warmup(model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, cfg: Any) -> WarmupResult:
    """Supervised warm-up (AdamW, teacher forcing, loss on response tokens only) on
    ``train``-pool problems until the probe accuracy reaches ``cfg.warmup_target_accuracy``."""
    import torch

    t0 = time.perf_counter()
    pools = problem_pools(task_config(cfg))
    rng = random.Random(f"tiny-warmup:{cfg.seed}")
    train_pool = list(pools["train"])
    probe = rng.sample(pools["probe"], min(int(cfg.warmup_probe_size), len(pools["probe"])))
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
    accuracy, step, losses = 0.0, 0, []
    max_steps = int(cfg.warmup_max_steps)
    every = max(1, int(cfg.warmup_eval_every))
    near = max(1, int(cfg.warmup_eval_every_near))
    last_eval = 0
    model.train()
    while step < max_steps:
        batch = _encode_examples(tokenizer, rng.sample(train_pool, int(cfg.warmup_batch_size)))
        ids, attn, labels = _collate(batch, pad_id)
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            labels[:, 1:].reshape(-1),
            ignore_index=-100,
            label_smoothing=smoothing,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        losses.append(float(loss.detach()))
        interval = near if accuracy >= 0.5 * target else every
        if step - last_eval >= interval or step == max_steps:
            last_eval = step
            accuracy = sampled_accuracy(
                model,
                tokenizer,
                probe,
                max_new_tokens=int(cfg.warmup_max_new_tokens),
                seed=int(cfg.seed) + step,
            )
            mean_loss = sum(losses) / len(losses)
            losses = []
            history.append({"step": step, "loss": mean_loss, "accuracy": accuracy})
            log.info(
                "tiny warm-up step %d/%d loss %.4f probe accuracy %.3f (target %.3f)",
                step, max_steps, mean_loss, accuracy, target,
            )  # fmt: skip
            if accuracy >= target:
                break
    model.eval()
    hit = accuracy >= target
    if not hit:
        log.warning(
            "tiny warm-up: accuracy %.3f below target %.3f after %d steps", accuracy, target, step
        )
    return WarmupResult(step, accuracy, hit, history, time.perf_counter() - t0)


# ---------------------------------------------------------------------------------- build


def model_hash(cfg: Any) -> str:
    """The cache key of a model config (content-relevant fields only)."""
    return config_hash(cfg, TinyModelConfig, _NON_CONTENT_FIELDS, FORMAT_VERSION)


def _build_model_folder(cfg: Any, folder: Path) -> WarmupResult:
    """Build tokenizer + model, warm it up and save everything into ``folder``."""
    import torch

    prev_threads = torch.get_num_threads()
    if int(cfg.num_threads) > 0:
        torch.set_num_threads(int(cfg.num_threads))
    try:
        pools = problem_pools(task_config(cfg))
        tokenizer = build_tokenizer(cfg, pools["train"])
        model = build_model(cfg, tokenizer)
        n_params = sum(p.numel() for p in model.parameters())
        log.info(
            "tiny model: %d parameters, vocab %d; warming up to accuracy %.2f",
            n_params, len(tokenizer), float(cfg.warmup_target_accuracy),
        )  # fmt: skip
        result = warmup(model, tokenizer, cfg)
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


def prepare_tiny_model(cfg: Any, cache_dir: Path) -> Path:
    """Build (once) the tiny model's Hugging Face folder under
    ``cache_dir/models/tiny-<hash>/`` and return it; reuse it when present."""
    folder = Path(cache_dir) / "models" / f"tiny-{model_hash(cfg)}"
    if (folder / "config.json").is_file():
        log.info("tiny model: reusing %s", folder)
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        t0 = time.perf_counter()
        result = _build_model_folder(cfg, tmp)
        try:
            os.replace(tmp, folder)
        except OSError:
            if not (folder / "config.json").is_file():  # not a concurrent builder's result
                raise
            shutil.rmtree(tmp, ignore_errors=True)
        log.info(
            "tiny model: built in %.1fs (%d warm-up steps, probe accuracy %.3f) at %s",
            time.perf_counter() - t0, result.steps, result.accuracy, folder,
        )  # fmt: skip
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
