"""``or1-data``'s text passes on a synthetic pool: rows/s of ``dedup`` and ``decontaminate``.

    .venv/bin/python benchmarks/data_prep.py [--rows 20000 --eval 400]

The pool: ``--rows`` math problems of 40-80 random words each (a vocabulary of 5000 words),
10% of them copies of an earlier original with one word changed (near duplicates: token
trigram Jaccard (T-3)/(T+3) >= 0.85 for T >= 38 trigrams) and up to 2% verbatim copies of
the ``--eval`` evaluation problems (each at most once). The
passes run as ``or1-data`` runs them (their default config); the last line is
``dedup_rows_per_s=<d> decontaminate_rows_per_s=<c> near=<n> exact=<e> contaminated=<k>``,
and the dropped counts must equal the planted ones.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path


def make_pool(n: int, n_eval: int, seed: int = 0) -> tuple[list[dict], list[str], dict[str, int]]:
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(5000)]

    def problem() -> list[str]:
        return rng.choices(vocab, k=rng.randint(40, 80))

    evals = [" ".join(problem()) for _ in range(n_eval)]
    unused_evals = list(range(n_eval))
    rng.shuffle(unused_evals)
    originals: list[str] = []
    texts: list[str] = []
    planted = {"near_duplicate": 0, "contaminated": 0}
    for _ in range(n):
        u = rng.random()
        if originals and u < 0.10:  # one word of an original changed
            words = rng.choice(originals).split()
            words[rng.randrange(len(words))] = "changed"
            texts.append(" ".join(words))
            planted["near_duplicate"] += 1
        elif unused_evals and u < 0.12:  # an evaluation problem, each at most once
            texts.append(evals[unused_evals.pop()])
            planted["contaminated"] += 1
        else:
            originals.append(" ".join(problem()))
            texts.append(originals[-1])
    rows = [
        {
            "uid": f"pool:{i}",
            "provenance": {"file": "pool", "row": i},
            "data_source": "synthetic",
            "prompt": [{"role": "user", "content": t}],
            "ability": "math",
            "reward_model": {"ground_truth": "1"},
        }
        for i, t in enumerate(texts)
    ]
    return rows, evals, planted


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=20000)
    p.add_argument("--eval", type=int, default=400)
    args = p.parse_args()

    from hydra import compose, initialize_config_module
    from rich.progress import Progress

    from or1.commands.prepare_data import PrepContext
    from or1.core.registry import get_registry
    from or1.core.schemas import CONFIG_MODULE, store_schemas

    rows, evals, planted = make_pool(args.rows, args.eval)
    tmp = Path(tempfile.mkdtemp(prefix="or1-bench-data-"))
    (tmp / "eval.jsonl").write_text(
        "".join(json.dumps({"question": e, "answer": "1"}) + "\n" for e in evals)
    )
    registry = get_registry()
    store_schemas(registry)
    with initialize_config_module(config_module=CONFIG_MODULE, version_base=None):
        cfg = compose(
            config_name="data_prep",
            overrides=[
                f"data_pass.decontaminate.eval_files=[{tmp / 'eval.jsonl'}]",
                "data_pass.decontaminate.include_val=false",
            ],
        )
    ctx = PrepContext(cfg, registry, tmp, Progress(disable=True))
    dedup = registry.build("data_pass", cfg.data_pass.dedup, ctx)
    t0 = time.perf_counter()
    after_dedup = dedup.run(rows, ctx)
    t_dedup = time.perf_counter() - t0
    decon = registry.build("data_pass", cfg.data_pass.decontaminate, ctx)
    t0 = time.perf_counter()
    after_decon = decon.run(after_dedup.rows, ctx)
    t_decon = time.perf_counter() - t0
    reasons: dict[str, int] = {}
    for d in after_dedup.dropped + after_decon.dropped:
        reasons[d.reason] = reasons.get(d.reason, 0) + 1
    near, exact = reasons.get("near_duplicate", 0), reasons.get("exact_duplicate", 0)
    print(f"planted: {planted}; dropped: {reasons}")
    print(
        f"dedup: {len(rows)} rows in {t_dedup:.2f} s; decontaminate: {len(after_dedup.rows)} rows in {t_decon:.2f} s"
    )
    print(
        f"dedup_rows_per_s={len(rows) / t_dedup:.0f} decontaminate_rows_per_s={len(after_dedup.rows) / t_decon:.0f} "
        f"near={near} exact={exact} contaminated={reasons.get('contaminated', 0)}"
    )


if __name__ == "__main__":
    main()
