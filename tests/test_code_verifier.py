"""The code verifier: schemas, verdicts, the sandbox against adversarial programs, reward hacks.

Adversarial cases assert the verdict AND that the host saw no side effect (no file written, no
connection accepted, no process left, no secret leaked).
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import socket
import time
import zlib
from pathlib import Path

import pytest

from or1.config import VerifierConfig
from or1.interfaces import RewardVerifier
from or1_plugins.code_verifier import CodeVerifier, CodeVerifierConfig, or1_register_verifiers
from or1_plugins.code_verifier.cases import (
    GroundTruthError,
    data_equal,
    parse_ground_truth,
    stdout_matches,
)
from or1_plugins.code_verifier.sandbox import Limits, Sandbox, SandboxUnavailable
from or1_plugins.code_verifier.verifier import extract_code

TIMEOUT_S = 1.0
SLACK_S = 2.5  # a shared 2-core machine
REPO = Path(__file__).resolve().parents[1]


def row(gt):
    return {"ability": "code", "reward_model": {"ground_truth": gt}}


def py(src: str) -> str:
    return f"<think>let me write it</think>Here:\n```python\n{src}\n```\n"


STDIO_ONE = {"inputs": [""], "outputs": ["ok"]}
ADD_STDIO = {"inputs": ["1 2\n", "3 4\n", "-5 5\n"], "outputs": ["3\n", "7\n", "0\n"]}
ADD_SRC = "a, b = map(int, input().split())\nprint(a + b)"


@pytest.fixture(scope="module")
def verifier():
    v = CodeVerifier(CodeVerifierConfig(test_timeout_s=TIMEOUT_S, workers=2))
    yield v
    v.close()


def processes_with(marker: str) -> list[int]:
    """Live (non-zombie) host processes whose command line contains marker."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            cmd = (
                Path(f"/proc/{name}/cmdline")
                .read_bytes()
                .replace(b"\0", b" ")
                .decode("utf-8", "replace")
            )
            state = Path(f"/proc/{name}/stat").read_text().split(") ")[-1][0]
        except OSError:
            continue
        if marker in cmd and state != "Z" and int(name) != os.getpid():
            found.append(int(name))
    return found


# ------------------------------------------------------------------ pure functions


def test_extract_code_takes_the_last_python_block_after_think():
    text = "<think>```python\nprint(1)\n```</think>a\n```python\nprint(2)\n```\nb\n```py\nprint(3)\n```"
    assert extract_code(text) == "print(3)\n"
    assert extract_code("```python\nx = 1\n```\n```text\nnot code\n```") == "x = 1\n"
    assert extract_code("<think>```python\nprint(1)\n```</think> no code") is None
    assert extract_code("```python\n   \n```") is None
    assert extract_code(None) is None


def test_stdout_and_data_comparison():
    assert stdout_matches("3\n7 \n\n", "3\n7")
    assert stdout_matches("0.3333333", "0.33333333")  # 1e-6 tolerance on non-integers
    assert not stdout_matches("12.5", "12.6")
    assert not stdout_matches("100000000000000001", "100000000000000000")  # integers exact
    assert not stdout_matches("YES", "yes")
    assert not stdout_matches("1 2", "1 2 3")
    assert data_equal([1, [2.0, "a"]], [1, [2, "a"]])
    assert data_equal(0.1 + 0.2, 0.3)
    assert not data_equal(True, 1)  # a bool is not an int
    assert not data_equal([1, 2], [1, 2, 3])
    assert not data_equal({"a": 1}, {"a": 2})
    assert not data_equal("1", 1)


