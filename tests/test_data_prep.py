"""or1-data: the passes on small generated pools with known duplicates, near-duplicates,
contaminated rows, broken tests and broken reference solutions; resumption; bad input; the
whole pipeline on the CPU demo's pool followed by training on its output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from or1.core.errors import DataError
from or1_plugins.data_pass.judge import parse_verdict
from or1_plugins.data_pass.text import (
    jaccard,
    lsh_bands,
    minhash,
    normal_form,
    permutations,
    shingles,
)
from tests.conftest import FAST_RUN, UNTRAINED_MODEL, read_jsonl, run_cli

# ---------------------------------------------------------------------------- text


def test_normal_form_ignores_case_width_and_spacing_but_not_operators():
    assert normal_form("What is 2+3?") == normal_form("  what IS 2 + 3 ?") == "what is 2 + 3 ?"
    assert normal_form("ＡＢＣ") == "abc"  # full-width letters (NFKC)
    assert normal_form("2 + 3") != normal_form("2 - 3")


def test_jaccard_of_trigram_shingles_by_hand():
    words = [f"w{i}" for i in range(10)]
    a = shingles(" ".join(words), 3)  # 8 distinct trigrams
    b = shingles(" ".join(words[:-1] + ["other"]), 3)  # the last trigram differs
    assert len(a) == len(b) == 8
    assert jaccard(a, b) == pytest.approx(7 / 9)
    assert shingles("one two", 3) == shingles("ONE   two", 3) and len(shingles("one two", 3)) == 1


def test_minhash_agreement_estimates_jaccard():
    rng = np.random.default_rng(0)
    universe = rng.choice(2**32, size=400, replace=False).tolist()
    x, y = set(universe[:300]), set(universe[100:400])  # |x & y| = 200, |x | y| = 400
    a, b = permutations(512, seed=1)
    agree = float(np.mean(minhash(x, a, b) == minhash(y, a, b)))
    assert abs(agree - 0.5) < 0.08  # standard error sqrt(0.25 / 512) = 0.022
    bands, rows = lsh_bands(128, 0.8)
    assert bands * rows <= 128 and 1 - (1 - 0.8**rows) ** bands >= 0.999


def test_parse_verdict():
    assert parse_verdict("thinking...\nVERDICT: multi-answer\nREASON: two roots") == (
        "multi_answer",
        "two roots",
    )
    assert parse_verdict("VERDICT: ok\nVERDICT: Unclear\nREASON: what is x?") == (
        "unclear",
        "what is x?",
    )
    assert parse_verdict("looks fine to me") == ("unparsed", "")
    assert parse_verdict("VERDICT: maybe") == ("unparsed", "")


# ----------------------------------------------------------------- a generated pool

SUM = "Compute the sum of the first 10 positive integers."
LONG = " ".join(f"word{i}" for i in range(30))  # 30 distinct tokens: 28 trigrams
NEAR = " ".join([f"word{i}" for i in range(29)] + ["changed"])  # shares 27 of 29 trigrams
FAR = " ".join(f"word{i}" if i not in (10, 20) else f"x{i}" for i in range(30))  # 22 of 34
EVAL = " ".join(f"evalword{i}" for i in range(20))  # 20 tokens: eight 13-grams
ADD = "a, b = map(int, input().split())\nprint(a + b)\n"
SUB = "a, b = map(int, input().split())\nprint(a - b)\n"
TESTS = {"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]}
CHECK = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(5, 5) == 10\n"


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def make_pool(d: Path) -> list[Path]:
    """Four sources in four schemas; the expected fate of every row is in EXPECTED."""
    a = jsonl(
        d / "a.jsonl",
        [
            {"question": SUM, "answer": "55"},  # a:0 kept
            {
                "question": "compute  the SUM of the first 10 positive integers.",
                "answer": "55",
            },  # a:1 exact dup
            {"question": LONG, "answer": "1"},  # a:2 kept
            {"question": NEAR, "answer": "1"},  # a:3 near dup of a:2 (J = 27/29)
            {"question": "What is 6 * 7?"},  # a:4 no answer: rejected
            {"question": "Hint: " + EVAL, "answer": "3"},  # a:5 contains an eval problem
            {"problem": FAR, "final_answer": "2"},  # a:6 kept (J = 22/34 with a:2)
        ],
    )
    b = d / "b.parquet"
    pq.write_table(
        pa.Table.from_pylist(
            [
                {
                    "data_source": "b",
                    "prompt": [
                        {
                            "role": "user",
                            "content": "COMPUTE the sum of the first 10 positive integers .",
                        }
                    ],
                    "ability": "math",
                    "reward_model": {"ground_truth": "55"},
                    "extra_info": {"id": 0},
                },  # b:0 exact dup of a:0
                {
                    "data_source": "b",
                    "prompt": [{"role": "user", "content": "What is the square of 12?"}],
                    "ability": "math",
                    "reward_model": {"ground_truth": "144"},
                    "extra_info": {"id": 1},
                },  # b:1 kept
            ]
        ),
        b,
    )
    c = jsonl(
        d / "c.jsonl",
        [
            {
                "question": "Add two numbers.",
                "input_output": json.dumps(TESTS),
                "solutions": json.dumps([ADD]),
            },  # c:0
            {
                "question": "Add two numbers, again.",
                "input_output": json.dumps({"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n"]}),
                "solutions": json.dumps([ADD]),
            },  # c:1 incomplete tests
            {
                "question": "Add two numbers, once more.",
                "input_output": json.dumps(TESTS),
                "solutions": json.dumps([SUB]),
            },  # c:2
            {
                "question": "Add two numbers without a reference.",
                "input_output": json.dumps(TESTS),
            },  # c:3 kept
            {"question": "Unreadable tests.", "input_output": "{not json"},  # c:4 rejected
        ],
    )
    lc = jsonl(
        d / "d.jsonl",
        [
            {
                "problem_description": "Return a + b.",
                "test": CHECK,
                "entry_point": "Solution().add",
                "prompt": "from typing import *\n",
                "completion": "class Solution:\n    def add(self, a, b):\n        return a + b\n",
            },
            {
                "problem_description": "Return the sum a + b, please.",
                "test": CHECK,
                "entry_point": "Solution().add",
                "prompt": "from typing import *\n",
                "completion": "class Solution:\n    def add(self, a, b):\n        return a * b\n",
            },
        ],
    )
    jsonl(
        d / "eval.jsonl",
        [
            {"question": EVAL, "answer": "3"},
            {"question": "Unrelated evaluation problem.", "answer": "1"},
        ],
    )
    return [a, b, c, lc]


EXPECTED_DROPS = {
    "01_normalise": {"a:4": "missing_column", "c:4": "bad_column"},
    "02_dedup": {"a:1": "exact_duplicate", "a:3": "near_duplicate", "b:0": "exact_duplicate"},
    "03_decontaminate": {"a:5": "contaminated"},
    "04_validate_code": {
        "c:1": "incomplete_tests",
        "c:2": "reference_failed",
        "d:1": "reference_failed",
    },
}
SURVIVORS = ["a:0", "a:2", "a:6", "b:1", "c:0", "c:3", "d:0"]
POOL_STAGES = "data_pass=[normalise,dedup,decontaminate,validate_code]"


def pool_args(d: Path, files: list[Path], out: Path) -> list[str]:
    return [
        f"prep.inputs=[{','.join(str(f) for f in files)}]",
        f"prep.output_dir={out}",
        "prep.workers=2",
        # the code instruction normalise appends is in 6 of the 14 rows: boilerplate here
        POOL_STAGES,
        "data_pass.dedup.boilerplate_min_rows=5",
        f"data_pass.decontaminate.eval_files=[{d / 'eval.jsonl'}]",
        "data_pass.decontaminate.include_val=false",
        f"hydra.run.dir={out / 'run'}",
    ]


def test_pool_keeps_exactly_the_expected_rows_and_reports_every_drop(tmp_path, cache_dir):
    files = make_pool(tmp_path)
    out = tmp_path / "out"
    proc = run_cli("or1-data", pool_args(tmp_path, files, out), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = pq.read_table(out / "final.parquet").to_pylist()
    assert [r["uid"] for r in final] == SURVIVORS
    n_in = 16
    for label, drops in EXPECTED_DROPS.items():
        report = read_jsonl(out / f"{label}_report.jsonl")
        assert {r["uid"]: r["reason"] for r in report} == drops, label
        kept = pq.read_table(out / f"{label}.parquet").num_rows
        assert kept == n_in - len(drops)
        n_in = kept
    reports = {
        s: {r["uid"]: r for r in read_jsonl(out / f"{s}_report.jsonl")} for s in EXPECTED_DROPS
    }
    # reasons name the matching row / the hit / the verifier's verdict
    assert reports["02_dedup"]["a:3"]["details"]["kept_uid"] == "a:2"
    assert reports["02_dedup"]["a:3"]["details"]["jaccard"] == pytest.approx(27 / 29, abs=1e-4)
    assert reports["02_dedup"]["b:0"]["details"]["kept_uid"] == "a:0"
    assert (
        reports["02_dedup"]["b:0"]["file"] == str(files[1])
        and reports["02_dedup"]["b:0"]["row"] == 0
    )
    hit = reports["03_decontaminate"]["a:5"]["details"]["hits"]
    assert hit == [
        {
            "eval_file": str(tmp_path / "eval.jsonl"),
            "eval_row": 0,
            "shared_ngrams": 8,
            "coverage": 1.0,
            "ngram": " ".join(f"evalword{i}" for i in range(13)),
        }
    ]
    assert reports["04_validate_code"]["c:1"]["details"]["message"] == "2 inputs but 1 outputs"
    assert reports["04_validate_code"]["c:2"]["details"]["status"] == "wrong"
    assert reports["01_normalise"]["a:4"]["details"]["row"] == {"question": "What is 6 * 7?"}
    # the survivors: OR1 rows with provenance and the code verdict
    by_uid = {r["uid"]: r for r in final}
    assert sorted(by_uid["a:0"]["provenance"]["duplicates"]) == ["a:1", "b:0"]
    assert by_uid["a:2"]["provenance"]["duplicates"] == ["a:3"]
    assert {u: by_uid[u]["code_validation"] for u in ("c:0", "c:3", "d:0", "a:0")} == {
        "c:0": "passed",
        "c:3": "no_reference",
        "d:0": "passed",
        "a:0": "not_code",
    }
    assert (
        by_uid["c:0"]["ability"] == "code"
        and json.loads(by_uid["c:0"]["reward_model"]["ground_truth"]) == TESTS
    )
    assert by_uid["a:0"]["prompt"] == [{"role": "user", "content": SUM}]
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["rows_in"], summary["rows_out"]) == (16, 7)
    assert [s["dropped"] for s in summary["passes"]] == [2, 3, 1, 3]
    assert summary["passes"][3]["reasons"] == {"incomplete_tests": 1, "reference_failed": 2}
    assert (
        "| 02_dedup | ran | 14 | 11 | 3 | exact_duplicate 2, near_duplicate 1 |"
        in (out / "summary.md").read_text()
    )
    assert "02_dedup" in proc.stdout  # the table is printed

    # run again: every pass is skipped, the result is the same
    before = (out / "04_validate_code.parquet").stat().st_mtime_ns
    proc = run_cli(
        "or1-data", [*pool_args(tmp_path, files, out), "data_pass.dedup.threshold=0.6"], tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    # a changed dedup threshold reruns dedup and what follows it; a:6 (J = 22/34 = 0.65) now goes
    assert [s["status"] for s in summary["passes"]] == ["resumed", "ran", "ran", "ran"]
    assert {r["uid"]: r["details"]["kept_uid"] for r in read_jsonl(out / "02_dedup_report.jsonl")}[
        "a:6"
    ] == "a:2"
    assert [r["uid"] for r in pq.read_table(out / "final.parquet").to_pylist()] == [
        u for u in SURVIVORS if u != "a:6"
    ]
    assert (out / "04_validate_code.parquet").stat().st_mtime_ns != before
    assert not list(out.glob(".*tmp*")) and not list(out.glob("*.progress.jsonl"))


# ------------------------------------------------------------------------ bad input


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    from or1.core.registry import get_registry
    from or1.core.schemas import CONFIG_MODULE, store_schemas

    store_schemas(get_registry())
    with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
        return hydra_compose(config_name="data_prep", overrides=overrides)


def run_in_process(tmp_path: Path, inputs: list[Path], extra: list[str]) -> Path:
    from or1.commands.prepare_data import run_pipeline

    out = tmp_path / "out"
    cfg = compose([f"prep.inputs=[{','.join(map(str, inputs))}]", f"prep.output_dir={out}", *extra])
    run_pipeline(cfg, out)
    return out


def assert_nothing_complete(out: Path) -> None:
    left = sorted(p.name for p in out.iterdir()) if out.exists() else []
    assert not [n for n in left if n.endswith(".parquet") or n.startswith(("summary", "."))], left


def test_unknown_schema_is_an_error_naming_the_file_and_row(tmp_path, cache_dir):
    bad = jsonl(tmp_path / "odd.jsonl", [{"foo": 1, "bar": 2}])
    with pytest.raises(DataError, match=r"odd\.jsonl: row 0: unknown schema \(columns: bar, foo\)"):
        run_in_process(tmp_path, [bad], [POOL_STAGES])
    assert_nothing_complete(tmp_path / "out")
    # a file with a question but no answer column is no known schema either
    half = jsonl(tmp_path / "half.jsonl", [{"question": "What is 1 + 1?"}])
    with pytest.raises(
        DataError, match=r"half\.jsonl: row 0: unknown schema \(columns: question\)"
    ):
        run_in_process(tmp_path, [half], [POOL_STAGES])


def test_missing_columns_name_the_file_and_row(tmp_path, cache_dir):
    rows = [{"question": "What is 1 + 1?", "answer": "2"}, {"question": "What is 2 + 2?"}]
    qa = jsonl(tmp_path / "qa.jsonl", rows)
    with pytest.raises(DataError, match=r"qa\.jsonl: row 1: missing column 'answer'"):
        run_in_process(tmp_path, [qa], [POOL_STAGES, "data_pass.normalise.strict=true"])
    assert_nothing_complete(tmp_path / "out")
    # without normalise, the first pass needs OR1 rows: row 1 lacks 'ability'
    or1 = jsonl(
        tmp_path / "or1.jsonl",
        [
            {"prompt": "What is 1 + 1?", "ability": "math", "reward_model": {"ground_truth": "2"}},
            {"prompt": "What is 2 + 2?", "reward_model": {"ground_truth": "4"}},
        ],
    )
    with pytest.raises(DataError, match=r"or1\.jsonl: row 1: missing column 'ability'"):
        run_in_process(tmp_path, [or1], ["data_pass=[dedup]"])
    assert_nothing_complete(tmp_path / "out")


def test_corrupt_parquet_is_one_line_and_leaves_no_complete_output(tmp_path, cache_dir):
    files = make_pool(tmp_path)
    out = tmp_path / "out"
    assert run_cli("or1-data", pool_args(tmp_path, files, out), tmp_path).returncode == 0
    assert (out / "final.parquet").is_file()
    # the same folder, now with a truncated parquet input: the error names it, and the
    # previous run's final output and summary are gone, not left looking complete
    good = pq.read_table(files[1])
    broken = tmp_path / "broken.parquet"
    pq.write_table(good, broken)
    broken.write_bytes(broken.read_bytes()[:-20])
    proc = run_cli("or1-data", [*pool_args(tmp_path, [*files, broken], out)], tmp_path)
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        .splitlines()[-1]
        .startswith(f"or1: error: {broken}: row 0: not a readable parquet file")
    )
    assert "Traceback" not in proc.stderr
    assert not (out / "final.parquet").exists() and not (out / "summary.json").exists()
    assert not list(out.glob(".*"))


# -------------------------------------------------------------------------- judge


class FakeJudgeEngine:
    """Replies with canned texts, in the order the prompts arrive (the judge model is not what
    this test is about; the pass's templating, parsing, dropping and resuming are)."""

    def __init__(self, replies: list[str]):
        self.replies = list(replies)
        self.prompts: list[list[int]] = []

    def generate(self, prompts, params):
        from or1.core.types import Completion

        out = []
        for ids in prompts:
            reply = self.replies[len(self.prompts)]
            self.prompts.append(list(ids))
            out.append([Completion(list(ids), [], [], "stop", reply)] * params.n)
        return out

    def close(self):
        pass


def test_judge_keeps_verdicts_and_drops_flagged_rows(tmp_path, tiny_model, cache_dir):
    from rich.progress import Progress

    from or1.commands.prepare_data import PrepContext
    from or1.core.registry import get_registry
    from or1.launch.prepare import load_tokenizer
    from or1_plugins.data_pass.judge import Judge

    cfg = compose(
        [
            f"prep.output_dir={tmp_path}",
            "data_pass.judge.enabled=true",
            "data_pass.judge.template='Check {ability}: {problem} answer {answer}'",
        ]
    )
    tok = load_tokenizer(tiny_model)
    engine = FakeJudgeEngine(
        ["VERDICT: ok\nREASON: fine", "VERDICT: unclear\nREASON: which x?", "no idea"]
    )
    ctx = PrepContext(cfg, get_registry(), tmp_path, Progress(disable=True))
    ctx._engines["__policy__"] = (engine, tok)
    ctx.prefix, ctx.fingerprint = tmp_path / "05_judge", "f" * 16
    rows = [
        {
            "uid": f"t:{i}",
            "prompt": [{"role": "user", "content": q}],
            "ability": "math",
            "reward_model": {"ground_truth": str(i)},
        }
        for i, q in enumerate(["1 + 1", "2 + 2", "3 + 3"])
    ]
    judge = Judge(cfg.data_pass.judge)
    assert judge.message(rows[1]) == "Check math: 2 + 2 answer 1"
    result = judge.run(rows, ctx)
    assert [(r["uid"], r["judge_verdict"], r["judge_reason"]) for r in result.rows] == [
        ("t:0", "ok", "fine"),
        ("t:2", "unparsed", ""),
    ]
    assert [(d.uid, d.reason, d.details) for d in result.dropped] == [
        ("t:1", "judge_unclear", {"reason": "which x?"})
    ]
    expected_ids = tok.apply_chat_template(
        [{"role": "user", "content": judge.message(rows[0])}],
        tokenize=True,
        add_generation_prompt=True,
        return_dict=False,
    )
    assert engine.prompts[0] == list(expected_ids)
    # the replies were logged: a second run asks the engine nothing and gives the same result
    again = Judge(cfg.data_pass.judge).run(rows, ctx)
    assert len(engine.prompts) == 3 and [r["uid"] for r in again.rows] == ["t:0", "t:2"]


# ------------------------------------------------- the CPU demo's pool, then training


@pytest.mark.slow  # data preparation then a training run (~30-50 s): make test-slow
def test_demo_pool_pipeline_then_training_on_its_output(tmp_path, cache_dir):
    out = tmp_path / "prep"
    args = [
        *UNTRAINED_MODEL,
        "data.num_train=48",
        "data.num_val=16",
        "trainer.num_threads=1",
        f"prep.output_dir={out}",
        f"hydra.run.dir={out / 'run'}",
        "data_pass.difficulty.samples=2",
        "data_pass.difficulty.max_tokens=8",
    ]
    # the untrained model solves nothing: with the default band [1, 1] every problem is too hard
    proc = run_cli("or1-data", args, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [(s["pass"], s["status"]) for s in summary["passes"]] == [
        ("01_normalise", "ran"),
        ("02_dedup", "ran"),
        ("03_decontaminate", "ran"),
        ("04_validate_code", "ran"),
        ("05_judge", "disabled"),
        ("06_difficulty", "ran"),
    ]
    # the generated pool has no duplicate and no held-out problem (its splits are disjoint)
    pool = pq.read_table(summary["inputs"][0]).to_pylist()
    assert len({r["prompt"][0]["content"] for r in pool}) == len(pool) == 48
    assert [s.get("rows_out") for s in summary["passes"]] == [48, 48, 48, 48, None, 0]
    assert summary["passes"][-1]["reasons"] == {"too_hard": 48}
    # a band that admits 0 correct keeps everything; only the difficulty pass runs again
    proc = run_cli("or1-data", [*args, "data_pass.difficulty.min_correct=0"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert [s["status"] for s in summary["passes"]] == ["resumed"] * 4 + ["disabled", "ran"]
    final = pq.read_table(out / "final.parquet").to_pylist()
    assert len(final) == 48 and {r["pass_rate"] for r in final} == {0.0}
    data = tmp_path / "train.parquet"
    shutil.copyfile(out / "final.parquet", data)
    proc = run_cli(
        "or1-train",
        [
            *FAST_RUN,
            f"data.path={data}",
            "trainer.total_steps=2",
            f"hydra.run.dir={tmp_path / 'train'}",
        ],
        tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(read_jsonl(tmp_path / "train" / "metrics.jsonl")) == 2


@pytest.mark.parametrize("min_coverage, dropped", [(0.0, True), (0.3, False)])
def test_decontaminate_min_coverage(tmp_path, cache_dir, min_coverage, dropped):
    from rich.progress import Progress

    from or1.commands.prepare_data import PrepContext
    from or1.core.registry import get_registry
    from or1_plugins.data_pass.decontaminate import Decontaminate

    jsonl(tmp_path / "eval.jsonl", [{"question": EVAL, "answer": "3"}])
    cfg = compose(
        [
            f"data_pass.decontaminate.eval_files=[{tmp_path / 'eval.jsonl'}]",
            "data_pass.decontaminate.include_val=false",
            f"data_pass.decontaminate.min_coverage={min_coverage}",
        ]
    )
    ctx = PrepContext(cfg, get_registry(), tmp_path, Progress(disable=True))
    # the first 14 of the 20 evaluation tokens: 2 of its 8 13-grams (coverage 0.25)
    part = " ".join(f"evalword{i}" for i in range(14))
    row = {"uid": "t:0", "prompt": [{"role": "user", "content": f"Solve: {part} now"}]}
    result = Decontaminate(cfg.data_pass.decontaminate).run([row], ctx)
    if dropped:
        (hit,) = result.dropped[0].details["hits"]
        assert (hit["shared_ngrams"], hit["coverage"]) == (2, 0.25)
    else:
        assert [r["uid"] for r in result.rows] == ["t:0"]


def test_validate_code_resumes_from_its_work_log(tmp_path, cache_dir):
    from rich.progress import Progress

    from or1.commands.prepare_data import PrepContext
    from or1.core.registry import get_registry
    from or1_plugins.data_pass.validate_code import ValidateCode

    cfg = compose(["prep.workers=2"])
    rows = [
        {
            "uid": f"c:{i}",
            "prompt": [{"role": "user", "content": f"Add, version {i}."}],
            "ability": "code",
            "reward_model": {"ground_truth": json.dumps(TESTS)},
            "extra_info": {"reference_solution": ref},
        }
        for i, ref in enumerate([ADD, SUB])
    ]

    def run():
        ctx = PrepContext(cfg, get_registry(), tmp_path, Progress(disable=True))
        ctx.prefix, ctx.fingerprint = tmp_path / "04_validate_code", "a" * 16
        try:
            return ValidateCode(cfg.data_pass.validate_code).run(rows, ctx), len(ctx._verifiers)
        finally:
            ctx.close()

    first, built = run()
    assert built == 1 and [r["uid"] for r in first.rows] == ["c:0"]
    assert [(d.uid, d.reason) for d in first.dropped] == [("c:1", "reference_failed")]
    log = tmp_path / f"04_validate_code.{'a' * 16}.progress.jsonl"
    assert [json.loads(line)["uid"] for line in log.read_text().splitlines()] == ["c:0", "c:1"]
    # an interrupted second attempt: the recorded verdicts are reused, no sandbox is built
    second, built = run()
    assert built == 0 and [r["uid"] for r in second.rows] == ["c:0"]
    assert [(d.uid, d.reason) for d in second.dropped] == [("c:1", "reference_failed")]
