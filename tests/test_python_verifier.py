"""The ``python`` verifier: a user's reward file scored in killable workers, its contract, its
bad-input errors, and an ``or1-train`` run whose rewards come from the user's function."""

from __future__ import annotations

import math
import os
import signal
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from or1.core.errors import ConfigError
from or1.core.interfaces import RewardVerifier
from or1.core.registry import get_registry
from or1_plugins.verifier.python import PythonVerifier, PythonVerifierConfig
from or1_plugins.verifier.python.verifier import check_reward_file, jsonable
from or1_plugins.verifier.python.worker import as_score
from tests.conftest import FAST_RUN, read_jsonl, run_cli

TIMEOUT_S = 1.0
SLACK_S = 2.0  # elapsed-time margin on a shared 2-core machine

REWARD = """
import os
import re
import time

LOG = os.environ.get("OR1_TEST_IMPORT_LOG")
if LOG:  # one line per import: the file is loaded once per worker
    with open(LOG, "a") as f:
        f.write(f"{os.getpid()}\\n")


def score(response, row):
    if response == "spin":  # pure Python: the worker's own alarm stops it
        while True:
            pass
    if response == "stubborn":  # swallows the alarm: only the kill stops it
        while True:
            try:
                time.sleep(60)
            except BaseException:
                pass
    if response == "raise":
        raise ValueError("bad response")
    if response == "exit":
        os._exit(3)  # the worker dies mid-request
    if response == "text":
        return "yes"
    gold = int(row["reward_model"]["ground_truth"])
    numbers = re.findall(r"-?\\d+", response)
    if not numbers:
        return {"score": 0, "status": "no_answer", "reason": "no number"}
    guess = int(numbers[-1])
    if guess == gold:
        return True
    return max(0.0, 1.0 - abs(guess - gold) / 4)
"""


def row(gt) -> dict:
    return {"data_source": "test", "reward_model": {"ground_truth": gt}}


def write(path: Path, body: str) -> Path:
    path.write_text(textwrap.dedent(body))
    return path


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie counts as dead
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


@pytest.fixture(scope="module")
def reward_file(tmp_path_factory) -> Path:
    return write(tmp_path_factory.mktemp("reward") / "my_reward.py", REWARD)