def test_parse_ground_truth_schemas():
    s = parse_ground_truth(json.dumps(ADD_STDIO))  # a JSON string, as in OR1 parquet files
    assert s.schema == "taco_stdio" and [c.test["kind"] for c in s.cases] == ["stdio"] * 3
    assert [c.test["i"] for c in s.cases] == [0, 1, 2]
    assert all("output" not in c.test and "expected" not in c.test for c in s.cases)
    s = parse_ground_truth({"inputs": [[1, 2]], "outputs": [[3]], "fn_name": "add"})
    assert s.cases[0].test == {"kind": "call", "fn": "add", "args": [1, 2], "i": 0}
    assert s.cases[0].expected == [[3], 3]  # APPS wraps the return value in a list
    s = parse_ground_truth(["assert f(2) == 4", "assert abs(f(1.5) - 2.25) < 1e-9"])
    assert [c.test["kind"] for c in s.cases] == ["expr", "bool"]
    assert s.cases[0].expected == [4] and "4" not in s.cases[0].test["src"]
    lc = {
        "import_prefix": "from typing import *",
        "test_code": "def check(candidate):\n    assert candidate([1, 2]) == 3\n    assert candidate([]) == 0\n",
        "entry_point": "Solution().total",
    }
    s = parse_ground_truth(lc)
    assert s.schema == "leetcode" and s.entry == "Solution().total" and len(s.cases) == 2
    for bad, why in [
        ({}, "unknown"),
        ({"inputs": [1], "outputs": []}, "1 inputs but 0 outputs"),
        ("not json", "not JSON"),
        ({"inputs": [], "outputs": []}, "no tests"),
        ({**lc, "test_code": "def check(candidate) assert"}, "not valid Python"),
        (["assert f(1) == 2", 3], r"assert_case\[1\]"),
    ]:
        with pytest.raises(GroundTruthError, match=why):
            parse_ground_truth(bad)


def test_livecodebench_private_tests_are_decoded_without_loading_classes():
    private = [{"input": "2\n", "output": "4\n", "testtype": "stdin"}]
    blob = base64.b64encode(zlib.compress(pickle.dumps(json.dumps(private)))).decode()
    gt = {
        "public_test_cases": json.dumps([{"input": "3\n", "output": "9\n", "testtype": "stdin"}]),
        "private_test_cases": blob,
        "metadata": "{}",
    }
    s = parse_ground_truth(gt)
    assert [c.test["input"] for c in s.cases] == ["3\n", "2\n"]
    assert [c.expected for c in s.cases] == [["9\n"], ["4\n"]]

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch /tmp/or1-unpickled",))

    evil = base64.b64encode(zlib.compress(pickle.dumps(Evil()))).decode()
    with pytest.raises(GroundTruthError, match="undecodable"):
        parse_ground_truth({"public_test_cases": "[]", "private_test_cases": evil})
    assert not Path("/tmp/or1-unpickled").exists()


# ------------------------------------------------------------------ verdicts per schema


def test_config_and_registration():
    assert issubclass(CodeVerifierConfig, VerifierConfig) and issubclass(
        CodeVerifier, RewardVerifier
    )
    cfg = CodeVerifierConfig()
    assert (cfg.name, cfg.sandbox, cfg.test_timeout_s, cfg.partial_credit) == (
        "code",
        "bwrap",
        6.0,
        False,
    )
    seen = []
    or1_register_verifiers(register=lambda *a: seen.append(a))
    assert seen == [("code", CodeVerifier, CodeVerifierConfig)]


LC_TWO_SUM = {
    "import_prefix": "from typing import *\n",
    "test_code": (
        "def check(candidate):\n"
        "    assert candidate(nums=[2, 7, 11, 15], target=9) == [0, 1]\n"
        "    assert candidate(nums=[3, 2, 4], target=6) == [1, 2]\n"
        "    assert candidate(nums=[3, 3], target=6) == [0, 1]\n"
    ),
    "entry_point": "Solution().twoSum",
}
TWO_SUM = (
    "class Solution:\n"
    "    def twoSum(self, nums: List[int], target: int) -> List[int]:\n"
    "        seen = {}\n"
    "        for i, x in enumerate(nums):\n"
    "            if target - x in seen:\n"
    "                return [seen[target - x], i]\n"
    "            seen[x] = i\n"
)
LCB = {
    "public_test_cases": [
        {"input": "[1, 2, 3]\n2", "output": "[2, 4, 6]", "testtype": "functional"}
    ],
    "private_test_cases": [{"input": "[]\n5", "output": "[]", "testtype": "functional"}],
    "metadata": {"func_name": "scale"},
}
SCALE = "class Solution:\n    def scale(self, xs, k):\n        return [x * k for x in xs]\n"


