"""``or1-verify``: score a JSONL file of responses with or1's reward verifiers.

    or1-verify rows.jsonl                      # -> rows.verified.jsonl beside the input
    or1-verify rows.jsonl -o scored.jsonl --workers 4
    or1-verify rows.jsonl -o - --set routes.code.test_timeout_s=10 --set routes.code.partial_credit=true

Each input row holds ``ability`` (``math`` | ``code``), ``response`` (the model's text) and
``ground_truth`` (or ``reward_model.ground_truth``, as in dataset rows; any schema the routed
verifier accepts). Each output row is the input row plus ``score`` (0.0-1.0), ``status``
(``correct``, ``wrong``, ``no_answer``, ``timeout``, ``error``) and ``message`` (why), in input
order. A broken row (invalid JSON, a missing field, an unusable ground truth) gets status
``error`` and a message; the command goes on. The verifier is ``auto`` (routes by ability)
unless ``--verifier`` names another registered one; ``--set KEY=VALUE`` overrides its config.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from or1.cli.common import guarded
from or1.commands.verify_rows import run


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="or1-verify", description=__doc__.split("\n\n")[0])
    p.add_argument("input", help="JSONL file: one {ability, response, ground_truth} row per line")
    p.add_argument(
        "-o", "--output", help="output JSONL ('-': stdout; default: INPUT.verified.jsonl)"
    )
    p.add_argument(
        "--workers", type=int, default=0, help="parallel workers per verifier (0: all cores)"
    )
    p.add_argument("--verifier", default="auto", help="registered verifier to use (default: auto)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="verifier config override"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(argv)


@guarded
def main(argv: Sequence[str] | None = None) -> None:
    run(parse_args(argv))


if __name__ == "__main__":
    main()
