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
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest

from or1.core.config import VerifierConfig
from or1.core.errors import ConfigError
from or1.core.interfaces import RewardVerifier
from or1_plugins.verifier.code import CodeVerifier, CodeVerifierConfig, or1_register
from or1_plugins.verifier.code.cases import (
    GroundTruthError,
    data_equal,
    default_import_prefix,
    output_matches,
    parse_ground_truth,
    stdout_matches,
    value_matches,
)
from or1_plugins.verifier.code.sandbox import Limits, Sandbox, SandboxUnavailable
from or1_plugins.verifier.code.verifier import extract_code, row_id

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


def test_the_probe_is_not_held_to_a_short_test_timeout():
    # a 10 ms limit: the probe (its own 30 s limit) still passes, and a real test that sleeps
    # 2 s under that limit times out, as it should (a bare print can finish within 10 ms on a
    # fast machine)
    v = CodeVerifier(CodeVerifierConfig(test_timeout_s=0.01, workers=1))
    try:
        s = v.score(py('import time\ntime.sleep(2)\nprint("ok")'), row(STDIO_ONE))
        assert s.value == 0.0 and s.status == "timeout", s
    finally:
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
    for bad, where, why in [
        ({}, "", "matches no code ground-truth schema"),
        ({"inputs": [1], "outputs": []}, "outputs", "1 inputs but 0 outputs"),
        ("not json", "", "neither JSON nor Python test code"),
        ({"inputs": [], "outputs": []}, "", "no tests"),
        ({**lc, "test_code": "def check(candidate) assert"}, "test_code", "not valid Python"),
        (["assert f(1) == 2", 3], "[1]", "not a code string"),
        ({"assert_case": ["assert f(1) == 2", 3]}, "assert_case[1]", "not a code string"),
    ]:
        with pytest.raises(GroundTruthError, match=why) as err:
            parse_ground_truth(bad)
        assert err.value.field == where


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
    or1_register(register=lambda *a: seen.append(a))
    assert seen == [("verifier", "code", CodeVerifier, CodeVerifierConfig)]


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


def test_solution_globals_named_like_builtins_do_not_reach_the_tests(verifier):
    # a module-level abs / zip / dict of the answer must not decide an assert or feed a
    # pytest function its parameters
    assert_gt = {"assert_case": ["assert abs(sq(1.5) - 2.25) < 1e-9"]}
    s = verifier.score(py("def abs(x):\n    return 0\ndef sq(x):\n    return 0"), row(assert_gt))
    assert (s.value, s.status) == (0.0, "wrong"), s
    pytest_gt = CALL_LAYOUTS["pytest_file"]
    src = (
        "def zip(*a):\n    return iter([('a', 0), ('b', 0), ('total', 0)])\n"
        "def dict(*a, **k):\n    return {'a': 0, 'b': 0, 'total': 0}\n"
        "def add(a, b):\n    return 0 if b is not None else a + b\n"
    )
    s = verifier.score(py(src), row(pytest_gt))
    assert (s.value, s.status) == (0.0, "wrong"), s
    # the answer's own helpers still work for its own code
    src = "def abs(x):\n    return -x if x < 0 else x\ndef sq(x):\n    return abs(x) * abs(x)"
    assert verifier.score(py(src), row(assert_gt)).status == "correct"


ALWAYS_EQUAL = (
    "class A:\n    def __eq__(self, o): return True\n    def __ne__(self, o): return False\n"
    "    def __lt__(self, o): return True\n    def __bool__(self): return True\n"
    "    def __contains__(self, o): return True\n"
)


