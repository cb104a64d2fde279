"""The Megatron-core learner: ``GPTModel`` with tensor parallelism, data parallel on top.

One process per rank (``torchrun``; a plain ``or1-train`` is one process, TP=1). Every rank
runs the trainer loop and calls this learner's methods at the same points (SPMD). Ranks are
laid out by Megatron: ``world = tensor_parallel_size * context_parallel_size *
data_parallel_size``, tensor-parallel ranks consecutive.

Per step: each rank receives its data-parallel index's share of the step's sequences (the
trainer's token-balanced split; the same rows on every tensor-parallel rank of the index) and
cuts it into micro-batches by the token budget; with ``packing`` (the default) each
micro-batch is one row of its sequences laid end to end (THD, no padding; see
:mod:`or1_plugins.learner.megatron.packed_attention`), else the rows are right-padded to the longest.
The loss weights come from ``loss.token_weights`` with the step's totals summed over the
data-parallel group (the global normaliser), so gradients are *summed* over micro-batches and
data-parallel ranks. Log-probs and full-vocabulary entropy are computed in fp32 from
vocabulary-sharded logits (:mod:`or1_plugins.learner.megatron.vocab_parallel`).

Precision and optimiser are megatron.core's own: the model is wrapped in its
``DistributedDataParallel`` (gradients accumulate in a contiguous ``main_grad`` buffer, fp32 or
the parameters' dtype, reduced once per step over the data-parallel group) and stepped by
``get_megatron_optimizer``'s AdamW: fp32 weights, or bf16 weights with fp32 master weights and
fp32 moments (``precision=bf16``); with ``distributed_optimizer`` the master weights and moments
are sharded over the data-parallel group (each rank updates its range, then the weights are
gathered). Gradient clipping by the global norm is Megatron's too.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import shutil
import socket
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist

from or1.core.atomic import atomic_path
from or1.core.config import LearnerConfig
from or1.core.errors import ConfigError
from or1.core.interfaces import BuildContext, Learner, PolicyLoss
from or1.core.types import LossTotals, TrainBatch
from or1.launch import distributed
from or1.rl.batch import split_by_token_budget
from or1.rl.learner_step import MismatchSums, StepCoefficient, backward_micro_batch, finish_step
from or1.rl.lr_schedule import LrCounter, LrSchedule

from . import sharded_checkpoint
from .cpu_shims import apply_cpu_shims, cuda_names
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

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
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
MOMENTS = ("exp_avg", "exp_avg_sq")


class Master(NamedTuple):
    """The fp32 master weights one rank updates for one model parameter."""

    main: torch.Tensor  # 1-D over [start, end) with the distributed optimiser, else whole
    start: int
    end: int
    state: dict[str, Any]  # its AdamW state (exp_avg, exp_avg_sq, step), empty before a step
    own: bool  # a tensor of its own (bf16: the fp32 copy), not the parameter or a view of it


STATE_FORMAT = "or1-megatron-full-v1"


@dataclass
class MegatronLearnerConfig(LearnerConfig):
    """Megatron-core tensor-parallel learner (launch ``N = TP x CP x DP`` processes with torchrun)."""

    name: str = "megatron"
    tensor_parallel_size: int = (
        1  # must divide heads, KV heads, FFN width, vocab and the world size
    )
    context_parallel_size: int = 1  # > 1: each sequence split over CP ranks (GPU + TE only)
    precision: str = "fp32"  # fp32 | bf16 (bf16 compute, fp32 master weights and moments)
    distributed_optimizer: bool = False  # shard master weights + AdamW moments over DP ranks
    grad_reduce_in_fp32: bool = (
        True  # gradient buffer and its DP reduction in fp32 (bf16: else bf16)
    )
    offload_optimizer: bool = False  # GPU: master weights + moments in host memory between updates
    packing: bool = True  # micro-batches as packed sequences (THD, no padding); false: padded rows
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


def check_settings(cfg: Any, world: int) -> None:
    """The learner's settings that need no model: one-line ``ConfigError`` naming the key."""
    if cfg.recompute not in RECOMPUTE:
        raise ConfigError(f"learner.recompute={cfg.recompute} is not one of {', '.join(RECOMPUTE)}")
    if cfg.precision not in PRECISIONS:
        raise ConfigError(
            f"learner.precision={cfg.precision} is not one of {', '.join(PRECISIONS)}"
        )
    if cfg.precision == "bf16" and torch.cuda.is_available() and not torch.cuda.is_bf16_supported():
        raise ConfigError(
            f"learner.precision=bf16: GPU {torch.cuda.get_device_name()} has no bf16; use fp32"
        )
    tp, cp = int(cfg.tensor_parallel_size), int(cfg.context_parallel_size)
    for key, size in (("tensor_parallel_size", tp), ("context_parallel_size", cp)):
        if size < 1:
            raise ConfigError(f"learner.{key}={size} must be >= 1")
    if world % (tp * cp):
        hint = f"launch with torchrun --nproc-per-node {tp * cp}" if world == 1 else "change it"
        what = (
            f"tensor_parallel_size={tp}" if cp == 1 else f"tensor x context parallel size={tp * cp}"
        )
        raise ConfigError(
            f"learner.{what} does not divide the {world} process(es) of this launch ({hint})"
        )
    if cp > 1:
        if not torch.cuda.is_available():
            raise ConfigError(
                f"learner.context_parallel_size={cp} needs GPUs: megatron-core's context "
                "parallelism runs in Transformer Engine's attention (this machine has no GPU)"
            )
        if not _use_te(cfg.transformer_engine):
            raise ConfigError(
                f"learner.context_parallel_size={cp} needs Transformer Engine "
                "(learner.transformer_engine=auto|on with transformer_engine installed)"
            )
        if not cfg.packing:
            raise ConfigError(f"learner.context_parallel_size={cp} needs learner.packing=true")