@pytest.fixture(scope="module")
def verifier(reward_file, tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "imports.txt"
    os.environ["OR1_TEST_IMPORT_LOG"] = str(log)
    try:
        v = PythonVerifier(
            PythonVerifierConfig(path=f"{reward_file}:score", timeout_s=TIMEOUT_S, workers=2)
        )
    finally:
        del os.environ["OR1_TEST_IMPORT_LOG"]
    v.import_log = log
    yield v
    v.close()


def test_registered_as_python_and_a_reward_verifier(verifier):
    comp = get_registry().get("verifier", "python")
    assert comp.factory is PythonVerifier and comp.schema is PythonVerifierConfig
    assert isinstance(verifier, RewardVerifier)


def test_scores_come_from_the_users_function(verifier):
    cases = [  # (response, gold, expected (score, status, reason)), worked out from REWARD
        ("first 40, then 42", 42, (1.0, "correct", "")),  # last number == gold: True
        ("41", 42, (0.75, "wrong", "")),  # 1 - 1/4
        ("44", "42", (0.5, "wrong", "")),  # 1 - 2/4; the gold is read by the function
        ("-100", 42, (0.0, "wrong", "")),  # max(0, 1 - 142/4)
        ("no digits here", 42, (0.0, "no_answer", "no number")),  # the dict's own status
    ]
    scores = verifier.score_many([c[0] for c in cases], [row(c[1]) for c in cases])
    assert [(s.value, s.status, s.reason) for s in scores] == [c[2] for c in cases]
    assert verifier.score("7", row(7)).value == 1.0


def test_the_file_is_loaded_once_per_worker(verifier):
    verifier.score_many([str(i) for i in range(12)], [row(3)] * 12)
    imported = verifier.import_log.read_text().split()
    assert sorted(int(p) for p in imported) == sorted(verifier.pool.pids())


def test_rows_reach_the_function_as_plain_data(verifier):
    # A parquet row holds numpy values; the function gets lists and numbers.
    r = {"reward_model": {"ground_truth": np.int64(5)}, "extra": np.array([1, 2])}
    assert jsonable(r) == {"reward_model": {"ground_truth": 5}, "extra": [1, 2]}
    assert verifier.score("5", r).status == "correct"


def test_a_spinning_function_times_out_and_the_next_call_works(verifier):
    restarts = verifier.pool.restarts
    t0 = time.monotonic()
    s = verifier.score("spin", row(1))
    elapsed = time.monotonic() - t0
    assert (s.value, s.status) == (0.0, "timeout") and "my_reward.py:score" in s.reason, s
    assert elapsed < TIMEOUT_S + SLACK_S
    assert verifier.pool.restarts == restarts  # the worker stopped itself: no restart
    assert verifier.score("1", row(1)).status == "correct"


def test_a_function_that_ignores_the_alarm_is_killed_and_replaced(verifier):
    verifier.score_many(["1", "2"], [row(1)] * 2)  # both workers up
    before = set(verifier.pool.pids())
    restarts = verifier.pool.restarts
    t0 = time.monotonic()
    scores = verifier.score_many(["stubborn", "1"], [row(1)] * 2)
    elapsed = time.monotonic() - t0
    assert [(s.value, s.status) for s in scores] == [(0.0, "timeout"), (1.0, "correct")]
    assert "killed after 1s" in scores[0].reason
    assert TIMEOUT_S * 0.9 <= elapsed < TIMEOUT_S + SLACK_S
    assert verifier.pool.restarts == restarts + 1
    killed = before - set(verifier.pool.pids())
    assert len(killed) == 1 and not alive(killed.pop())
    assert verifier.warmup() and len(verifier.pool.pids()) == 2
    assert verifier.score("3", row(3)).status == "correct"


def test_a_raising_function_scores_error_and_the_run_goes_on(verifier):
    s = verifier.score("raise", row(1))
    assert (s.value, s.status) == (0.0, "error")
    assert s.reason == "my_reward.py:score raised ValueError: bad response"
    assert verifier.score("1", row(1)).status == "correct"


def test_a_worker_that_dies_scores_error_and_is_replaced(verifier):
    restarts = verifier.pool.restarts
    scores = verifier.score_many(["exit", "2"], [row(2)] * 2)
    assert (scores[0].value, scores[0].status) == (0.0, "error") and "died" in scores[0].reason
    assert scores[1].status == "correct"
    assert verifier.pool.restarts == restarts + 1
    assert verifier.score("2", row(2)).status == "correct"


def test_a_bad_return_value_scores_error_naming_the_function(verifier):
    s = verifier.score("text", row(1))
    assert (s.value, s.status) == (0.0, "error")
    assert s.reason.startswith("my_reward.py:score returned str (expected a number")


@pytest.mark.parametrize(
    "value, expected",
    [
        (True, (1.0, "correct", "")),
        (False, (0.0, "wrong", "")),
        (1, (1.0, "correct", "")),
        (0.25, (0.25, "wrong", "")),
        (np.float32(0.5), (0.5, "wrong", "")),
        (np.bool_(True), (1.0, "correct", "")),
        ({"score": 0.5, "reason": "half"}, (0.5, "wrong", "half")),
        ({"score": 1.0, "status": "correct", "extra": 3}, (1.0, "correct", "")),
        ({"score": False, "status": "no_answer"}, (0.0, "no_answer", "")),
    ],
)
def test_the_return_contract(value, expected):
    assert as_score(value, "f.py:score") == expected


@pytest.mark.parametrize(
    "value, says",
    [
        ("1.0", "returned str"),
        (None, "returned NoneType"),
        ([1.0], "returned list"),
        (1.5, "returned 1.5, outside [0, 1]"),
        (-0.25, "returned -0.25, outside [0, 1]"),
        (math.nan, "returned nan"),
        ({"value": 1}, "returned a dict without 'score'"),
        ({"score": "1"}, "returned str"),
        ({"score": 1, "status": "great"}, "returned status 'great'"),
    ],
)
def test_bad_return_values_are_errors(value, says):
    score, status, reason = as_score(value, "f.py:score")
    assert (score, status) == (0.0, "error")
    assert reason.startswith("f.py:score ") and says in reason, reason


# ------------------------------------------------------------------ bad input: one-line errors


def cfg(path: str, **kw) -> PythonVerifierConfig:
    return PythonVerifierConfig(path=path, timeout_s=TIMEOUT_S, workers=1, **kw)


@pytest.mark.parametrize(
    "body, spec, says",
    [
        ("def other(response, row):\n    return 1\n", "{f}:score", "defines no function 'score'"),
        ("def score(response, row):\n    return 1\n", "{f}:grade", "(functions: score)"),
        ("def score(response, row)\n    return 1\n", "{f}", "r.py, line 1"),
        ("def score(response):\n    return 1\n", "{f}", "cannot be called as score(response, row)"),
        ("async def score(response, row):\n    return 1\n", "{f}", "is async"),
        ("def score(response, row):\n    return 1\n", "{f}:not-a-name", "is not a function name"),
    ],
)
def test_bad_reward_files_are_config_errors_before_anything_runs(tmp_path, body, spec, says):
    f = write(tmp_path / "r.py", body)
    with pytest.raises(ConfigError) as e:
        PythonVerifier.check_config(cfg(spec.format(f=f)))
    message = str(e.value)
    assert message.startswith(f"verifier.path={spec.format(f=f)}: ") and says in message
    assert "\n" not in message


def test_a_missing_file_or_path_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"verifier.path=.*nope.py:score: no such file"):
        PythonVerifier.check_config(cfg(f"{tmp_path}/nope.py:score"))
    with pytest.raises(ConfigError, match="verifier.path is not set"):
        PythonVerifier.check_config(cfg(""))
    with pytest.raises(ConfigError, match="verifier.timeout_s=0.0 must be > 0"):
        PythonVerifier.check_config(PythonVerifierConfig(path="x.py", timeout_s=0.0))