@pytest.mark.parametrize(
    "test_file",
    [
        "from solution import f\n\ndef test_f():\n    assert f(2) == 4\n",
        "from solution import f\n\ndef test_f():\n    r = f(2)\n    assert r == 4\n",
        "from solution import f\n\ndef test_f():\n    assert 4 == f(2)\n",
        "from solution import f\n\ndef test_f():\n    assert f(2) < 5 and not f(2) < 4\n",
        "from solution import f\n\ndef test_f():\n    assert 4 in f(2)\n",
        "from solution import f\n\ndef test_f():\n    assert f(2)\n",
        "import pytest\nfrom solution import f\n\ndef test_f():\n    assert f(2) == pytest.approx(4.0)\n",
        "import pytest\nfrom solution import f\n\ndef test_f():\n    assert pytest.approx(4.0) == f(2)\n",
        "import solution\n\ndef test_f():\n    assert solution.f(2) == 4\n",
        {"assert_case": ["for x in [2]:\n    assert f(x) == 4"]},  # run whole: not one assert
        "def check(candidate):\n    r = candidate(2)\n    assert r == 4\n\ncheck(f)\n",
    ],
)
def test_an_object_equal_to_everything_fails_tests_run_in_the_sandbox(verifier, test_file):
    # pytest functions (and other test code run whole in the sandbox) compared the answer's
    # objects with its own __eq__: "return A()" passed every test. The tests' comparisons now
    # take data only; a correct answer still passes.
    hack = verifier.score(py(ALWAYS_EQUAL + "def f(x):\n    return A()"), row(test_file))
    assert (hack.value, hack.status) == (0.0, "wrong"), hack
    good = "def f(x):\n    return x * x if x != 2 else [4] if IN else 4\n"
    good = good.replace("IN", str(" in " in str(test_file).split("assert")[-1]))
    assert verifier.score(py(good), row(test_file)).status == "correct", test_file


def test_tests_may_compare_what_they_need_to(verifier):
    # identity, dict views, and a problem that asks for the answer's own __eq__
    gt = (
        "from solution import f, Vec\n\n"
        "def test_views():\n    assert f() is not None\n    assert f().keys() == {'a', 'b'}\n"
        "    assert list(f().values()) == [1, 2]\n    assert 2 in f().values()\n\n"
        "def test_eq():\n    assert Vec(1, 2) + Vec(3, 4) == Vec(4, 6)\n"
        "    assert Vec(1, 2) != Vec(2, 1)\n"
    )
    src = (
        "def f():\n    return {'a': 1, 'b': 2}\n"
        "class Vec:\n    def __init__(self, x, y): self.x, self.y = x, y\n"
        "    def __add__(self, o): return Vec(self.x + o.x, self.y + o.y)\n"
        "    def __eq__(self, o): return (self.x, self.y) == (o.x, o.y)\n"
    )
    s = verifier.score(py(src), row(gt))
    assert (s.value, s.status) == (1.0, "correct"), s
    wrong = src.replace("self.x + o.x", "self.x - o.x")
    assert verifier.score(py(wrong), row(gt)).status == "wrong"


FORGE_FROM_FRAMES = """
import sys, os, json
f = sys._getframe(1)
while f is not None and 'nonce' not in f.f_locals:
    f = f.f_back
nonce, job = f.f_locals['nonce'], f.f_locals['job']
for t in job['tests']:
    for rec in ({'n': nonce, 's': t['i']}, {'n': nonce, 'i': t['i'], 'ok': True}):
        os.write(int(sys.argv[1]), (json.dumps(rec) + '\\n').encode())
os._exit(0)
"""


@pytest.mark.xfail(
    strict=True,
    reason="known limit (docs/verifiers.md): tests decided inside the sandbox run in the "
    "answer's process, which can read the driver's nonce from its frames and forge records",
)
def test_records_forged_from_the_drivers_frames_do_not_pass(verifier):
    s = verifier.score(py(FORGE_FROM_FRAMES), row(CALL_LAYOUTS["pytest_file"]))
    assert s.value == 0.0, s


def test_every_test_must_report(verifier):
    # Passes the first call, then exits quietly: the second test never reports.
    src = "n = 0\ndef add(a, b):\n    global n\n    n += 1\n    if n == 2:\n        import os; os._exit(0)\n    return a + b"
    gt = {"inputs": [[1, 2], [2, 2]], "outputs": [[3], [4]], "fn_name": "add"}
    s = verifier.score(py(src), row(gt))
    assert s.value == 0.0 and s.status == "wrong" and "test 1" in s.reason, s


# ------------------------------------------------------------------ import prefix

TOP_TWO = "def top2(xs: List[int]) -> List[int]:\n    return sorted(xs)[-2:]\n"
TOP_TWO_TACO = {
    "inputs": [[[5, 1, 4]], [[2, 9, 7, 3]]],
    "outputs": [[[4, 5]], [[7, 9]]],
    "fn_name": "top2",
}
LCB_PAIRS = {
    "public_test_cases": json.dumps(
        [
            {"input": "[1, 2, 1, 3]", "output": "2", "testtype": "functional"},
            {"input": "[4, 4, 4]", "output": "3", "testtype": "functional"},
        ]
    ),
    "private_test_cases": json.dumps([{"input": "[]", "output": "0", "testtype": "functional"}]),
    "metadata": json.dumps({"func_name": "mostCommonCount"}),
}
# Counter, List, Optional, lru_cache and gcd all used without an import of its own.
MOST_COMMON = (
    "class Solution:\n"
    "    def mostCommonCount(self, nums: List[int]) -> int:\n"
    "        c: Optional[Counter] = Counter(nums)\n"
    "        return max(c.values(), default=0) // gcd(1, 1)\n"
)