class MegatronLearner(Learner):
    multiprocess = True
    """Runs under ``torchrun``: every rank builds it and calls it on its own share (SPMD)."""

    @classmethod
    def check_launch(cls, cfg: Any, world_size: int) -> None:
        check_settings(cfg, world_size)

    @classmethod
    def check_model(cls, cfg: Any, hf_config: Any, model_path: Path) -> None:
        """The mapped architectures and settings (:func:`~or1_plugins.learner.megatron.hf_mapping.
        architecture`: Qwen2 / Qwen2.5, Qwen3 dense, Llama 3; tensor-parallel divisibility),
        and safetensors weights (the learner reads no ``*.bin``)."""
        where = f"model.path={model_path}"
        architecture(hf_config, int(cfg.tensor_parallel_size), where, bool(cfg.pad_vocab))
        if not any(Path(model_path).glob("*.safetensors")):
            raise ConfigError(
                f"{where}: no *.safetensors weights (learner=megatron reads no *.bin)"
            )

    @classmethod
    def memory_estimate(cls, cfg: Any, query: Any) -> Any:
        """By calculation: :func:`or1_plugins.learner.megatron.memory.estimate`."""
        from .memory import estimate

        return estimate(cfg, query)

    def __init__(self, cfg: Any, ctx: BuildContext) -> None:
        from transformers import AutoConfig

        world = distributed.world_size()
        check_settings(cfg, world)
        tp, cp = int(cfg.tensor_parallel_size), int(cfg.context_parallel_size)
        hf_config = AutoConfig.from_pretrained(ctx.model_path)
        self.arch: Arch = architecture(hf_config, tp, f"model.path={ctx.model_path}", cfg.pad_vocab)
        self.cfg = cfg
        self.model_path = Path(ctx.model_path)
        self.tp, self.cp, self.world = tp, cp, world
        self.dp = world // (tp * cp)
        self.dtype = PRECISIONS[cfg.precision]
        self.te = _use_te(cfg.transformer_engine)
        self.device = (
            torch.device("cuda", torch.cuda.current_device())
            if torch.cuda.is_available()
            else torch.device("cpu")
        )
        # megatron's advice for GPU set-ups (Apex/TE missing, CUDA_DEVICE_MAX_CONNECTIONS, ...)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"megatron\.")
        quiet = logging.getLogger("megatron")  # its set-up banners, once per rank and wrapper
        if quiet.level == logging.NOTSET:
            quiet.setLevel(logging.WARNING)
        if self.device.type == "cpu":
            apply_cpu_shims()
        self._init_parallel()
        with torch.random.fork_rng(devices=[]):
            self.model = self._build_model()
        self.ddp = self._wrap(self.model)
        self.optimizer = self._new_optimizer()
        self.lr_schedule = LrCounter(LrSchedule.of(cfg))
        mains = self._main_params()
        self._load_hf(self.model, lambda p, t: self._assign(p, t, mains))
        self._place_optimizer("cpu")
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
        if ps.model_parallel_is_initialized() and (
            ps.get_tensor_model_parallel_world_size() != self.tp
            or ps.get_context_parallel_world_size() != self.cp
        ):
            ps.destroy_model_parallel()
        if not ps.model_parallel_is_initialized():
            ps.initialize_model_parallel(
                tensor_model_parallel_size=self.tp, context_parallel_size=self.cp
            )
        tensor_parallel.model_parallel_cuda_manual_seed(int(self.cfg.seed))
        self.tp_group = ps.get_tensor_model_parallel_group()
        self.dp_group = ps.get_data_parallel_group()
        self.tp_rank = ps.get_tensor_model_parallel_rank()
        self.dp_rank = ps.get_data_parallel_rank()
        self.cp_group = ps.get_context_parallel_group()
        self.cp_rank = ps.get_context_parallel_rank()
        # the distributed optimiser shards over data-parallel x context-parallel ranks
        self.dp_cp_group = ps.get_data_parallel_group(with_context_parallel=True)

    def _transformer_config(self) -> Any:
        import torch.nn.functional as F
        from megatron.core.transformer.transformer_config import TransformerConfig

        a = self.arch
        return TransformerConfig(
            num_layers=a.num_layers,
            hidden_size=a.hidden_size,
            ffn_hidden_size=a.ffn_hidden_size,
            num_attention_heads=a.num_heads,
            num_query_groups=a.num_kv_heads,
            kv_channels=a.head_dim,
            tensor_model_parallel_size=self.tp,
            context_parallel_size=self.cp,
            normalization="RMSNorm",
            layernorm_epsilon=a.norm_eps,
            add_bias_linear=False,
            add_qkv_bias=a.qkv_bias,
            qk_layernorm=a.qk_norm,  # Qwen3: RMSNorm over each head's q and k before RoPE
            gated_linear_unit=True,
            activation_func=F.silu,
            hidden_dropout=0.0,
            attention_dropout=0.0,
            params_dtype=self.dtype,
            pipeline_dtype=self.dtype,
            bf16=self.dtype == torch.bfloat16,
            # the loss weights already hold the global normaliser: DDP sums, never averages
            calculate_per_token_loss=True,
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

    def _build_model(self) -> torch.nn.Module:
        """The bare ``GPTModel`` (weights uninitialised) in the configured precision."""
        from megatron.core.models.gpt import GPTModel
        from megatron.core.models.gpt import gpt_layer_specs as specs

        from .packed_attention import PackedDotProductAttention

        a = self.arch
        self.tconfig = self._transformer_config()
        if self.te:
            spec = specs.get_gpt_layer_with_transformer_engine_spec(qk_layernorm=a.qk_norm)
        else:
            spec = specs.get_gpt_layer_local_spec(normalization="RMSNorm", qk_layernorm=a.qk_norm)
            spec.submodules.self_attention.submodules.core_attention = PackedDotProductAttention
        model = GPTModel(
            config=self.tconfig,
            transformer_layer_spec=spec,
            vocab_size=a.padded_vocab_size,
            max_sequence_length=a.max_positions,
            pre_process=True,
            post_process=True,
            parallel_output=True,
            share_embeddings_and_output_weights=a.tie_embeddings,
            position_embedding_type="rope",
            rotary_base=a.rope_theta,
            rope_scaling=a.rope_scaling_factor is not None,
            rope_scaling_factor=a.rope_scaling_factor or 8.0,
        ).to(self.device)
        params = dict(model.named_parameters())
        expected = set(megatron_names(self.arch, self.te))
        if set(params) != expected:
            raise RuntimeError(
                f"Megatron model parameters differ from the mapping: "
                f"{sorted(set(params) ^ expected)[:6]}"
            )
        for name, p in params.items():
            layout = tp_layout(name)
            p.tensor_model_parallel = layout is not None
            p.partition_dim, p.partition_stride = layout or (-1, 1)
        model.train()
        return model

    def _half(self, model: torch.nn.Module) -> torch.nn.Module:
        """bf16: Megatron's ``Float16Module`` around ``model`` (its logits come out in fp32)."""
        if self.dtype == torch.float32:
            return model
        from megatron.core.transformer.module import Float16Module

        return Float16Module(self.tconfig, model)

    def _wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        from megatron.core.distributed import (
            DistributedDataParallel,
            DistributedDataParallelConfig,
        )

        ddp_config = DistributedDataParallelConfig(
            grad_reduce_in_fp32=bool(self.cfg.grad_reduce_in_fp32),
            overlap_grad_reduce=False,
            use_distributed_optimizer=bool(self.cfg.distributed_optimizer),
        )
        return DistributedDataParallel(self.tconfig, ddp_config, self._half(model))

    def _new_optimizer(self) -> Any:
        from megatron.core.optimizer import OptimizerConfig, get_megatron_optimizer

        cfg = self.cfg
        config = OptimizerConfig(
            optimizer="adam",
            lr=float(cfg.lr),
            min_lr=float(cfg.lr),
            weight_decay=float(cfg.weight_decay),
            adam_beta1=float(cfg.betas[0]),
            adam_beta2=float(cfg.betas[1]),
            adam_eps=1e-8,
            clip_grad=float(cfg.grad_clip),
            bf16=self.dtype == torch.bfloat16,
            params_dtype=self.dtype,
            use_distributed_optimizer=bool(cfg.distributed_optimizer),
        )
        with cuda_names():
            # config_overrides={}: weight decay on every parameter, as the reference learner
            return get_megatron_optimizer(config, [self.ddp], config_overrides={})

    def _load_hf(
        self, model: torch.nn.Module, put: Callable[[torch.nn.Parameter, torch.Tensor], None]
    ) -> None:
        """Fill ``model``'s shards from the HF safetensors files, one tensor at a time
        (``put(parameter, this rank's fp32 shard)``)."""
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

            for name, p in model.named_parameters():
                full = hf_to_megatron(name, get, self.arch).float()
                put(p, shard(full, tp_layout(name), self.tp_rank, self.tp).to(self.device))

    # ------------------------------------------------------------------ optimiser state

    def _optimizers(self) -> list[Any]:
        return list(getattr(self.optimizer, "chained_optimizers", [self.optimizer]))

    def _main_params(self) -> dict[int, Master]:
        """``id(model parameter) ->`` :class:`Master`: the master weights this rank updates
        for that parameter, over a flat range ``[start, end)`` of it (the whole parameter
        unless the optimiser is distributed; parameters wholly in other ranks' ranges are
        absent), and their AdamW state. fp32: the main tensor is the parameter (or a view)."""
        from megatron.core.optimizer.distrib_optimizer import DistributedOptimizer
        from megatron.core.optimizer.optimizer import Float16OptimizerWithFloat16Params

        storages = {q.untyped_storage().data_ptr() for q in self.model.parameters()}
        out: dict[int, Master] = {}

        def add(o: Any, p: torch.Tensor, main: torch.Tensor, start: int, end: int) -> None:
            own = main.untyped_storage().data_ptr() not in storages
            out[id(p)] = Master(main, start, end, o.optimizer.state[main], own)

        for o in self._optimizers():
            if isinstance(o, DistributedOptimizer):
                pairs = itertools.chain(
                    zip(o.model_float16_groups, o.shard_fp32_from_float16_groups, strict=True),
                    zip(o.model_fp32_groups, o.shard_fp32_groups, strict=True),
                )
                for models, mains in pairs:
                    for p, main in zip(models, mains, strict=True):
                        r = o._get_model_param_range_map(p)["param"]
                        add(o, p, main, r.start, r.end)
            elif isinstance(o, Float16OptimizerWithFloat16Params):
                for models, mains in zip(o.float16_groups, o.fp32_from_float16_groups, strict=True):
                    for p, main in zip(models, mains, strict=True):
                        add(o, p, main, 0, p.numel())
                for group in o.fp32_from_fp32_groups:
                    for p in group:
                        add(o, p, p, 0, p.numel())
            else:  # FP32Optimizer: the torch optimiser steps the parameters themselves
                for group in o.optimizer.param_groups:
                    for p in group["params"]:
                        add(o, p, p, 0, p.numel())
        return out

    @torch.no_grad()
    def _assign(
        self,
        p: torch.nn.Parameter,
        local: torch.Tensor,
        mains: dict[int, Master],
        moments: dict[str, torch.Tensor] | None = None,
        step: float = 0.0,
    ) -> None:
        """Set a parameter to ``local`` (this rank's fp32 shard of it): the model's weights
        (rounded to their dtype) and this rank's range of the master weights (``mains``:
        :meth:`_main_params`); with ``moments``, this rank's range of the AdamW moments and
        the parameter's own ``step`` tensor."""
        p.copy_(local)
        if id(p) not in mains:
            return
        m = mains[id(p)]
        m.main.copy_(local.reshape(-1)[m.start : m.end].view_as(m.main))
        if moments is not None:
            for k in MOMENTS:
                flat = moments[k].reshape(-1)[m.start : m.end]
                m.state[k] = flat.view_as(m.main).to(m.main).clone()
            m.state["step"] = torch.tensor(float(step))

    def data_shard(self) -> tuple[int, int]:
        return self.dp_rank, self.dp

    # ------------------------------------------------------------------ numerics

    def _forward(
        self, module: torch.nn.Module, sub: TrainBatch
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``[b, w]`` fp32 log-probs and entropies of ``sub`` (position 0 is 0), and with
        context parallelism the ``[b, w]`` mask of the positions this CP rank computed (the
        others are 0 here); None without."""
        ids = sub.input_ids.to(self.device)
        b, w = ids.shape
        if self.cp > 1:
            return self._forward_cp(module, sub, ids)
        if not self.cfg.packing:
            positions = torch.arange(w, device=self.device).unsqueeze(0).expand(b, w)
            causal = torch.triu(
                torch.ones(1, 1, w, w, dtype=torch.bool, device=self.device), diagonal=1
            )
            logits = module(ids, positions, causal)  # [b, w, V / tp]
            logp, entropy = self._logprobs(logits[:, :-1], ids[:, 1:], sub.temperature)
            zero = logp.new_zeros(b, 1)
            return torch.cat([zero, logp], dim=1), torch.cat([zero, entropy], dim=1), None
        lens = [int(n) for n in sub.seq_lens]
        packed = torch.cat([ids[i, :n] for i, n in enumerate(lens)]).unsqueeze(0)  # [1, t]
        params, cu = self._packed_params(lens)
        positions = torch.cat([torch.arange(n, device=self.device) for n in lens]).unsqueeze(0)
        logits = module(packed, positions, None, packed_seq_params=params)  # [1, t, V / tp]
        logp, entropy = self._logprobs(logits[:, :-1], packed[:, 1:], sub.temperature)
        # token j >= 1 of row i was predicted at packed position cu[i] + j - 1
        rows = torch.cat([torch.full((n - 1,), i, device=self.device) for i, n in enumerate(lens)])
        cols = torch.cat([torch.arange(1, n, device=self.device) for n in lens])
        at = torch.cat(
            [torch.arange(s, s + n - 1, device=self.device) for s, n in zip(cu, lens, strict=True)]
        )
        out_logp = logp.new_zeros(b, w)
        out_ent = logp.new_zeros(b, w)
        out_logp[rows, cols] = logp[0, at]
        out_ent[rows, cols] = entropy[0, at]
        return out_logp, out_ent, None

    def _forward_cp(
        self, module: torch.nn.Module, sub: TrainBatch, ids: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Context parallelism (GPU, Transformer Engine): the packed row, each sequence padded
        to a multiple of ``2 * cp``, and this CP rank's load-balanced chunks of it
        (:mod:`or1_plugins.learner.megatron.context_parallel`); TE's attention exchanges keys and
        values over the CP group. Returns what :meth:`_forward` does, for this rank's tokens."""
        from .context_parallel import padded_lengths, partition

        b, w = ids.shape
        lens = [int(n) for n in sub.seq_lens]
        padded = padded_lengths(lens, self.cp)
        total = sum(padded)
        row = ids.new_zeros(total)
        targets = ids.new_zeros(total)
        positions = ids.new_zeros(total)
        where_row = ids.new_full(
            (total,), -1
        )  # position p predicts token where_col[p] of row where_row[p]
        where_col = ids.new_zeros(total)
        start = 0
        for i, (n, m) in enumerate(zip(lens, padded, strict=True)):
            row[start : start + n] = ids[i, :n]
            targets[start : start + n - 1] = ids[i, 1:n]
            positions[start : start + m] = torch.arange(m, device=self.device)
            where_row[start : start + n - 1] = i
            where_col[start : start + n - 1] = torch.arange(1, n, device=self.device)
            start += m
        mine = partition(lens, self.cp, self.cp_rank).to(self.device)
        params, _ = self._packed_params(lens, padded)
        logits = module(
            row[mine].unsqueeze(0), positions[mine].unsqueeze(0), None, packed_seq_params=params
        )
        logp, entropy = self._logprobs(logits, targets[mine].unsqueeze(0), sub.temperature)
        keep = where_row[mine] >= 0
        r, c = where_row[mine][keep], where_col[mine][keep]
        out_logp, out_ent = logp.new_zeros(b, w), logp.new_zeros(b, w)
        held = torch.zeros(b, w, dtype=torch.bool, device=self.device)
        out_logp[r, c] = logp[0, keep]
        out_ent[r, c] = entropy[0, keep]
        held[r, c] = True
        return out_logp, out_ent, held

    def _packed_params(
        self, lens: list[int], padded: list[int] | None = None
    ) -> tuple[Any, list[int]]:
        """Megatron's THD ``PackedSeqParams`` for sequences of ``lens`` tokens laid end to
        end (with context parallelism each padded to ``padded``, the layout TE's CP attention
        takes), and the sequences' start offsets in the packed row."""
        from megatron.core.packed_seq_params import PackedSeqParams

        def offsets(ns: list[int]) -> torch.Tensor:
            return torch.tensor(
                [0, *itertools.accumulate(ns)], dtype=torch.int32, device=self.device
            )

        cu = offsets(lens)
        extra = {}
        if padded is not None:
            extra = {
                "cu_seqlens_q_padded": offsets(padded),
                "cu_seqlens_kv_padded": offsets(padded),
            }
        longest = max(padded or lens)
        params = PackedSeqParams(
            qkv_format="thd",
            cu_seqlens_q=cu,
            cu_seqlens_kv=cu,
            max_seqlen_q=longest,
            max_seqlen_kv=longest,
            **extra,
        )
        return params, cu.tolist()[:-1]

    def _logprobs(
        self, logits: torch.Tensor, targets: torch.Tensor, temperature: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return logprobs_and_entropy(
            logits.float(), targets, temperature, self.tp_group, self.tp, self.arch.vocab_size
        )

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
        self, module: torch.nn.Module, batch: TrainBatch
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logp = torch.zeros(batch.input_ids.shape, dtype=torch.float32, device=self.device)
        ent = torch.zeros_like(logp)
        for rows in self._plan(batch):
            sub = batch.select(rows)
            lp, h, held = self._forward(module, sub)
            if held is not None:  # each position was computed by exactly one CP rank
                both = torch.stack([lp * held, h * held])
                dist.all_reduce(both, group=self.cp_group)
                lp, h = both[0], both[1]
            mask = sub.attention_mask.to(self.device)
            idx = torch.as_tensor(rows, device=self.device)
            logp[idx, : lp.shape[1]] = lp * mask
            ent[idx, : h.shape[1]] = h * mask
        return logp.cpu(), ent.cpu()

    def compute_logprobs(self, batch: TrainBatch) -> tuple[torch.Tensor, torch.Tensor]:
        return self._no_grad_pass(self.ddp, batch)

    def compute_ref_logprobs(self, batch: TrainBatch) -> torch.Tensor:
        if self.reference is None:  # built on first use only: no KL, no reference model
            with torch.random.fork_rng(devices=[]):
                model = self._build_model()
            self._load_hf(model, lambda p, t: p.data.copy_(t))
            model.requires_grad_(False)
            self.reference = self._half(model)
        return self._no_grad_pass(self.reference, batch)[0]

    def train_step(
        self, batch: TrainBatch, loss: PolicyLoss, entropy_coef: float
    ) -> dict[str, float]:
        if batch.old_logprobs is None:
            raise ValueError("train_step needs batch.old_logprobs")
        return self._train_step(batch, loss, StepCoefficient.given(entropy_coef))

    def fuses_old_logprobs(self, batch: TrainBatch) -> bool:
        """When no rank has more than one micro-batch and there is no context parallelism
        (each CP rank's forward holds only its tokens); the entropy coefficient, which needs
        the whole step's entropy, is then reduced between the forward and its backward (a
        rank without rows contributes nothing). Collective."""
        (most,) = distributed.all_reduce([len(self._plan(batch))], "max")
        return most == 1 and self.cp == 1

    def fused_train_step(
        self, batch: TrainBatch, loss: PolicyLoss, coefficient: StepCoefficient
    ) -> dict[str, float]:
        return self._train_step(batch, loss, coefficient)

    def _train_step(
        self, batch: TrainBatch, loss: PolicyLoss, coefficient: StepCoefficient
    ) -> dict[str, float]:
        """This rank's forward and backward of one optimisation step, the gradient reduction
        over the data-parallel group and the update; the entropy coefficient (and, fused,
        the old log-probs) from ``coefficient``."""
        from megatron.core.distributed import finalize_model_grads

        plan = self._plan(batch)
        totals, micro_batches = self._totals(batch, plan)
        weights = loss.token_weights(batch.response_mask, plan, totals)
        self.ddp.zero_grad_buffer()
        self.optimizer.zero_grad()
        sums: dict[str, float] = {"loss/pg": 0.0, "loss/entropy": 0.0}
        weight_total = float(weights.sum())
        for rows in plan:
            sub = batch.select(rows).to(self.device)
            w = weights[torch.as_tensor(rows), : sub.input_ids.shape[1]].to(self.device)
            logp, entropy, held = self._forward(self.ddp, sub)
            if held is not None:  # CP: this rank's tokens only; the others weigh nothing here
                w = w * held
                logp = torch.where(held, logp, sub.old_logprobs.to(logp))
            coef = coefficient.of_micro_batch(batch, sub, logp, entropy)
            backward_micro_batch(loss, sub, w, logp, entropy, coef, sums)
        coef = coefficient.of_step(batch)  # a fused rank without rows joins its reduction
        # the main_grad buffers summed over the data-parallel group (a rank without rows
        # adds zeros); with the distributed optimiser, reduce-scattered to each rank's range
        finalize_model_grads([self.ddp])
        # this rank's share against its sampling log-probs (its old log-probs are whole on
        # every context-parallel rank, so only one of them counts below)
        mismatch = MismatchSums.of(batch)
        if self.dp * self.cp > 1:
            # a rank without rows has no loss statistics: sum dicts, one per data-parallel
            # index (and context-parallel rank: each holds its tokens' part)
            parts = distributed.all_gather_object(
                (self.tp_rank, self.cp_rank, sums, weight_total, mismatch)
            )
            sums, weight_total, mismatch = {}, 0.0, MismatchSums()
            for tp_rank, cp_rank, part, total, theirs in parts:
                if tp_rank == 0:
                    weight_total += total
                    for k, v in part.items():
                        sums[k] = sums.get(k, 0.0) + v
                    if cp_rank == 0:
                        mismatch = mismatch + theirs
        self._place_optimizer(self.device)  # offloaded: back on the GPU for the update
        with cuda_names():
            self.optimizer.prepare_grads()
            grad_norm = float(self.optimizer.get_grad_norm())  # the same on every rank
        metrics = finish_step(
            self.optimizer,
            sums,
            weight_total,
            coef,
            grad_norm,
            micro_batches,
            coefficient.fused,
            step=lambda: self._clip_and_step(grad_norm),
            mismatch=mismatch,
            lr_schedule=self.lr_schedule,  # Megatron's own scheduler is not used
        )
        self._place_optimizer("cpu")
        return metrics

    def _place_optimizer(self, device: torch.device | str) -> None:
        """``learner.offload_optimizer`` on a GPU: move the optimiser's own tensors (fp32
        master weights where they are not the model's parameters, AdamW moments) to
        ``device``: host memory between updates, the GPU for the update. No-op otherwise."""
        if not self.cfg.offload_optimizer or self.device.type != "cuda":
            return
        for m in self._main_params().values():
            if m.own:
                m.main.data = m.main.data.to(device)
            for k in MOMENTS:
                if k in m.state:
                    m.state[k] = m.state[k].to(device)

    def _clip_and_step(self, grad_norm: float) -> None:
        """Clip to ``cfg.grad_clip`` by the global norm already computed, then Megatron's
        update (master weights, copied back to the model's; gathered when distributed)."""
        from megatron.core.optimizer.clip_grads import clip_grad_by_total_norm_fp32

        with cuda_names():
            if self.cfg.grad_clip > 0:
                for o in self._optimizers():
                    clip_grad_by_total_norm_fp32(o.get_parameters(), self.cfg.grad_clip, grad_norm)
            self.optimizer.step_with_ready_grads()

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
        produced lazily: a collective within each TP group as the caller consumes them. In
        the model's precision (bf16: the rounded weights the learner computes with)."""
        for name, full in self._full_params():
            yield from megatron_to_hf(name, full, self.arch)

    def save_pretrained(self, path: Path) -> None:
        """Collective; rank 0 writes the HF folder (in the model's precision)."""
        from safetensors.torch import save_file
        from transformers import AutoConfig, AutoTokenizer

        path = Path(path)
        tensors = {}
        for n, t in self.named_weights():
            if distributed.is_main():
                tensors[n] = t.detach().to("cpu").contiguous().clone()
        if not distributed.is_main():
            return
        if self.arch.tie_embeddings:
            tensors.pop("lm_head.weight", None)
        with atomic_path(path) as tmp:
            tmp.mkdir(parents=True)
            save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
            config = AutoConfig.from_pretrained(self.model_path)
            config.dtype = self.dtype
            config.save_pretrained(tmp)
            AutoTokenizer.from_pretrained(self.model_path).save_pretrained(tmp)
            generation = self.model_path / "generation_config.json"
            if generation.is_file():
                shutil.copy(generation, tmp / generation.name)

    def reset_optimizer(self) -> None:
        """Fresh AdamW moments; the master weights stay."""
        for o in self._optimizers():
            o.optimizer.state.clear()

    def optimizer_state_bytes(self) -> int:
        """Bytes of optimiser state on this rank: AdamW moments, and fp32 master weights
        where they are not the model's own parameters (bf16)."""
        total = 0
        for m in self._main_params().values():
            tensors = [m.state[k] for k in MOMENTS if k in m.state] + ([m.main] if m.own else [])
            total += sum(t.numel() * t.element_size() for t in tensors)
        return total

    def _fp32_state(
        self,
    ) -> Iterator[tuple[str, torch.nn.Parameter, dict[str, torch.Tensor], float]]:
        """Per parameter, in the model's order: this TP rank's fp32 master weights
        (``"param"``) and AdamW moments (absent before the first step) in the parameter's
        own shape, and its AdamW step. Distributed optimiser: each rank's ranges are summed
        over the data-parallel group into whole tensors (a collective per parameter)."""
        mains = self._main_params()
        spread = bool(self.cfg.distributed_optimizer) and self.dp * self.cp > 1
        local_step = max((float(m.state.get("step", 0.0)) for m in mains.values()), default=0.0)
        (step,) = distributed.all_reduce([local_step], "max")
        keys = ("param", *MOMENTS) if step > 0 else ("param",)
        for name, p in self.model.named_parameters():
            m = mains.get(id(p))
            out = {}
            for k in keys:
                src = None if m is None else (m.main if k == "param" else m.state[k])
                if spread:
                    flat = torch.zeros(p.numel(), dtype=torch.float32, device=self.device)
                    if src is not None:
                        flat[m.start : m.end] = src.detach().reshape(-1)
                    dist.all_reduce(flat, group=self.dp_cp_group)
                else:
                    flat = src.detach().reshape(-1).float()
                out[k] = flat.view(p.shape)
            yield name, p, out, step

    def state_dict(self) -> dict[str, Any]:
        """fp32 master weights and AdamW state as *full* tensors under Megatron names on
        rank 0 (gathered by the TP group of data-parallel index 0; ``{}`` elsewhere), so a
        checkpoint resumes at any world size, tensor-parallel size and precision. Collective."""
        model, moments = {}, {}
        cut = self.arch.vocab_size
        for name, _, tensors, step in self._fp32_state():
            if self.dp_rank != 0 or self.cp_rank != 0:
                continue
            rows = slice(0, cut if name in VOCAB_PARAMS else None)
            full = {
                k: gather(v, tp_layout(name), self.tp_group, self.tp)[rows].cpu().clone()
                for k, v in tensors.items()
            }
            model[name] = full.pop("param")
            if full:
                moments[name] = full | {"step": torch.tensor(step)}
        if not distributed.is_main():
            return {}
        return {
            "format": STATE_FORMAT,
            "model": model,
            "optimizer": {"state": moments},
            "lr_updates": self.lr_schedule.updates,
        }

    sharded_checkpoints = True

    def save_sharded(self, folder: Path) -> None:
        """Each tensor-parallel rank of data-parallel index 0 writes its shards of every
        parameter's fp32 master weights and AdamW moments
        (:mod:`or1_plugins.learner.megatron.sharded_checkpoint`); rank 0 the index. No TP gather: a
        rank holds its own shards only (with the distributed optimiser, assembled over DP)."""
        tensors, steps = [], {}
        for name, _, state, step in self._fp32_state():
            layout = tp_layout(name)
            limit = self.arch.vocab_size if name in VOCAB_PARAMS else None
            tensors.append((name, state["param"], layout, limit))
            if all(k in state for k in MOMENTS):
                tensors += [(f"{name}::{k}", state[k], layout, limit) for k in MOMENTS]
                steps[name] = step
        sharded_checkpoint.save(
            Path(folder),
            tensors,
            self.tp_rank,
            self.tp,
            distributed.all_gather_object,
            write=self.dp_rank == 0 and self.cp_rank == 0,
            extra={
                "precision": self.cfg.precision,
                "steps": steps,
                "lr_updates": self.lr_schedule.updates,
            },
            is_main=distributed.is_main(),
        )

    @torch.no_grad()
    def load_sharded(self, folder: Path) -> None:
        """Every rank fills its shards from the slices of the saved pieces it needs."""
        try:
            reader = sharded_checkpoint.Reader(Path(folder))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"learner checkpoint {folder}: {exc}") from None
        keys = reader.keys()
        named = list(self.model.named_parameters())
        missing = [n for n, _ in named if n not in keys]
        if missing:
            raise ConfigError(f"learner checkpoint {folder} lacks {missing[0]}")
        self.reset_optimizer()
        mains = self._main_params()
        for name, p in named:
            layout = tp_layout(name)
            local = torch.zeros(p.shape, dtype=torch.float32, device=self.device)
            reader.fill(name, local, layout, self.tp_rank, self.tp)
            moments = None
            if all(f"{name}::{k}" in keys for k in MOMENTS):
                moments = {}
                for k in MOMENTS:
                    moments[k] = torch.zeros_like(local)
                    reader.fill(f"{name}::{k}", moments[k], layout, self.tp_rank, self.tp)
            self._assign(p, local, mains, moments, reader.doc["steps"].get(name, 0.0))
        self.lr_schedule.load(
            reader.doc.get("lr_updates", 0)
        )  # absent: written before the schedule

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Every rank passes the full state (read from the checkpoint memory-mapped) and keeps
        its own shards of each tensor."""
        if state.get("format") != STATE_FORMAT:
            raise ConfigError("learner checkpoint was not written by learner=megatron")
        self._load_state_dict(state)

    def _local(self, name: str, full: torch.Tensor) -> torch.Tensor:
        """This rank's fp32 shard of a saved full tensor (vocabulary padding redone for this TP)."""
        if name in VOCAB_PARAMS:
            full = pad_vocab_rows(full, self.arch)
        return shard(full.float(), tp_layout(name), self.tp_rank, self.tp).to(self.device)

    @torch.no_grad()
    def _load_state_dict(self, state: dict[str, Any]) -> None:
        """Load full tensors, cut to this rank's shards here."""
        self.reset_optimizer()
        mains = self._main_params()
        saved = state["optimizer"]["state"]
        for name, p in self.model.named_parameters():
            moments = step = None
            if name in saved:
                moments = {k: self._local(name, saved[name][k]) for k in MOMENTS}
                step = float(saved[name]["step"])
            self._assign(p, self._local(name, state["model"][name]), mains, moments, step or 0.0)
        self.lr_schedule.load(state.get("lr_updates", 0))
