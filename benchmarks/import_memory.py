"""Resident memory of the modules each framework's training process must import, before any
model, data or engine: the floor under ``benchmarks/vs_trl.py``'s peak-memory comparison.

    .venv/bin/python benchmarks/import_memory.py

Each set is imported in a fresh Python process, module by module, and the process's RSS and
USS (pages only it holds) printed after each: or1's trainer process (default CPU engines: vLLM
rollout and Megatron-core learner in one process) in the project's venv, TRL's ``GRPOTrainer``
process in TRL's venvs made by ``vs_trl.py`` (HF ``generate``; and ``use_vllm``, if that venv
exists). The last line is ``or1_import_mib=<x> trl_import_mib=<y>`` (RSS after the last import).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SETS = {  # key: (label, venv, modules imported in order)
    "or1": (
        "or1 (vLLM + Megatron-core)",
        ROOT / ".venv",
        [
            "torch",
            "transformers",
            "omegaconf, hydra",
            "megatron.core",
            "vllm:LLM",
            "or1.rl.trainer",
        ],
    ),
    "trl": (
        "TRL (HF generate)",
        ROOT / "benchmarks" / ".venv",
        ["torch", "transformers", "datasets", "accelerate", "trl:GRPOTrainer"],
    ),
    "trl-vllm": (
        "TRL (use_vllm)",
        ROOT / "benchmarks" / ".venv-trl-vllm",
        ["torch", "transformers", "datasets", "accelerate", "trl:GRPOTrainer", "vllm:LLM"],
    ),
}

PROBE = """
import importlib, json, sys, psutil
p = psutil.Process()
def mib():
    m = p.memory_full_info()
    return m.rss / 2**20, m.uss / 2**20
rows = [["(python)", *mib()]]
for spec in sys.argv[1:]:
    for item in spec.split(","):
        name, _, attr = item.strip().partition(":")
        mod = importlib.import_module(name)
        if attr:
            getattr(mod, attr)
    rows.append([spec, *mib()])
print(json.dumps(rows))
"""


def measure(venv: Path, modules: list[str]) -> list[tuple[str, float, float]] | None:
    py = venv / "bin" / "python"
    if not py.is_file():
        return None
    proc = subprocess.run(
        [str(py), "-c", PROBE, *modules],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    if proc.returncode != 0:
        sys.exit(f"import_memory: error: {py}: {proc.stderr.strip().splitlines()[-1]}")
    return [tuple(r) for r in json.loads(proc.stdout.strip().splitlines()[-1])]


def main() -> None:
    last: dict[str, float] = {}
    for key, (label, venv, modules) in SETS.items():
        rows = measure(venv, modules)
        if rows is None:
            print(f"\n{label}: no venv at {venv} (benchmarks/vs_trl.py makes it); skipped")
            continue
        print(f"\n{label} ({venv.relative_to(ROOT)})")
        print("| after importing | RSS (MiB) | USS (MiB) |")
        print("|---|---|---|")
        for name, rss, uss in rows:
            print(f"| {name} | {rss:.0f} | {uss:.0f} |")
        last[key] = rows[-1][1]
    nan = float("nan")
    print(f"\nor1_import_mib={last.get('or1', nan):.0f} trl_import_mib={last.get('trl', nan):.0f}")


if __name__ == "__main__":
    main()