@pytest.mark.parametrize(
    "gt, src, expected",
    [
        (ADD_STDIO, ADD_SRC, "correct"),
        (ADD_STDIO, "a, b = map(int, input().split())\nprint(a - b)", "wrong"),
        (
            {"inputs": [["1 2", "3"]], "outputs": [["1 2", "3"]]},
            "print(input())\nprint(input())",
            "correct",
        ),
        (
            {"inputs": [[1, 2], [5, -5]], "outputs": [[3], [0]], "fn_name": "add"},
            "def add(a, b):\n    return a + b",
            "correct",
        ),
        (
            {"inputs": [[1, 2]], "outputs": [[3]], "fn_name": "add"},
            "class Solution:\n    def add(self, a, b):\n        return a + b",
            "correct",
        ),
        (
            {"inputs": [[1, 2]], "outputs": [[3]], "fn_name": "add"},
            "def add(a, b):\n    return a * b",
            "wrong",
        ),
        (
            {"inputs": [[1, 2]], "outputs": [[3]], "fn_name": "add"},
            "def add(a, b):\n    return 1 / 0",
            "wrong",
        ),
        (LC_TWO_SUM, TWO_SUM, "correct"),
        (LC_TWO_SUM, TWO_SUM.replace("[seen[target - x], i]", "[i, seen[target - x]]"), "wrong"),
        (
            {"assert_case": ["assert sq(3) == 9", "assert abs(sq(1.5) - 2.25) < 1e-9"]},
            "def sq(x):\n    return x * x",
            "correct",
        ),
        (
            {"assert_case": ["assert sq(3) == 9", "assert abs(sq(1.5) - 2.25) < 1e-9"]},
            "def sq(x):\n    return 9",
            "wrong",
        ),
        (LCB, SCALE, "correct"),
        (LCB, SCALE.replace("x * k", "x + k"), "wrong"),
        (ADD_STDIO, "while True:\n    pass", "timeout"),
    ],
)
def test_schemas_and_verdicts(verifier, gt, src, expected):
    s = verifier.score(py(src), row(gt))
    assert s.status == expected, s
    assert s.value == (1.0 if expected == "correct" else 0.0)


def test_no_answer_and_bad_rows(verifier):
    assert verifier.score("no code here", row(ADD_STDIO)).status == "no_answer"
    assert (
        verifier.score("<think>```python\nprint(1)\n```</think>", row(ADD_STDIO)).status
        == "no_answer"
    )
    for bad in ({}, {"reward_model": {}}, row({"nope": 1}), row("{broken")):
        s = verifier.score(py(ADD_SRC), bad)
        assert (s.value, s.status) == (0.0, "error") and s.reason


def test_partial_credit_and_score_many_order():
    v = CodeVerifier({"test_timeout_s": TIMEOUT_S, "workers": 2, "partial_credit": True})
    try:
        half = "a, b = map(int, input().split())\nprint(a + b if a > 0 else 99)"  # test 2 fails
        s = v.score(py(half), row(ADD_STDIO))
        assert s.status == "wrong" and s.value == pytest.approx(2 / 3), s
        responses = [py(ADD_SRC), "nothing", py(half), py(ADD_SRC)]
        scores = v.score_many(responses, [row(ADD_STDIO)] * 4)
        assert [x.status for x in scores] == ["correct", "no_answer", "wrong", "correct"]
        assert [x.value for x in scores] == pytest.approx([1.0, 0.0, 2 / 3, 1.0])
    finally:
        v.close()