def test_call_based_taco_row_gets_the_import_prefix(verifier):
    s = verifier.score(py(TOP_TWO), row(TOP_TWO_TACO))
    assert (s.value, s.status) == (1.0, "correct"), s


def test_livecodebench_functional_row_gets_the_import_prefix(verifier):
    s = verifier.score(py(MOST_COMMON), row(LCB_PAIRS))
    assert (s.value, s.status) == (1.0, "correct"), s


def test_a_rows_own_import_prefix_wins(verifier):
    own = {**TOP_TWO_TACO, "import_prefix": "from typing import List\nK = 2\n"}
    src = "def top2(xs: List[int]) -> List[int]:\n    return sorted(xs)[-K:]\n"
    assert verifier.score(py(src), row(own)).status == "correct"
    # the row's prefix replaces the default one: Counter is not defined for this row
    src = "def top2(xs: List[int]) -> List[int]:\n    Counter(xs)\n    return sorted(xs)[-K:]\n"
    s = verifier.score(py(src), row(own))
    assert s.status == "wrong" and "Counter" in s.reason, s


def test_names_from_the_import_prefix_are_not_an_answer(verifier):
    # math.factorial / math.gcd are in the prefix; a solution must define the function itself.
    fact = {"inputs": [[3], [5]], "outputs": [[6], [120]], "fn_name": "factorial"}
    s = verifier.score(py("x = 1"), row(fact))
    assert s.status == "wrong" and "factorial" in s.reason, s
    s = verifier.score(py("def factorial(n):\n    return 0"), row(fact))
    assert s.status == "wrong", s  # its own (wrong) factorial is the one tested
    assert (
        verifier.score(
            py("def factorial(n):\n    return 1 if n < 2 else n * factorial(n - 1)"), row(fact)
        ).status
        == "correct"
    )
    asserts = {"assert_case": ["assert gcd(12, 18) == 6"]}
    assert verifier.score(py("x = 1"), row(asserts)).status == "wrong"
    assert verifier.score(py("from math import gcd"), row(asserts)).status == "correct"


# ------------------------------------------------------------------ public layouts

ADD_FN = "def add(a, b):\n    return a + b\n"
LAYOUTS = {
    "codeforces_list": [{"input": "1 2\n", "output": "3\n"}, {"input": "3 4\n", "output": "7\n"}],
    "codeforces_official_tests": {
        "official_tests": [{"input": "1 2\n", "output": "3\n"}, {"input": "3 4\n", "output": "7\n"}]
    },
    "code_contests": {
        "public_tests": {"input": ["1 2\n"], "output": ["3\n"]},
        "private_tests": {"input": ["3 4\n"], "output": ["7\n"]},
        "generated_tests": {"input": ["-5 5\n"], "output": ["0\n"]},
    },
    "taco_input_output": {"input_output": json.dumps(ADD_STDIO)},
    "tests_wrapper": {"tests": json.dumps([{"input": "1 2\n", "output": "3\n"}])},
}
CALL_LAYOUTS = {
    "lcb_per_test_metadata": [
        {
            "input": "1\n2",
            "output": "3",
            "testtype": "functional",
            "metadata": {"func_name": "add"},
        },
        {
            "input": "-4\n4",
            "output": "0",
            "testtype": "functional",
            "metadata": {"func_name": "add"},
        },
    ],
    "functional": {
        "functional": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-4, 4) == 0\n\n\ncheck(Solution().add)\n"
    },
    "pytest_file": (
        "import pytest\nfrom solution import add\n\n\n"
        "def test_small():\n    assert add(1, 2) == 3\n\n\n"
        "@pytest.mark.parametrize('a, b, total', [(2, 3, 5), (-4, 4, 0)])\n"
        "def test_many(a, b, total):\n    result = add(a, b)\n    assert result == total\n\n\n"
        "def test_type_error():\n    with pytest.raises(TypeError):\n        add(1, None)\n"
    ),
    "pytest_in_test_field": {
        "test": "from solution import add\n\ndef test_add():\n    assert add(-2, 2) == 0\n"
    },
    "primeintellect_function_call": [
        {"type": "function_call", "fn_name": "add", "input": [1, 2], "output": [3]},
        {"type": "function_call", "fn_name": "add", "input": [-4, 4], "output": [0]},
    ],
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_stdin_layouts_are_read_and_scored(verifier, name):
    gt = LAYOUTS[name]
    s = verifier.score(py(ADD_SRC), row(gt))
    assert (s.value, s.status) == (1.0, "correct"), s
    s = verifier.score(py("a, b = map(int, input().split())\nprint(a * b)"), row(gt))
    assert (s.value, s.status) == (0.0, "wrong"), s


