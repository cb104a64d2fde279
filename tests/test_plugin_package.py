"""A third-party plugin package, installed for real: ``examples/plugin-example`` is pip-installed
into a throw-away venv layered over the project's (so ``.venv`` itself is never modified), then
found by ``or1-plugins`` and used, verifier, filter and config files, by a short ``or1-train``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

from tests.conftest import FAST_RUN, ROOT, read_jsonl

EXAMPLE = ROOT / "examples" / "plugin-example"
DIST = "or1-example-plugin"


@pytest.fixture(scope="module")
def plugin_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv that sees everything in the project's venv (a .pth adds its site-packages, whose
    own .pth files, or1's editable install included, are processed too) plus the example
    package, installed from a copy with pip, offline. Returns its python."""
    root = tmp_path_factory.mktemp("plugin-venv")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    parent = sysconfig.get_paths()["purelib"]
    Path(purelib, "or1_parent_venv.pth").write_text(f"import site; site.addsitedir({parent!r})\n")
    source = root / "plugin-example"
    shutil.copytree(
        EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    proc = subprocess.run(
        [
            str(python),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            str(source),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    yield python
    # the project venv never saw the package
    with pytest.raises(metadata.PackageNotFoundError):
        metadata.distribution(DIST)


def run_module(
    python: Path, module: str, args: list[str], cwd: Path
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-m", module, *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_example_package_own_tests_pass_when_installed(plugin_venv, tmp_path):
    tests = tmp_path / "tests"
    shutil.copytree(EXAMPLE / "tests", tests)
    proc = run_module(
        plugin_venv,
        "pytest",
        ["-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tests)],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert re.search(r"\b6 passed\b", proc.stdout), proc.stdout[-500:]


def test_or1_plugins_lists_the_installed_package(plugin_venv, tmp_path):
    proc = run_module(plugin_venv, "or1.cli.plugins", ["--json"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    info = json.loads(proc.stdout)
    packages = {p["package"]: p for p in info["packages"]}
    example = packages[DIST]
    assert example["version"] == "0.1.0"
    (plugin,) = example["plugins"]
    assert plugin["module"] == "or1_example_plugin"
    assert plugin["components"] == {"verifier": ["close_number"], "filter": ["reward_band"]}
    assert set(plugin["hooks"]) == {"or1_register"}
    (config,) = example["config"]
    assert config["search_path"] == "pkg://or1_example_plugin.conf"
    assert config["files"] == {
        "filter": ["reward_band"],
        "verifier": ["close_number", "close_number_lenient"],
    }
    assert info["problems"] == []
    points = {h["group"]: h for h in info["hook_points"]}
    verifiers = points["verifier"]["components"]
    assert verifiers["close_number"] == DIST and verifiers["math"] == "or1"
    # the human-readable listing says the same
    text = run_module(plugin_venv, "or1.cli.plugins", [], tmp_path).stdout
    assert f"{DIST} 0.1.0" in text and "verifier: close_number, close_number_lenient" in text


def closeness(response: str, truth: float, rel_tolerance: float) -> float:
    """The example verifier's reward, recomputed here from its documented formula."""
    numbers = re.findall(r"-?\d+(?:\.\d+)?", response.split("</think>")[-1])
    if not numbers:
        return 0.0
    return max(0.0, 1.0 - abs(float(numbers[-1]) - truth) / (rel_tolerance * max(abs(truth), 1.0)))


def test_installed_components_and_config_files_are_used_by_a_run(plugin_venv, tmp_path, cache_dir):
    run_dir = tmp_path / "run"
    args = [
        f"hydra.run.dir={run_dir}",
        "verifier=close_number_lenient",
        "filter=reward_band",
        "trainer.total_steps=1",
        "trainer.dump_samples=true",
        "trainer.eval_at_start=false",
        "trainer.export_final=false",
        *FAST_RUN,
    ]
    proc = run_module(plugin_venv, "or1.cli.train", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]

    from omegaconf import OmegaConf

    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    # values that exist only in the plugin's YAML files, not in its schemas' defaults
    assert cfg.verifier.name == "close_number" and cfg.verifier.rel_tolerance == 1.0
    assert cfg.filter.name == "reward_band" and (cfg.filter.min_mean, cfg.filter.max_mean) == (
        0.1,
        0.9,
    )

    samples = read_jsonl(run_dir / "samples.jsonl")
    assert len(samples) == 4 * 4
    groups: dict[str, list[dict]] = {}
    for s in samples:
        a, op, b = re.fullmatch(r"What is (\d+) ([-+*]) (\d+)\?", s["prompt"]).groups()
        truth = {"+": int(a) + int(b), "-": int(a) - int(b), "*": int(a) * int(b)}[op]
        assert s["reward"] == pytest.approx(closeness(s["response"], truth, 1.0), abs=1e-9)
        groups.setdefault(s["group"], []).append(s)
    # partial credit: only the plugin's verifier gives rewards strictly between 0 and 1
    assert any(0.0 < s["reward"] < 1.0 for s in samples)
    kept = 0
    for members in groups.values():
        mean = sum(s["reward"] for s in members) / len(members)
        assert {s["kept"] for s in members} == {0.1 <= mean <= 0.9}
        kept += 0.1 <= mean <= 0.9
    (metrics,) = read_jsonl(run_dir / "metrics.jsonl")
    assert metrics["filter/groups_kept"] == kept
