"""The Megatron-core learner: ``GPTModel`` with tensor parallelism, data parallel on top.

One process per rank (``torchrun``; a plain ``or1-train`` is one process, TP=1). Every rank
runs the trainer loop and calls this learner's methods at the same points (SPMD). Ranks are
laid out by Megatron: ``world = tensor_parallel_size * data_parallel_size``, tensor-parallel
ranks consecutive.

Per step: each rank receives its data-parallel index's share of the step's sequences (the
trainer's token-balanced split; the same rows on every tensor-parallel rank of the index) and
cuts it into micro-batches by the token budget; the loss weights come from
``loss.token_weights`` with the step's totals summed over the data-parallel group (the global
normaliser), so gradients are *summed* over micro-batches and data-parallel ranks. Log-probs
and full-vocabulary entropy are computed from vocabulary-sharded logits
(:mod:`or1_plugins.megatron.vocab_parallel`), the gradient norm counts each shard once, and the
optimiser is a plain ``torch.optim.AdamW`` over each rank's shards.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from or1 import distributed
from or1.batch import split_by_token_budget
from or1.config import LearnerConfig
from or1.errors import ConfigError
from or1.interfaces import BuildContext, Learner, PolicyLoss
from or1.learner_step import (
    backward_micro_batch,
    finish_step,
    new_adamw,
    take_old_logprobs,
)
from or1.types import LossTotals, TrainBatch

from . import sharded_checkpoint
from .cpu_shims import apply_cpu_shims
from .hf_mapping import (
    VOCAB_PARAMS,
    Arch,
    architecture,
    gather,
    hf_to_megatron,
    megatron_names,
    megatron_to_hf,
    pad_vocab_rows,
    shard,
    tp_layout,
    unshard,
)
from .vocab_parallel import logprobs_and_entropy

log = logging.getLogger("or1.megatron")

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
RECOMPUTE = {
    "none": {},
    # Megatron's own settings: recompute the core attention of every layer in the backward
    "selective": {"recompute_granularity": "selective"},
    # keep only each layer's input, recompute the whole layer in the backward
    "full": {
        "recompute_granularity": "full",
        "recompute_method": "uniform",
        "recompute_num_layers": 1,
    },
}
STATE_FORMAT = "or1-megatron-full-v1"


@dataclass
class MegatronLearnerConfig(LearnerConfig):
    """Megatron-core tensor-parallel learner (launch ``N = TP x DP`` processes with torchrun)."""

    name: str = "megatron"
    tensor_parallel_size: int = (
        1  # must divide heads, KV heads, FFN width, vocab and the world size
    )
    dtype: str = (
        "float32"  # float32 only for now (16-bit needs fp32 master weights, not implemented)
    )
    transformer_engine: str = "auto"  # auto: TE layer spec when installed and on GPU; on | off
    pad_vocab: bool = True  # pad the vocabulary to a multiple of the TP size (else: must divide)
    seed: int = 1234  # Megatron's model-parallel RNG (dropout is off; kept for completeness)
    sync_bucket_mib: int = 512  # weight sync / checkpoints at TP > 1: shards gathered per bucket
    recompute: str = "none"  # activation recompute: none | selective (core attention) | full


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _use_te(mode: str) -> bool:
    if mode not in ("auto", "on", "off"):
        raise ConfigError(f"learner.transformer_engine={mode} is not one of auto, on, off")
    if mode == "off":
        return False
    try:
        import transformer_engine  # noqa: F401

        have = torch.cuda.is_available()
    except ImportError:
        have = False
    if mode == "on" and not have:
        raise ConfigError("learner.transformer_engine=on needs Transformer Engine and a GPU")
    return have


class MegatronLearner(Learner):
    multiprocess = True
    """Runs under ``torchrun``: every rank builds it and calls it on its own share (SPMD)."""

    def __init__(self, cfg: Any, ctx: BuildContext) -> None:
        from transformers import AutoConfig

        if cfg.recompute not in RECOMPUTE:
            raise ConfigError(
                f"learner.recompute={cfg.recompute} is not one of {', '.join(RECOMPUTE)}"
            )
        if cfg.dtype not in DTYPES:
            raise ConfigError(f"learner.dtype={cfg.dtype} is not one of {', '.join(DTYPES)}")
        if cfg.dtype != "float32":
            raise ConfigError(
                f"learner.dtype={cfg.dtype}: this learner keeps no fp32 master weights yet, and "
                "AdamW steps on 16-bit weights are lost to rounding at RL learning rates; use float32"
            )
        tp = int(cfg.tensor_parallel_size)
        world = distributed.world_size()
        if tp < 1:
            raise ConfigError(f"learner.tensor_parallel_size={tp} must be >= 1")
        if world % tp:
            hint = f"launch with torchrun --nproc-per-node {tp}" if world == 1 else "change it"
            raise ConfigError(
                f"learner.tensor_parallel_size={tp} does not divide the {world} process(es) of "
                f"this launch ({hint})"
            )
        hf_config = AutoConfig.from_pretrained(ctx.model_path)
        self.arch: Arch = architecture(hf_config, tp, f"model.path={ctx.model_path}", cfg.pad_vocab)
        self.cfg = cfg
        self.model_path = Path(ctx.model_path)
        self.tp, self.world = tp, world
        self.dp = world // tp
        self.te = _use_te(cfg.transformer_engine)
        self.device = (
            torch.device("cuda", torch.cuda.current_device())
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
        # megatron's advice for GPU set-ups (Apex/TE missing, CUDA_DEVICE_MAX_CONNECTIONS, ...)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"megatron\.")
        if self.device.type == "cpu":
            apply_cpu_shims()
        self._init_parallel()
        with torch.random.fork_rng(devices=[]):
            self.model = self._build_model()
        self.optimizer = self._new_optimizer()
        self.reference: torch.nn.Module | None = None
        self.tokenizer_files = self.model_path

    # ------------------------------------------------------------------ set-up

    def _init_parallel(self) -> None:
        from megatron.core import parallel_state as ps
        from megatron.core import tensor_parallel

        if not dist.is_initialized():  # one process: a world of one
            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(
                backend, init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1
            )
        if (
            ps.model_parallel_is_initialized()
            and ps.get_tensor_model_parallel_world_size() != self.tp
        ):
            ps.destroy_model_parallel()
        if not ps.model_parallel_is_initialized():
            ps.initialize_model_parallel(tensor_model_parallel_size=self.tp)
        tensor_parallel.model_parallel_cuda_manual_seed(int(self.cfg.seed))
        self.tp_group = ps.get_tensor_model_parallel_group()
        self.dp_group = ps.get_data_parallel_group()
        self.tp_rank = ps.get_tensor_model_parallel_rank()
        self.dp_rank = ps.get_data_parallel_rank()

    def _build_model(self) -> torch.nn.Module:
        import torch.nn.functional as F
        from megatron.core.models.gpt import GPTModel
        from megatron.core.models.gpt import gpt_layer_specs as specs
        from megatron.core.transformer.transformer_config import TransformerConfig

        a, dtype = self.arch, DTYPES[self.cfg.dtype]
        config = TransformerConfig(
            num_layers=a.num_layers,
            hidden_size=a.hidden_size,
            ffn_hidden_size=a.ffn_hidden_size,
            num_attention_heads=a.num_heads,
            num_query_groups=a.num_kv_heads,
            kv_channels=a.head_dim,
            tensor_model_parallel_size=self.tp,
            normalization="RMSNorm",
            layernorm_epsilon=a.norm_eps,
            add_bias_linear=False,
            add_qkv_bias=a.qkv_bias,
            gated_linear_unit=True,
            activation_func=F.silu,
            hidden_dropout=0.0,
            attention_dropout=0.0,
            params_dtype=dtype,
            pipeline_dtype=dtype,
            bf16=dtype == torch.bfloat16,
            fp16=dtype == torch.float16,
            use_cpu_initialization=True,
            perform_initialization=False,  # every weight is loaded from the HF folder
            gradient_accumulation_fusion=False,
            bias_activation_fusion=False,
            bias_dropout_fusion=False,
            masked_softmax_fusion=False,
            apply_rope_fusion=False,
            persist_layer_norm=False,
            cross_entropy_loss_fusion=False,
            **RECOMPUTE[self.cfg.recompute],
        )
        spec = (
            specs.get_gpt_layer_with_transformer_engine_spec()
            if self.te
            else specs.get_gpt_layer_local_spec(normalization="RMSNorm")
        )
        model = GPTModel(
            config=config,
            transformer_layer_spec=spec,
            vocab_size=a.padded_vocab_size,
            max_sequence_length=a.max_positions,
            pre_process=True,
            post_process=True,
            parallel_output=True,
            share_embeddings_and_output_weights=a.tie_embeddings,
            position_embedding_type="rope",
            rotary_base=a.rope_theta,
        ).to(self.device)
        self._load_hf(model)
        model.train()
        return model

    def _load_hf(self, model: torch.nn.Module) -> None:
        """Fill ``model``'s shards from the HF safetensors files, one tensor at a time."""
        from safetensors import safe_open

        files = sorted(self.model_path.glob("*.safetensors"))
        if not files:
            raise ConfigError(
                f"model.path={self.model_path}: no *.safetensors weights (learner=megatron)"
            )
        with contextlib.ExitStack() as stack:
            where: dict[str, Any] = {}
            for f in files:
                handle = stack.enter_context(safe_open(str(f), framework="pt"))
                where |= dict.fromkeys(handle.keys(), handle)

            def get(name: str) -> torch.Tensor:
                if name not in where:
                    raise ConfigError(f"model.path={self.model_path}: weights lack {name}")
                return where[name].get_tensor(name)

            params = dict(model.named_parameters())
            expected = set(megatron_names(self.arch, self.te))
            if set(params) != expected:
                raise RuntimeError(
                    f"Megatron model parameters differ from the mapping: "
                    f"{sorted(set(params) ^ expected)[:6]}"
                )
            with torch.no_grad():
                for name, p in params.items():
                    layout = tp_layout(name)
                    p.tensor_model_parallel = layout is not None
                    p.partition_dim, p.partition_stride = layout or (-1, 1)
                    full = hf_to_megatron(name, get, self.arch)
                    p.copy_(shard(full, layout, self.tp_rank, self.tp))

    def _new_optimizer(self) -> torch.optim.Optimizer:
        return new_adamw(self.model.parameters(), self.cfg)

    def data_shard(self) -> tuple[int, int]:
        return self.dp_rank, self.dp

    # ------------------------------------------------------------------ numerics

    def _forward(
        self, model: torch.nn.Module, sub: TrainBatch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[b, w]`` log-probs and entropies of ``sub`` (position 0 is 0)."""
        ids = sub.input_ids.to(self.device)
        b, w = ids.shape
        positions = torch.arange(w, device=self.device).unsqueeze(0).expand(b, w)
        causal = torch.triu(
            torch.ones(1, 1, w, w, dtype=torch.bool, device=self.device), diagonal=1
        )
        logits = model(ids, positions, causal)  # [b, w, V / tp]
        logp, entropy = logprobs_and_entropy(
            logits[:, :-1],
            ids[:, 1:],
            sub.temperature,
            self.tp_group,
            self.tp,
            self.arch.vocab_size,
        )
        zero = logp.new_zeros(b, 1)
        return torch.cat([zero, logp], dim=1), torch.cat([zero, entropy], dim=1)

    def _plan(self, batch: TrainBatch) -> list[list[int]]:
        """This rank's micro-batches (row indices of its share) by the token budget."""
        if batch.num_sequences == 0:
            return []
        return split_by_token_budget(batch.seq_lens, batch.micro_batch_tokens)

    def _sum_over_dp(self, t: torch.Tensor) -> torch.Tensor:
        if self.dp > 1:
            dist.all_reduce(t, group=self.dp_group)
        return t

    def _totals(self, batch: TrainBatch, plan: list[list[int]]) -> tuple[LossTotals, int]:
        """The step's loss totals and micro-batch count, summed over the data-parallel group."""
        t = torch.tensor(
            [float(batch.response_mask.sum()), batch.num_sequences, len(plan)],
            dtype=torch.float64,
            device=self.device,
        )
        tokens, seqs, micro = self._sum_over_dp(t).tolist()
        return LossTotals(tokens, int(seqs)), int(micro)

    @torch.no_grad()
    def _no_grad_pass(
        self, model: torch.nn.Module, batch: TrainBatch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logp = torch.zeros(batch.input_ids.shape, dtype=torch.float32, device=self.device)
        ent = torch.zeros_like(logp)
        for rows in self._plan(batch):
            sub = batch.select(rows)
            lp, h = self._forward(model, sub)
            mask = sub.attention_mask.to(self.device)
            idx = torch.as_tensor(rows, device=self.device)
            logp[idx, : lp.shape[1]] = lp * mask
            ent[idx, : h.shape[1]] = h * mask
        return logp.cpu(), ent.cpu()

    def compute_logprobs(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return self._no_grad_pass(self.model, batch)

    def compute_ref_logprobs(self, batch: TrainBatch) -> torch.Tensor:
        if self.reference is None:  # built on first use only: no KL, no reference model
            with torch.random.fork_rng(devices=[]):
                self.reference = self._build_model()
            self.reference.requires_grad_(False)
        return self._no_grad_pass(self.reference, batch)[0]

    def train_step(
        self, batch: TrainBatch, loss: PolicyLoss, entropy_coef: float
    ) -> dict[str, float]:
        if batch.old_logprobs is None:
            raise ValueError("train_step needs batch.old_logprobs")
        return self._train_step(batch, loss, entropy_coef)

    def on_policy_step(
        self,
        batch: TrainBatch,
        loss: PolicyLoss,
        entropy_coef: Callable[[torch.Tensor, torch.Tensor], float],
    ) -> dict[str, float]:
        """Fused when no rank has more than one micro-batch: the training forward's
        detached log-probs are the old log-probs (the policy has not changed yet), and the
        entropy coefficient, which needs the whole step's entropy, is reduced between that
        forward and its backward (a rank without rows contributes nothing). Otherwise the
        two-pass default."""
        (most,) = distributed.all_reduce([len(self._plan(batch))], "max")
        if most != 1:
            return super().on_policy_step(batch, loss, entropy_coef)
        return self._train_step(batch, loss, entropy_coef)

    def _train_step(
        self,
        batch: TrainBatch,
        loss: PolicyLoss,
        entropy_coef: float | Callable[[torch.Tensor, torch.Tensor], float],
    ) -> dict[str, float]:
        """A callable ``entropy_coef`` is the fused on-policy step (one process, one
        micro-batch): it gets the forward's detached log-probs and entropies first."""
        plan = self._plan(batch)
        totals, micro_batches = self._totals(batch, plan)
        weights = loss.token_weights(batch.response_mask, plan, totals)
        self.optimizer.zero_grad(set_to_none=True)
        sums: dict[str, float] = {"loss/pg": 0.0, "loss/entropy": 0.0}
        weight_total = float(weights.sum())
        fused = callable(entropy_coef)
        for rows in plan:
            sub = batch.select(rows).to(self.device)
            w = weights[torch.as_tensor(rows), : sub.input_ids.shape[1]].to(self.device)
            logp, entropy = self._forward(self.model, sub)
            if callable(entropy_coef):  # fused: old log-probs from this very forward
                entropy_coef = take_old_logprobs(batch, sub, logp, entropy, entropy_coef)
            backward_micro_batch(loss, sub, w, logp, entropy, entropy_coef, sums)
        if callable(entropy_coef):  # fused, and this rank has no rows: it still joins the
            empty = torch.zeros(batch.input_ids.shape)  # coefficient's reduction
            batch.old_logprobs = empty
            entropy_coef = float(entropy_coef(empty, empty))
        params = [p for p in self.model.parameters() if p.requires_grad]
        for p in params:
            if p.grad is None:  # a data-parallel rank without rows still joins the reduction
                p.grad = torch.zeros_like(p)
        if self.dp > 1:
            flat = torch.cat([p.grad.reshape(-1) for p in params])
            dist.all_reduce(flat, group=self.dp_group)
            offset = 0
            for p in params:
                p.grad.copy_(flat[offset : offset + p.numel()].view_as(p))
                offset += p.numel()
            # a rank without rows has no loss statistics: sum dicts, one per data-parallel index
            parts = distributed.all_gather_object((self.tp_rank, sums, weight_total))
            sums, weight_total = {}, 0.0
            for tp_rank, part, total in parts:
                if tp_rank == 0:
                    weight_total += total
                    for k, v in part.items():
                        sums[k] = sums.get(k, 0.0) + v
        grad_norm = self._clip_grad_norm(params)
        # the same on every rank (norm reduced over TP, sums over DP)
        return finish_step(
            self.optimizer, sums, weight_total, entropy_coef, grad_norm, micro_batches, fused
        )

    def _clip_grad_norm(self, params: list[torch.nn.Parameter]) -> float:
        """Clip to ``cfg.grad_clip`` by the global 2-norm (tensor-parallel shards summed over
        the TP group, replicated parameters counted once); returns the norm before clipping."""
        split = torch.zeros((), dtype=torch.float32, device=self.device)
        replicated = torch.zeros_like(split)
        for p in params:
            sq = p.grad.detach().float().pow(2).sum()
            if getattr(p, "tensor_model_parallel", False):
                split += sq
            else:
                replicated += sq
        if self.tp > 1:
            dist.all_reduce(split, group=self.tp_group)
        norm = (split + replicated).sqrt()
        coef = torch.clamp(self.cfg.grad_clip / (norm + 1e-6), max=1.0)
        for p in params:
            p.grad.detach().mul_(coef.to(p.grad.dtype))
        return float(norm)

    # ------------------------------------------------------------------ weights and state

    def _full_params(self) -> Iterator[tuple[str, torch.Tensor]]:
        """``(megatron name, full tensor)`` in the model's order on every rank; a collective
        within each TP group. Tensor-parallel shards travel a bucket at a time (one
        ``all_gather`` per at most ``sync_bucket_mib`` of local shards, in the parameters'
        dtype), so a rank holds at most one bucket of gathered tensors beyond its shards
        while the caller consumes them one by one. TP = 1: the parameters themselves."""
        named = list(self.model.named_parameters())
        if self.tp == 1:
            yield from ((n, p.detach()) for n, p in named)
            return
        limit = max(1, int(self.cfg.sync_bucket_mib)) << 20
        bucket: list[tuple[str, torch.Tensor]] = []
        for name, p in named:
            if tp_layout(name) is None:  # replicated: every rank has it whole
                yield from self._gather_bucket(bucket)
                bucket = []
                yield name, p.detach()
                continue
            if (
                bucket
                and sum(q.numel() * q.element_size() for _, q in bucket)
                + p.numel() * p.element_size()
                > limit
            ):
                yield from self._gather_bucket(bucket)
                bucket = []
            bucket.append((name, p))
        yield from self._gather_bucket(bucket)

    def _gather_bucket(
        self, bucket: list[tuple[str, torch.Tensor]]
    ) -> Iterator[tuple[str, torch.Tensor]]:
        if not bucket:
            return
        flat = torch.cat([p.detach().reshape(-1) for _, p in bucket])
        pieces = [torch.empty_like(flat) for _ in range(self.tp)]
        dist.all_gather(pieces, flat, group=self.tp_group)
        del flat
        sizes = [p.numel() for _, p in bucket]
        per_rank = [piece.split(sizes) for piece in pieces]
        for j, (name, p) in enumerate(bucket):
            parts = [per_rank[r][j].view_as(p) for r in range(self.tp)]
            yield name, unshard(parts, tp_layout(name))

    def named_weights(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Full weights under HF names on *every* rank (each feeds its own rollout engine),
        produced lazily: a collective within each TP group as the caller consumes them."""
        for name, full in self._full_params():
            yield from megatron_to_hf(name, full, self.arch)

    def save_pretrained(self, path: Path) -> None:
        """Collective; rank 0 writes the HF folder."""
        from safetensors.torch import save_file
        from transformers import AutoConfig, AutoTokenizer

        path = Path(path)
        tensors = {}
        for n, t in self.named_weights():
            if distributed.is_main():
                tensors[n] = t.detach().to("cpu").contiguous().clone()
        if not distributed.is_main():
            return
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if self.arch.tie_embeddings:
            tensors.pop("lm_head.weight", None)
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        config = AutoConfig.from_pretrained(self.model_path)
        config.dtype = DTYPES[self.cfg.dtype]
        config.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(self.model_path).save_pretrained(tmp)
        generation = self.model_path / "generation_config.json"
        if generation.is_file():
            shutil.copy(generation, tmp / generation.name)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)

    def reset_optimizer(self) -> None:
        self.optimizer = self._new_optimizer()

    def state_dict(self) -> dict[str, Any]:
        """Model and AdamW state as *full* tensors under Megatron names on rank 0 (gathered
        by the TP group of data-parallel index 0; ``{}`` elsewhere), so a checkpoint resumes
        at any world size and tensor-parallel size. Collective."""
        if self.dp_rank != 0:
            return {}
        opt = self.optimizer.state_dict()
        names = [n for n, _ in self.model.named_parameters()]
        index = dict(zip(names, opt["param_groups"][0]["params"], strict=True))
        model, moments = {}, {}
        cut = self.arch.vocab_size
        for name, full in self._full_params():
            rows = slice(0, cut if name in VOCAB_PARAMS else None)
            model[name] = full.detach()[rows].cpu().clone()
            state = opt["state"].get(index[name])
            if state is not None:
                moments[name] = {
                    k: (
                        gather(v, tp_layout(name), self.tp_group, self.tp)[rows].cpu().clone()
                        if k != "step"
                        else v.clone()
                    )
                    for k, v in state.items()
                }
        if not distributed.is_main():
            return {}
        groups = [{k: v for k, v in g.items() if k != "params"} for g in opt["param_groups"]]
        return {
            "format": STATE_FORMAT,
            "model": model,
            "optimizer": {"param_groups": groups, "state": moments},
        }

    sharded_checkpoints = True

    def save_sharded(self, folder: Path) -> None:
        """Each tensor-parallel rank of data-parallel index 0 writes its shards of every
        parameter and AdamW moment (:mod:`or1_plugins.megatron.sharded_checkpoint`); rank 0
        the index. No gather: a rank holds its own shards only."""
        named = list(self.model.named_parameters())
        opt = self.optimizer.state_dict()
        tensors, steps = [], {}
        for i, (name, p) in enumerate(named):
            layout = tp_layout(name)
            limit = self.arch.vocab_size if name in VOCAB_PARAMS else None
            tensors.append((name, p, layout, limit))
            for k, v in opt["state"].get(i, {}).items():
                if k == "step":
                    steps[name] = float(v)
                else:
                    tensors.append((f"{name}::{k}", v, layout, limit))
        groups = [{k: v for k, v in g.items() if k != "params"} for g in opt["param_groups"]]
        sharded_checkpoint.save(
            Path(folder),
            tensors,
            self.tp_rank,
            self.tp,
            distributed.all_gather_object,
            write=self.dp_rank == 0,
            extra={"param_groups": groups, "steps": steps},
            is_main=distributed.is_main(),
        )

    @torch.no_grad()
    def load_sharded(self, folder: Path) -> None:
        """Every rank fills its shards from the slices of the saved pieces it needs."""
        try:
            reader = sharded_checkpoint.Reader(Path(folder))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"learner checkpoint {folder}: {exc}") from None
        named = list(self.model.named_parameters())
        keys = reader.keys()
        missing = [n for n, _ in named if n not in keys]
        if missing:
            raise ConfigError(f"learner checkpoint {folder} lacks {missing[0]}")
        state: dict[int, dict[str, torch.Tensor]] = {}
        for i, (name, p) in enumerate(named):
            layout = tp_layout(name)
            reader.fill(name, p.data, layout, self.tp_rank, self.tp)
            moments = {}
            for k in ("exp_avg", "exp_avg_sq"):
                if f"{name}::{k}" in keys:
                    moments[k] = torch.zeros_like(p)
                    reader.fill(f"{name}::{k}", moments[k], layout, self.tp_rank, self.tp)
            if moments:
                moments["step"] = torch.tensor(reader.doc["steps"][name])
                state[i] = moments
        self.optimizer = self._new_optimizer()
        groups = [dict(g, params=list(range(len(named)))) for g in reader.doc["param_groups"]]
        self.optimizer.load_state_dict({"state": state, "param_groups": groups})

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Every rank passes the full state (read from the checkpoint memory-mapped) and keeps
        its own shards of each tensor."""
        if state.get("format") != STATE_FORMAT:
            raise ConfigError("learner checkpoint was not written by learner=megatron")
        self._load_state_dict(state)

    def _local(self, name: str, full: torch.Tensor) -> torch.Tensor:
        """This rank's shard of a saved full tensor (vocabulary padding redone for this TP)."""
        if name in VOCAB_PARAMS:
            full = pad_vocab_rows(full, self.arch)
        return shard(full, tp_layout(name), self.tp_rank, self.tp).to(self.device)

    @torch.no_grad()
    def _load_state_dict(self, state: dict[str, Any]) -> None:
        """Load full tensors, cut to this rank's shards here."""
        local = self._local
        named = list(self.model.named_parameters())
        for name, p in named:
            p.copy_(local(name, state["model"][name]))
        self.optimizer = self._new_optimizer()
        opt_state = {}
        for i, (name, _) in enumerate(named):
            if name in state["optimizer"]["state"]:
                opt_state[i] = {
                    k: (local(name, v) if k != "step" else v)
                    for k, v in state["optimizer"]["state"][name].items()
                }
        groups = [
            dict(g, params=list(range(len(named)))) for g in state["optimizer"]["param_groups"]
        ]
        self.optimizer.load_state_dict({"state": opt_state, "param_groups": groups})