@pytest.mark.parametrize("name", sorted(CALL_LAYOUTS))
def test_call_layouts_are_read_and_scored(verifier, name):
    gt = CALL_LAYOUTS[name]
    good = ADD_FN + "class Solution:\n    def add(self, a, b):\n        return a + b\n"
    s = verifier.score(py(good), row(gt))
    assert (s.value, s.status) == (1.0, "correct"), s
    bad = "def add(a, b):\n    return a - b if a < 0 else a + b\nclass Solution:\n    def add(self, a, b):\n        return add(a, b)\n"
    s = verifier.score(py(bad), row(gt))
    assert (s.value, s.status) == (0.0, "wrong"), s


def test_layouts_parse_to_the_expected_tests():
    s = parse_ground_truth(LAYOUTS["code_contests"])
    assert s.schema == "code_contests" and not s.call_based
    assert [c.test["input"] for c in s.cases] == ["1 2\n", "3 4\n", "-5 5\n"]
    assert [c.expected for c in s.cases] == [["3\n"], ["7\n"], ["0\n"]]
    assert parse_ground_truth(LAYOUTS["codeforces_official_tests"]).schema == "codeforces"
    assert parse_ground_truth(LAYOUTS["taco_input_output"]).schema == "taco_stdio"
    s = parse_ground_truth(CALL_LAYOUTS["lcb_per_test_metadata"])
    assert [c.test for c in s.cases] == [
        {"kind": "call", "fn": "add", "args": [1, 2], "i": 0},
        {"kind": "call", "fn": "add", "args": [-4, 4], "i": 1},
    ]
    assert [c.expected for c in s.cases] == [[3], [0]]
    s = parse_ground_truth(CALL_LAYOUTS["primeintellect_function_call"])
    assert s.cases[0].test["args"] == [1, 2] and s.cases[0].expected == [[3], 3]
    s = parse_ground_truth(CALL_LAYOUTS["functional"])
    assert (s.schema, s.entry) == ("leetcode", "Solution().add")
    assert [c.test["kind"] for c in s.cases] == ["expr", "expr"]
    assert [c.expected for c in s.cases] == [[3], [0]]
    s = parse_ground_truth(CALL_LAYOUTS["pytest_file"])
    assert s.schema == "pytest" and s.call_based
    # test_many runs once per parametrize set; expected values stay in the (trusted) test code
    runs = [c.test["run"].split("(")[0] for c in s.cases]
    assert runs == ["test_small", "test_many", "test_many", "test_type_error"]
    assert s.cases[1].test["run"] == "test_many(**{'a': (2), 'b': (3), 'total': (5)})"
    assert s.cases[2].test["run"] == "test_many(**{'a': (-4), 'b': (4), 'total': (0)})"
    assert "from solution" not in s.prefix and "class pytest" in s.prefix
    s = parse_ground_truth(
        {**ADD_STDIO, "checker": "tokens", "tolerance": 0.01, "import_prefix": "import math"}
    )
    assert (s.checker, s.tolerance, s.own_prefix, s.prefix) == ("tokens", 0.01, True, "import math")
    with pytest.raises(GroundTruthError, match=r"test_x takes pytest fixtures \(tmp_path\)"):
        parse_ground_truth("def test_x(tmp_path):\n    assert f(tmp_path) == 1\n")


def test_pytest_approx_and_import_solution(verifier):
    gt = (
        "import solution as sol\nimport pytest\n\n"
        "def test_third():\n    assert sol.third(1.0) == pytest.approx(0.3333333)\n"
    )
    assert verifier.score(py("def third(x):\n    return x / 3"), row(gt)).status == "correct"
    assert verifier.score(py("def third(x):\n    return x / 4"), row(gt)).status == "wrong"