def test_missing_sandbox_is_refused_not_bypassed(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        CodeVerifier({"test_timeout_s": TIMEOUT_S})
    with pytest.raises(Exception, match="sandbox must be"):
        Sandbox("docker", Limits())


# ------------------------------------------------------------------ adversarial programs


def test_fork_flood_is_contained(verifier):
    marker = "or1forkflood"
    src = f"import os\n# {marker}\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass"
    t0 = time.monotonic()
    s = verifier.score(py(src), row(STDIO_ONE))
    assert time.monotonic() - t0 < TIMEOUT_S + SLACK_S
    assert s.value == 0.0 and s.status in ("timeout", "wrong"), s
    assert processes_with("/tmp/or1/solution.py") == []


def test_memory_hog_fails_fast(verifier):
    t0 = time.monotonic()
    s = verifier.score(py("x = []\nwhile True:\n    x.append(bytearray(10**8))"), row(STDIO_ONE))
    assert time.monotonic() - t0 < TIMEOUT_S + SLACK_S
    assert s.value == 0.0 and s.status in ("wrong", "timeout"), s


def test_infinite_output_is_cut(verifier):
    t0 = time.monotonic()
    s = verifier.score(py("while True:\n    print('x' * 10000)"), row(STDIO_ONE))
    assert time.monotonic() - t0 < TIMEOUT_S + SLACK_S
    assert (s.value, s.status) == (0.0, "wrong") and "output limit" in s.reason, s


def test_ignoring_sigterm_does_not_help(verifier):
    src = "import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True:\n    pass"
    t0 = time.monotonic()
    s = verifier.score(py(src), row(STDIO_ONE))
    elapsed = time.monotonic() - t0
    assert (s.value, s.status) == (0.0, "timeout"), s
    assert TIMEOUT_S * 0.9 <= elapsed < TIMEOUT_S + SLACK_S
    assert processes_with("/tmp/or1/solution.py") == []


@pytest.mark.parametrize(
    "kill", ["os.kill(os.getppid(), signal.SIGKILL)", "os.kill(-1, signal.SIGKILL)"]
)
def test_killing_the_harness_scores_zero(verifier, kill):
    s = verifier.score(py(f"import os, signal\n{kill}\nprint('ok')"), row(STDIO_ONE))
    assert (s.value, s.status) == (0.0, "wrong"), s
    assert verifier.score(py("print('ok')"), row(STDIO_ONE)).status == "correct"  # still works


def test_environment_and_host_files_are_invisible(verifier, tmp_path, monkeypatch):
    monkeypatch.setenv("OR1_TEST_SECRET", "hunter2-secret")
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2-file")
    home_file = Path.home() / ".or1-test-secret"
    src = (
        "import os\n"
        "seen = [k for k, v in os.environ.items() if 'hunter2' in v]\n"
        f"for p in [{str(secret)!r}, {str(home_file)!r}, {str(REPO / 'pyproject.toml')!r}, '/etc/passwd', '/etc/shadow']:\n"
        "    try:\n"
        "        seen.append(open(p).read()[:20])\n"
        "    except OSError:\n"
        "        pass\n"
        "print('clean' if not seen else seen)\n"
    )
    home_file.write_text("hunter2-home")
    try:
        s = verifier.score(py(src), row(STDIO_ONE | {"outputs": ["clean"]}))
    finally:
        home_file.unlink()
    assert (s.value, s.status) == (1.0, "correct"), s
    assert "hunter2" not in s.reason


def test_writes_outside_scratch_do_not_reach_the_host(verifier, tmp_path):
    targets = [
        tmp_path / "pwned",
        REPO / "or1-pwned",
        Path.home() / "or1-pwned",
        Path("/tmp/or1-pwned"),
    ]
    src = (
        "import os\n"
        f"for p in {[str(t) for t in targets]!r}:\n"
        "    try:\n"
        "        open(p, 'w').write('x')\n"
        "    except OSError:\n"
        "        pass\n"
        "open('scratch.txt', 'w').write('scratch is writable')\n"
        "print(open('scratch.txt').read())\n"
    )
    s = verifier.score(py(src), row({"inputs": [""], "outputs": ["scratch is writable"]}))
    assert (s.value, s.status) == (1.0, "correct"), s  # the scratch folder works...
    assert not any(t.exists() for t in targets)  # ...and nothing else was written on the host


def test_no_network_to_a_local_listener(verifier):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    srv.settimeout(0.2)
    port = srv.getsockname()[1]
    src = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=0.5)\n"
        "    print('connected')\n"
        "except OSError:\n"
        "    print('blocked')\n"
    )
    try:
        s = verifier.score(py(src), row({"inputs": [""], "outputs": ["blocked"]}))
        with pytest.raises(socket.timeout):
            srv.accept()
    finally:
        srv.close()
    assert (s.value, s.status) == (1.0, "correct"), s