def test_the_check_reads_the_file_without_importing_it(tmp_path):
    marker = tmp_path / "imported"
    f = write(
        tmp_path / "r.py",
        f"""
        open({str(marker)!r}, "w").close()
        from math import isclose as score
        def grade(response, row, *, strict=False):
            return 1
        """,
    )
    assert check_reward_file(f"{f}:grade") == (f, "grade")
    assert check_reward_file(f"{f}:score") == (f, "score")  # an imported name counts
    assert check_reward_file(str(f)) == (f, "score")  # the function defaults to ``score``
    assert not marker.exists()


@pytest.mark.parametrize(
    "body, says",
    [
        ("import no_such_module_or1\ndef score(r, row):\n    return 1\n", "ModuleNotFoundError"),
        ("raise SystemExit(1)\ndef score(r, row):\n    return 1\n", "SystemExit"),
        ("score = 3\n", "r.py:score is not a function (int)"),
        ("if False:\n    def score(r, row):\n        return 1\n", "r.py has no function 'score'"),
    ],
)
def test_a_file_that_fails_in_the_worker_is_a_config_error_at_build(tmp_path, body, says):
    f = write(tmp_path / "r.py", body)
    PythonVerifier.check_config(cfg(str(f)))  # ast alone cannot tell
    t0 = time.monotonic()
    with pytest.raises(ConfigError) as e:
        PythonVerifier(cfg(str(f)))
    assert time.monotonic() - t0 < 30
    message = str(e.value)
    assert message.startswith(f"verifier.path={f}: ") and says in message, message
    assert "\n" not in message


def test_a_bare_schema_builds_and_scores_error(tmp_path):
    v = PythonVerifier(PythonVerifierConfig())  # the plugin contract tests build it so
    assert v.score("1", row(1)) == v.score("1", row(1))
    assert v.score("1", row(1)).status == "error"
    v.close()


def test_close_kills_the_workers_and_sigint_does_not(reward_file):
    v = PythonVerifier(cfg(f"{reward_file}:score"))
    (pid,) = v.pool.pids()
    os.kill(pid, signal.SIGINT)  # Ctrl-C reaches the whole process group: the trainer's to handle
    time.sleep(0.2)
    assert alive(pid) and v.score("4", row(4)).status == "correct"
    v.close()
    assert not alive(pid) and v.pool.pids() == []


# ------------------------------------------------------------------ or1-train end to end

PARITY = """
def score(response, row):
    # even length: 1.0 (correct); odd length: 0.25, with the length as the reason
    if len(response) % 2 == 0:
        return True
    return {"score": 0.25, "reason": f"odd length {len(response)}"}
"""


def test_or1_train_rewards_come_from_the_users_function(tmp_path, cache_dir):
    f = write(tmp_path / "parity.py", PARITY)
    run_dir = tmp_path / "run"
    proc = run_cli(
        "or1-train",
        [
            f"hydra.run.dir={run_dir}",
            "trainer.total_steps=2",
            "trainer.eval_at_start=false",
            "trainer.dump_samples=true",
            *FAST_RUN,
            "filter=none",
            "verifier=python",
            f"verifier.path={f}:score",
            "verifier.workers=1",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = read_jsonl(run_dir / "samples.jsonl")
    assert len(samples) == 2 * 4 * 4
    for s in samples:
        even = len(s["response"]) % 2 == 0
        assert (s["reward"], s["status"]) == ((1.0, "correct") if even else (0.25, "wrong")), s
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2]
    for m in metrics:
        rewards = [s["reward"] for s in samples if s["step"] == m["step"]]
        assert m["reward/mean"] == pytest.approx(sum(rewards) / len(rewards))


def test_or1_train_names_a_missing_reward_file_in_one_line(tmp_path):
    proc = run_cli(
        "or1-train", ["verifier=python", f"verifier.path={tmp_path}/nope.py:score"], tmp_path
    )
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("or1: error:")]
    assert len(errors) == 1 and "nope.py:score: no such file" in errors[0], proc.stderr
    assert not (tmp_path / "outputs").exists()  # stopped before Hydra made a run folder