def test_default_import_prefix_imports_what_the_code_uses():
    code = "def f(x: List[int]) -> int:\n    return gcd(*x) + pow(2, 3, 5)\n"
    prefix = default_import_prefix(code)
    assert "from typing import List" in prefix and "from math import gcd" in prefix
    assert "pow" not in prefix and "Counter" not in prefix  # the built-in pow is kept
    ns: dict = {}
    exec(prefix + code, ns)
    assert ns["f"]([4, 6]) == 2 + 3  # gcd(4, 6) + (8 mod 5)
    assert "from collections import Counter" in default_import_prefix("Counter(x)")
    assert default_import_prefix("print(1)") == ""


# ------------------------------------------------------------------ output checkers


def test_checker_exact():
    assert output_matches("exact", "1 2\n\n", "1 2")  # trailing blank lines do not count
    assert output_matches("exact", "1 2   \n3", "1 2\n3")  # nor trailing spaces on a line
    assert not output_matches("exact", "1  2", "1 2")
    assert not output_matches("exact", " 1", "1")
    assert not output_matches("exact", "1 2", "1\n2")
    assert not output_matches("exact", "YES", "yes")


def test_checker_tokens():
    assert output_matches("tokens", "1  2\n3\n", "1 2 3")  # any whitespace separates tokens
    assert output_matches("tokens", "1.0 007", "1 7")  # plain decimals compare by value
    assert output_matches("tokens", "2.50", "2.5")
    assert not output_matches("tokens", "0.3333333", "0.33333333")  # no tolerance
    assert not output_matches("tokens", "YES", "yes")
    assert not output_matches("tokens", "1 2", "1 2 3")
    assert not output_matches("tokens", "1e999999999999999999999", "1")  # no crash either


def test_checker_case_insensitive():
    assert output_matches("case_insensitive", "YES", "yes")
    assert output_matches("case_insensitive", "Yes\nNO", "yes no")
    assert output_matches("case_insensitive", "2.50", "2.5")
    assert not output_matches("case_insensitive", "YES", "YE S")
    assert not output_matches("case_insensitive", "yes", "no")


def test_checker_float_tol():
    assert output_matches("float_tol", "0.3333333", "0.33333333")  # |d| = 3.3e-9
    assert output_matches("float_tol", "1.0000005", "1")  # 5e-7 <= 1e-6 * max(1, 1)
    assert not output_matches("float_tol", "1.000002", "1")  # 2e-6 > 1e-6
    assert output_matches("float_tol", "1000000.5", "1000000.0")  # 0.5 <= 1e-6 * 1e6 (relative)
    assert not output_matches("float_tol", "1000002.0", "1000000.0")  # 2 > 1
    # An integer answer stays exact: a decimal for it only within the absolute tolerance, so
    # an approximation of a large integer (relative error 1e-9) is wrong.
    assert not output_matches("float_tol", "1000000008.0", "1000000007")
    assert not output_matches("float_tol", "1000000.5", "1000000")
    assert output_matches("float_tol", "2.0000000001", "2")  # |d| = 1e-10 <= 1e-6
    assert output_matches("float_tol", "1000000007.0", "1000000007")
    assert not output_matches("float_tol", "1000002", "1000000")  # integers compare exactly
    assert not output_matches("float_tol", "100000000000000001", "100000000000000000")
    assert output_matches("float_tol", "-0 +5 007", "0 5 7")
    assert not output_matches("float_tol", "3.14", "3.14159")  # 0.00159 > 3.14159e-6
    assert output_matches("float_tol", "3.14", "3.14159", tolerance=1e-2)  # <= 0.0314
    assert not output_matches("float_tol", "YES", "yes")
    assert output_matches("float_tol", "nan", "nan ")  # equal text tokens
    assert not output_matches("float_tol", "nan", "0")  # nan is text, not a number here
    assert not output_matches("float_tol", "inf", "1e400")  # neither is a finite number
    with pytest.raises(ValueError, match="unknown checker"):
        output_matches("fuzzy", "1", "1")