def test_orphan_processes_are_killed(verifier):
    marker = "or1orphanmarker"
    src = (
        "import subprocess, sys\n"
        f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)  # {marker}'],\n"
        "                 start_new_session=True, stdout=subprocess.DEVNULL)\n"
        "print('ok')\n"
    )
    t0 = time.monotonic()
    s = verifier.score(py(src), row(STDIO_ONE))
    assert time.monotonic() - t0 < TIMEOUT_S + SLACK_S
    assert (s.value, s.status) == (1.0, "correct"), s
    assert processes_with(marker) == []


# ------------------------------------------------------------------ reward hacks


@pytest.mark.parametrize(
    "src",
    [
        "import os\nos._exit(0)",  # exit with status 0 before the asserts run
        "import sys\nsys.exit(0)",
        "raise SystemExit(0)",
        # an object equal to everything
        "class A:\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n"
        "class Solution:\n    def twoSum(self, nums, target): return A()",
        # a list subclass equal to everything
        "class L(list):\n    def __eq__(self, o): return True\n"
        "class Solution:\n    def twoSum(self, nums, target): return L()",
        # patching builtins and the json module the harness might use
        "import builtins, json\nbuiltins.AssertionError = type('E', (BaseException,), {})\n"
        "builtins.isinstance = lambda *a: True\nbuiltins.len = lambda x: 0\n"
        "json.dumps = lambda *a, **k: '{\"ok\": true}'\n"
        "class Solution:\n    def twoSum(self, nums, target): return [9, 9]",
        # records with the right answers forged on stdout, on the runner's and bubblewrap's
        # stdout (through /proc) and on every open descriptor; the real answers are wrong
        "import os, json\nfor i, v in enumerate([[0, 1], [1, 2], [0, 1]]):\n"
        "    line = json.dumps({'i': i, 'status': 'ran', 'ok': True, 'value': v}) + '\\n'\n"
        "    print(line)\n"
        "    for p in ['/proc/1/fd/1', '/proc/2/fd/1'] + ['/proc/self/fd/%d' % k for k in range(3, 9)]:\n"
        "        try:\n            open(p, 'w').write(line)\n        except OSError:\n            pass\n"
        "class Solution:\n    def twoSum(self, nums, target): return [9, 9]",
    ],
)
def test_reward_hacks_fail_on_leetcode_tests(verifier, src):
    s = verifier.score(py(src), row(LC_TWO_SUM))
    assert s.value == 0.0 and s.status == "wrong", s


def test_reward_hacks_fail_on_call_and_assert_tests(verifier):
    always = (
        "class A:\n    def __eq__(self, o): return True\n    def __lt__(self, o): return True\n"
    )
    always += "    def __sub__(self, o): return self\n    def __abs__(self): return self\n"
    call_gt = {"inputs": [[1, 2]], "outputs": [[3]], "fn_name": "add"}
    assert_gt = {"assert_case": ["assert abs(sq(1.5) - 2.25) < 1e-9", "assert sq(3) == 9"]}
    for gt, src in [
        (call_gt, always + "def add(a, b):\n    return A()"),
        (assert_gt, always + "def sq(x):\n    return A()"),
        (assert_gt, "import builtins\nbuiltins.abs = lambda x: 0\ndef sq(x):\n    return 0"),
    ]:
        s = verifier.score(py(src), row(gt))
        assert s.value == 0.0 and s.status == "wrong", (src, s)


def test_every_test_must_report(verifier):
    # Passes the first call, then exits quietly: the second test never reports.
    src = "n = 0\ndef add(a, b):\n    global n\n    n += 1\n    if n == 2:\n        import os; os._exit(0)\n    return a + b"
    gt = {"inputs": [[1, 2], [2, 2]], "outputs": [[3], [4]], "fn_name": "add"}
    s = verifier.score(py(src), row(gt))
    assert s.value == 0.0 and s.status == "wrong" and "test 1" in s.reason, s
