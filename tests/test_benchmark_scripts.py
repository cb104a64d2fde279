"""The benchmark scripts still match the code they drive: every ``or1`` / ``or1_plugins`` name
they import exists, and the files they reach by path are there (a module moved without them
is caught here, not an hour into a benchmark)."""

from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted((ROOT / "benchmarks").glob("*.py"))


def project_imports(path: Path) -> list[tuple[int, str, str | None]]:
    """``(line, module, name or None)`` of every absolute import of or1's packages."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in ("or1", "or1_plugins"):
                out += [(node.lineno, node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [
                (node.lineno, a.name, None)
                for a in node.names
                if a.name.split(".")[0] in ("or1", "or1_plugins")
            ]
    return out


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_what_a_benchmark_imports_exists(script: Path):
    for line, module, name in project_imports(script):
        where = f"{script.name}:{line}"
        mod = importlib.import_module(module)
        if name is not None and not hasattr(mod, name):
            assert importlib.util.find_spec(f"{module}.{name}"), f"{where}: {module}.{name}"


def test_trl_runner_finds_the_math_verifier():
    spec = importlib.util.spec_from_file_location("vs_trl", ROOT / "benchmarks" / "vs_trl.py")
    vs_trl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(vs_trl)
    source = (vs_trl.VERIFIER_DIR / "verify.py").read_text()
    assert "\ndef verify_one(" in source