def test_checkers_on_returned_values():
    third = 1 / 3
    assert value_matches("float_tol", 0.3333333, third)  # 3.3e-8 <= 1e-6
    assert not value_matches("tokens", 0.3333333, third)  # data equality: 1e-9
    assert not value_matches("exact", 0.3333333, third)
    assert value_matches("case_insensitive", ["Yes", 1], ["YES", 1])
    assert not value_matches("float_tol", ["Yes"], ["YES"])
    assert not value_matches("case_insensitive", "Yes", "No")
    # a float returned for an integer answer: within the absolute tolerance only
    assert not value_matches("float_tol", 1000000007.5, 1000000007)  # relative error 5e-10
    assert not value_matches("tokens", 1000000007.5, 1000000007)  # data equality, 1e-9
    assert value_matches("float_tol", 2.0000000001, 2)
    assert not value_matches("float_tol", float("inf"), 10**400)  # no overflow either


def test_checkers_in_the_sandbox(verifier):
    yes = {"inputs": ["3\n"], "outputs": ["YES\n"]}
    src = "input()\nprint('yes')"
    assert verifier.score(py(src), row(yes)).status == "wrong"  # TACO layout: float_tol
    assert verifier.score(py(src), row({**yes, "checker": "case_insensitive"})).status == "correct"
    half = {"inputs": [""], "outputs": ["0.5\n"]}

    def lcb(gt):  # a LiveCodeBench row: its harness compares tokens, numbers as decimals
        return {**row(gt), "data_source": "livecodebench/code_generation_lite"}

    assert verifier.score(py("print('0.50')"), lcb(half)).status == "correct"
    assert verifier.score(py("print('0.5000001')"), lcb(half)).status == "wrong"
    float_row = lcb({**half, "checker": "float_tol"})
    assert verifier.score(py("print('0.5000001')"), float_row).status == "correct"
    # A Codeforces / CodeContests row with a real-valued answer: the reference printed 15
    # digits, a correct answer 10 (error 3.3e-11, inside the judges' 1e-6); an integer answer
    # off by one, printed as a decimal, stays wrong.
    third = {"official_tests": [{"input": "", "output": "0.333333333333333\n"}]}
    assert verifier.score(py("print('%.10f' % (1 / 3))"), row(third)).status == "correct"
    assert verifier.score(py("print('%.4f' % (1 / 3))"), row(third)).status == "wrong"
    big = {"public_tests": {"input": [""], "output": ["1000000007\n"]}}
    assert verifier.score(py("print(1000000008.0)"), row(big)).status == "wrong"
    assert verifier.score(py("print(1000000007)"), row(big)).status == "correct"
    assert verifier.score(py("print('0.5000001')"), row(half)).status == "correct"
    spaced = {"inputs": [""], "outputs": ["1 2"]}
    assert (
        verifier.score(py("print('1  2')"), row({**spaced, "checker": "exact"})).status == "wrong"
    )
    assert (
        verifier.score(py("print('1  2')"), row({**spaced, "checker": "tokens"})).status
        == "correct"
    )
    call = {"inputs": [[3], [4]], "outputs": [["YES"], ["NO"]], "fn_name": "odd"}
    src = "def odd(n):\n    return 'Yes' if n % 2 else 'No'"
    assert verifier.score(py(src), row(call)).status == "wrong"
    assert verifier.score(py(src), row({**call, "checker": "case_insensitive"})).status == "correct"


def test_checker_per_source_and_config(verifier):
    def suite_row(gt, source=None):
        r = row(gt)
        if source:
            r["data_source"] = source
        return parse_ground_truth(gt), r

    cases = [
        (ADD_STDIO, None, "float_tol"),  # TACO layout
        ([{"input": "1", "output": "1"}], None, "float_tol"),  # a bare list: the default
        ([{"input": "1", "output": "1"}], "livecodebench/code_generation_lite", "tokens"),
        (LAYOUTS["code_contests"], None, "float_tol"),  # the layout names the source
        (LAYOUTS["codeforces_official_tests"], None, "float_tol"),
        (LCB, None, "tokens"),
        (LC_TWO_SUM, None, "exact"),
        (ADD_STDIO, "deepmind/code_contests", "float_tol"),  # data_source before layout
        (LAYOUTS["code_contests"], "livecodebench", "tokens"),
        ({**ADD_STDIO, "checker": "exact"}, "codeforces", "exact"),  # the row's own first
    ]
    for gt, source, expected in cases:
        assert verifier.checker_for(*suite_row(gt, source)) == (expected, 1e-6), (gt, source)
    assert verifier.checker_for(*suite_row({**ADD_STDIO, "tolerance": 0.5})) == ("float_tol", 0.5)
    cfg = CodeVerifierConfig(
        test_timeout_s=TIMEOUT_S,
        checker="exact",
        checkers={"MySource": "case_insensitive"},
        tolerance=1e-3,
        import_prefix=False,
    )
    with CodeVerifier(cfg) as v:
        assert v.checker_for(*suite_row(ADD_STDIO, "mysource-v2")) == ("case_insensitive", 1e-3)
        assert v.checker_for(*suite_row(ADD_STDIO)) == ("exact", 1e-3)  # no taco key left
        s = v.score(py(TOP_TWO), row(TOP_TWO_TACO))  # no import prefix: List is undefined
        assert s.status == "wrong" and "List" in s.reason, s
    for bad, key in [
        ({"checker": "fuzzy"}, "verifier.checker"),
        ({"checkers": {"x": "fuzzy"}}, "verifier.checkers.x"),
    ]:
        with pytest.raises(ConfigError, match=f"{key}: unknown checker 'fuzzy'"):
            CodeVerifier({"test_timeout_s": TIMEOUT_S, **bad})


# ------------------------------------------------------------------ bad input

ALL_CHECKERS = "exact, tokens, case_insensitive, float_tol"


@pytest.mark.parametrize(
    "gt, message",
    [
        ({"nope": 1}, "ground_truth: matches no code ground-truth schema (keys: nope)"),
        ({"inputs": ["1", "2"], "outputs": ["1"]}, "ground_truth.outputs: 2 inputs but 1 outputs"),
        (
            {"public_tests": {"input": ["1"], "output": []}},
            "ground_truth.public_tests: 1 inputs but 0 outputs",
        ),
        (
            {**ADD_STDIO, "checker": "fuzzy"},
            f"ground_truth.checker: unknown checker 'fuzzy' (one of {ALL_CHECKERS})",
        ),
        (
            [{"input": "1", "output": "2", "testtype": "functional"}],
            "ground_truth[0]: a functional test without metadata.func_name",
        ),
        (
            {"public_test_cases": [{"input": "1", "output": "2", "testtype": "bogus"}]},
            "ground_truth.public_test_cases[0].testtype: unknown test type 'bogus'",
        ),
        (
            "no tests here",
            "ground_truth: a string that is neither JSON nor Python test code "
            "(no check(candidate), test_* function or assert)",
        ),
    ],
)
def test_bad_ground_truth_is_one_line_naming_the_row_and_field(verifier, gt, message):
    s = verifier.score(py(ADD_SRC), {"id": "p7", **row(gt)})
    assert (s.value, s.status, s.reason) == (0.0, "error", f"row p7: {message}")


def test_row_id_fallbacks():
    assert row_id({"id": 3}) == "3"
    assert row_id({"extra_info": {"index": 12}}) == "12"
    assert row_id({"extra_info": json.dumps({"index": 5, "split": "train"})}) == "5"
    assert row_id({"extra_info": "not json"}) == "?" and row_id(None) == "?"


def test_or1_verify_reports_bad_code_rows_and_goes_on(tmp_path):
    rows = [
        {"id": "a", "ability": "code", "response": py(ADD_SRC), "ground_truth": {"nope": 1}},
        {
            "id": "b",
            "ability": "code",
            "response": py(ADD_SRC),
            "ground_truth": {"inputs": ["1 2\n"], "outputs": []},
        },
        {
            "id": "c",
            "ability": "code",
            "response": py(ADD_SRC),
            "ground_truth": {**ADD_STDIO, "checker": "fuzzy"},
        },
        {"id": "d", "ability": "code", "response": py(ADD_SRC), "ground_truth": ADD_STDIO},
    ]
    src = tmp_path / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    res = subprocess.run(
        [sys.executable, "-m", "or1.cli.verify", str(src), "-o", str(out), "--workers", "1"]
        + ["--no-progress", "--set", "routes.code.test_timeout_s=3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [g["status"] for g in got] == ["error", "error", "error", "correct"]
    assert [g["message"] for g in got[:3]] == [
        "row a: ground_truth: matches no code ground-truth schema (keys: nope)",
        "row b: ground_truth.outputs: 1 inputs but 0 outputs",
        f"row c: ground_truth.checker: unknown checker 'fuzzy' (one of {ALL_CHECKERS})",
    ]
