"""An adversarial equivalence suite for the math verifier: (response, gold, label) triples.

Labels are worked out by hand from the mathematics of each pair (what the response's final
answer denotes vs what the gold denotes), never from what a verifier outputs; a comment argues
each label that is not obvious. The test scores every pair with or1's ``math`` verifier (its
worker processes, as in training) and, independently, with math-verify's own forward
``verify(parse(gold), parse(response))``, and asserts:

* no false positive: no pair labelled 0 is scored 1 by or1 (a reward a wrong answer can earn
  is what RL learns to exploit);
* or1 agrees with the labels at least as often as math-verify's forward comparison does.
"""

from __future__ import annotations

import logging

import pytest

from or1_plugins.verifier.math import MathVerifier, MathVerifierConfig

B = "\\boxed"

PAIRS: list[tuple[str, str, int]] = [
    # ---------------------------------------------------------------- numbers
    (f"{B}{{68}}", "68", 1),
    (f"{B}{{68.0}}", "68", 1),
    (f"{B}{{068}}", "68", 1),  # a leading zero does not change an integer
    (f"{B}{{-68}}", "68", 0),
    (f"{B}{{6.8}}", "68", 0),
    (f"{B}{{680}}", "68", 0),
    (f"{B}{{5}}", "5.0", 1),
    (f"{B}{{-0}}", "0", 1),  # -0 = 0
    (f"{B}{{2}}", "-2", 0),
    (f"{B}{{1,000}}", "1000", 1),  # d,ddd: a thousands separator
    (f"{B}{{1{{,}}000}}", "1000", 1),  # {,} is the LaTeX spelling of the same separator
    (f"{B}{{12345678}}", "12,345,678", 1),
    (f"{B}{{12,345,679}}", "12345678", 0),
    (f"{B}{{10^3}}", "1000", 1),
    (f"{B}{{3 \\times 10^{{5}}}}", "300000", 1),
    (f"{B}{{3\\cdot 10^5}}", "300000", 1),
    (f"{B}{{3\\cdot 10^4}}", "300000", 0),
    (f"{B}{{2^{{10}}}}", "1024", 1),
    (f"{B}{{1023}}", "2^{10}", 0),
    (f"{B}{{\\sqrt{{4}}}}", "2", 1),
    (f"{B}{{100000000000000000001}}", "100000000000000000000", 0),  # differ in the last digit
    (f"{B}{{0.5}}", "0.50", 1),
    (f"{B}{{.5}}", "0.5", 1),
    (f"{B}{{0.05}}", "0.5", 0),
    (f"{B}{{3.14}}", "\\pi", 0),  # an approximation of an irrational number is not the number
    (f"{B}{{\\infty}}", "\\infty", 1),
    (f"{B}{{-\\infty}}", "\\infty", 0),
    # Decimal comma: one comma, and the digits after it are not a 3-digit thousands group, so
    # 1,22 can only be the decimal 1.22 as a single number; a pair would need a space or
    # brackets, and 1,22 is no thousands-grouped integer (groups have three digits).
    (f"{B}{{1.22}}", "1,22", 1),
    (f"{B}{{1,22}}", "1.22", 1),
    (f"{B}{{1, 22}}", "1,22", 0),  # the pair (or list) 1 and 22 is not the number 1.22
    (f"{B}{{122}}", "1,22", 0),
    (f"{B}{{0.125}}", "0,125", 1),  # a thousands group never follows a leading 0
    (f"{B}{{125}}", "0,125", 0),
    (f"{B}{{1.5}}", "1{,}5", 1),  # {,} between digits: the LaTeX decimal comma
    (f"{B}{{1000}}", "1,000", 1),
    (f"{B}{{1}}", "1,000", 0),  # d,ddd is read as one thousand (the separator rule above)
    (f"{B}{{(1,22)}}", "(1,22)", 1),
    (f"{B}{{1.22}}", "(1,22)", 0),  # brackets make it a pair, not a decimal
    # ---------------------------------------------------------------- fractions
    (f"{B}{{\\frac{{1}}{{2}}}}", "0.5", 1),
    (f"{B}{{\\dfrac{{1}}{{2}}}}", "\\frac12", 1),
    (f"{B}{{\\frac{{2}}{{4}}}}", "\\frac{1}{2}", 1),
    (f"{B}{{1/2}}", "\\frac{1}{2}", 1),
    (f"{B}{{\\frac{{10}}{{9}}}}", "10/9", 1),
    (f"{B}{{\\tfrac{{7}}{{3}}}}", "\\frac{14}{6}", 1),
    (f"{B}{{\\frac{{-1}}{{2}}}}", "-\\frac{1}{2}", 1),
    (f"{B}{{-\\frac{{1}}{{2}}}}", "\\frac{1}{2}", 0),
    (f"{B}{{\\frac{{1}}{{2}}}}", "\\frac{2}{1}", 0),
    (f"{B}{{\\frac{{1}}{{3}}}}", "0.3333", 0),  # 0.3333 = 3333/10000, not 1/3
    (f"{B}{{0.3333}}", "\\frac{1}{3}", 0),
    (f"{B}{{\\frac{{2}}{{3}}}}", "\\frac{3}{2}", 0),
    (f"{B}{{\\frac{{22}}{{7}}}}", "\\pi", 0),  # 22/7 is rational, pi is not
    (f"{B}{{\\frac{{\\sqrt{{2}}}}{{2}}}}", "\\frac{1}{\\sqrt{2}}", 1),
    (f"{B}{{\\frac{{\\sqrt{{3}}}}{{2}}}}", "\\frac{1}{\\sqrt{2}}", 0),
    (f"{B}{{\\frac{{x+1}}{{2}}}}", "\\frac{x}{2}+\\frac{1}{2}", 1),
    (f"{B}{{\\frac{{a}}{{b}}}}", "\\frac{b}{a}", 0),
    (f"{B}{{\\frac{{1}}{{0}}}}", "1", 0),  # 1/0 is undefined, not 1
    (f"{B}{{1\\frac{{1}}{{2}}}}", "\\frac{3}{2}", 1),  # the mixed number 1 1/2 is 3/2
    (f"{B}{{\\frac{{3}}{{2}}}}", "1.5", 1),
    (f"{B}{{\\frac{{7}}{{4}}}}", "1.75", 1),
    (f"{B}{{\\frac{{7}}{{4}}}}", "1.7", 0),
    # ---------------------------------------------------------------- intervals
    (f"{B}{{(-\\infty, 3)}}", "(-\\infty,3)", 1),
    (f"{B}{{(-\\infty, 3]}}", "(-\\infty,3)", 0),  # 3 belongs to one and not the other
    # A solved inequality in one variable denotes its solution set: x<3 is (-oo,3).
    (f"{B}{{x<3}}", "(-\\infty,3)", 1),
    (f"{B}{{x \\le 3}}", "(-\\infty,3)", 0),
    (f"{B}{{(-\\infty,3)}}", "x<3", 1),
    (f"{B}{{[2,5]}}", "2\\le x\\le 5", 1),
    (f"{B}{{2 \\le x \\le 5}}", "[2,5]", 1),
    (f"{B}{{2 < x \\le 5}}", "[2,5]", 0),
    (f"{B}{{[2,5)}}", "[2,5]", 0),
    (f"{B}{{(2,5)}}", "[2,5]", 0),
    (f"{B}{{[0,1)}}", "[0,1)", 1),
    (f"{B}{{[0,9)}}", "[0,1)", 0),
    (f"{B}{{(1,2]}}", "[1,2)", 0),
    (f"{B}{{(-\\infty,1)\\cup(2,\\infty)}}", "(-\\infty,1)\\cup(2,\\infty)", 1),
    (f"{B}{{(2,\\infty)\\cup(-\\infty,1)}}", "(-\\infty,1)\\cup(2,\\infty)", 1),  # A u B = B u A
    (f"{B}{{(-\\infty,1]\\cup(2,\\infty)}}", "(-\\infty,1)\\cup(2,\\infty)", 0),
    (f"{B}{{x>3}}", "(3,\\infty)", 1),
    (f"{B}{{3<x}}", "(3,\\infty)", 1),
    (f"{B}{{x>-3}}", "(3,\\infty)", 0),
    # The problem's own condition restated is not its solution: a gold (-2,2) asks for the
    # set, and "x^2<4" names no endpoint (it is what was to be solved).
    (f"{B}{{x^2 < 4}}", "(-2,2)", 0),
    (f"{B}{{2}}", "(2,5)", 0),  # an endpoint is not the interval
    # ---------------------------------------------------------------- sets
    (f"{B}{{\\{{1,2,3\\}}}}", "\\{3,2,1\\}", 1),  # sets are unordered
    (f"{B}{{\\{{1,2\\}}}}", "\\{1,2,3\\}", 0),
    (f"{B}{{\\{{1,2,3,4\\}}}}", "\\{1,2,3\\}", 0),
    (f"{B}{{1,2,3}}", "\\{1,2,3\\}", 1),  # the list of all elements is the set
    (f"{B}{{3, 1, 2}}", "1, 2, 3", 1),  # "all solutions" lists are order-free
    # Several boxed answers are one answer of several values when only punctuation / "and"
    # separates them.
    (f"{B}{{1}}, {B}{{2}}, {B}{{3}}", "{1,2,3}", 1),
    (f"{B}{{3}}, {B}{{1}}, {B}{{2}}", "\\{1,2,3\\}", 1),
    (f"{B}{{1}}, {B}{{2}}", "\\{1,2,3\\}", 0),  # a missing solution
    (f"{B}{{1}}, {B}{{2}}, {B}{{3}}, {B}{{4}}", "\\{1,2,3\\}", 0),  # an extra, wrong one
    (f"{B}{{1}} and {B}{{3}}", f"{B}{{1}}, {B}{{3}}", 1),  # a gold of two boxes: both needed
    (f"{B}{{3}}", f"{B}{{1}}, {B}{{3}}", 0),
    (f"{B}{{1}}", f"{B}{{1}}, {B}{{3}}", 0),
    (f"{B}{{\\{{1,3\\}}}}", f"{B}{{1}}, {B}{{3}}", 1),
    (f"{B}{{1, 3}}", f"{B}{{1}} \\text{{ and }} {B}{{3}}", 1),
    (f"{B}{{4}} or {B}{{5}}", "5", 0),  # two different final answers hedge: not "5"
    # The same hedge inside one box, in LaTeX math-verify cannot parse: "4 or 5" (\\lor,
    # \\vee), "4 implies 5", "4 is in 5", "4, ..., 5" name no single value 5.
    (f"{B}{{4 \\lor 5}}", "5", 0),
    (f"{B}{{4 \\vee 5}}", "5", 0),
    (f"{B}{{4 \\Rightarrow 5}}", "5", 0),
    (f"{B}{{4 \\in 5}}", "5", 0),
    (f"{B}{{4, \\dots, 5}}", "5", 0),
    (f"{B}{{4 \\text{{ or }} 5}}", "5", 0),
    (f"{B}{{5}}, {B}{{5}}", "5", 1),  # the same answer twice is still 5
    (f"{B}{{\\emptyset}}", "\\emptyset", 1),
    (f"{B}{{\\emptyset}}", "\\{0\\}", 0),  # {0} has an element
    (f"{B}{{\\{{1,3\\}}}}", "(1,3)", 0),  # a set is neither the pair (1,3) nor the interval
    (f"{B}{{(1,3)}}", "\\{1,3\\}", 0),
    (f"{B}{{\\{{-1, 1\\}}}}", "\\{1,-1\\}", 1),
    (f"{B}{{\\{{-1, 1\\}}}}", "\\{1\\}", 0),
    # ---------------------------------------------------------------- tuples
    (f"{B}{{(1,2)}}", "(1,2)", 1),
    (f"{B}{{(2,1)}}", "(1,2)", 0),  # pairs are ordered
    (f"{B}{{(1,2,3)}}", "(1,2,3)", 1),
    (f"{B}{{(1,3,2)}}", "(1,2,3)", 0),
    (f"{B}{{(1,2)}}", "(1,2,3)", 0),
    (f"{B}{{\\{{1,2,3\\}}}}", "(1,2,3)", 0),  # a set is not an ordered triple
    (f"{B}{{\\left( 3, \\frac{{\\pi}}{{2}} \\right)}}", "(3, \\frac{\\pi}{2})", 1),
    (f"{B}{{(3, \\frac{{\\pi}}{{2}})}}", "(3, \\frac{3\\pi}{2})", 0),
    (f"{B}{{(0.5, 2)}}", "(\\frac{1}{2}, 2)", 1),
    (f"{B}{{(-1, 4)}}", "(-1,4)", 1),
    (f"{B}{{(1, -4)}}", "(-1,4)", 0),
    (f"{B}{{(2, 4, 6)}}", "(2,4,6)", 1),
    (f"{B}{{(2, 4, 7)}}", "(2,4,6)", 0),
    # ---------------------------------------------------------------- equations
    (f"{B}{{2}}", "x^2+y^2=2", 0),  # a number is not a curve: the right-hand side alone
    (f"{B}{{x^2+y^2=2}}", "x^2+y^2=2", 1),
    (f"{B}{{y^2+x^2=2}}", "x^2+y^2=2", 1),
    (f"{B}{{x^2+y^2=4}}", "x^2+y^2=2", 0),
    (f"{B}{{x=5}}", "5", 1),  # "x = 5" gives the value 5
    (f"{B}{{5}}", "x=5", 1),  # the gold's value is 5
    (f"{B}{{x=6}}", "x=5", 0),
    (f"{B}{{y=5}}", "x=5", 0),  # a different unknown
    (f"{B}{{y=2x+3}}", "y=2x+3", 1),
    (f"{B}{{y=3+2x}}", "y=2x+3", 1),
    (f"{B}{{y=2x-3}}", "y=2x+3", 0),
    (f"{B}{{2x-y+3=0}}", "y=2x+3", 1),  # the same line: y = 2x + 3 rearranged
    (f"{B}{{k = \\frac{{1}}{{3}}}}", "\\frac{1}{3}", 1),
    (f"{B}{{k = \\frac{{1}}{{4}}}}", "\\frac{1}{3}", 0),
    (f"{B}{{a=1, b=2}}", "a=1, b=2", 1),
    (f"{B}{{a=2, b=1}}", "a=1, b=2", 0),
    # "x^2-3x+2=0" is the equation to solve, not its solutions {1,2}.
    (f"{B}{{x^2-3x+2=0}}", "\\{1,2\\}", 0),
    (f"{B}{{x^2-3x+2=0}}", "1, 2", 0),
    # ---------------------------------------------------------------- inequalities
    (f"{B}{{x \\ge 2}}", "x\\ge 2", 1),
    (f"{B}{{2 \\le x}}", "x \\ge 2", 1),  # the same relation written the other way round
    (f"{B}{{x > 2}}", "x \\ge 2", 0),  # x = 2 satisfies one and not the other
    (f"{B}{{x \\le 2}}", "x \\ge 2", 0),
    (f"{B}{{2}}", "x \\ge 2", 0),  # a bound is not the inequality
    (f"{B}{{x < 3}}", "x<3", 1),
    (f"{B}{{3 > x}}", "x<3", 1),
    (f"{B}{{x < 4}}", "x<3", 0),
    # ---------------------------------------------------------------- matrices
    (
        f"{B}{{\\begin{{pmatrix}} 1 \\\\ 2 \\end{{pmatrix}}}}",
        "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
        1,
    ),
    (
        f"{B}{{\\begin{{pmatrix}} 2 \\\\ 1 \\end{{pmatrix}}}}",
        "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
        0,
    ),
    (
        f"{B}{{\\begin{{pmatrix}} 0.5 \\\\ 2 \\end{{pmatrix}}}}",
        "\\begin{pmatrix} \\frac{1}{2} \\\\ 2 \\end{pmatrix}",
        1,
    ),
    (  # the bracket style does not change a matrix
        f"{B}{{\\begin{{bmatrix}} 1 & 0 \\\\ 0 & 1 \\end{{bmatrix}}}}",
        "\\begin{pmatrix} 1 & 0 \\\\ 0 & 1 \\end{pmatrix}",
        1,
    ),
    (
        f"{B}{{\\begin{{pmatrix}} 1 & 0 \\\\ 0 & 1 \\end{{pmatrix}}}}",
        "\\begin{pmatrix} 0 & 1 \\\\ 1 & 0 \\end{pmatrix}",
        0,
    ),
    (  # a box whose content spans lines is still one answer
        f"{B}{{\n\\begin{{pmatrix}} 0 & 3 \\\\ 0 & -1 \\end{{pmatrix}}\n}}",
        "\\begin{pmatrix} 0 & 3 \\\\ 0 & -1 \\end{pmatrix}",
        1,
    ),
    (
        f"{B}{{\\begin{{pmatrix}} 0 & 3 \\\\ 0 & 1 \\end{{pmatrix}}}}",
        "\\begin{pmatrix} 0 & 3 \\\\ 0 & -1 \\end{pmatrix}",
        0,
    ),
    (
        f"{B}{{\\begin{{pmatrix}} 2 & 4 \\\\ 6 & 8 \\end{{pmatrix}}}}",
        "2\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
        1,
    ),
    (
        f"{B}{{\\begin{{pmatrix}} 2 & 4 \\\\ 6 & 9 \\end{{pmatrix}}}}",
        "2\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
        0,
    ),
    # ---------------------------------------------------------------- expressions
    (f"{B}{{\\sqrt{{8}}}}", "2\\sqrt{2}", 1),
    (f"{B}{{2\\sqrt{{3}}}}", "\\sqrt{8}", 0),
    (f"{B}{{(x+1)^2}}", "x^2+2x+1", 1),
    (f"{B}{{x^2+2x}}", "x^2+2x+1", 0),
    (f"{B}{{\\pi/2}}", "\\frac{\\pi}{2}", 1),
    (f"{B}{{\\pi}}", "\\frac{\\pi}{2}", 0),
    (f"{B}{{\\binom{{5}}{{2}}}}", "10", 1),
    (f"{B}{{5!}}", "120", 1),
    (f"{B}{{\\log_2 8}}", "3", 1),
    (f"{B}{{\\sin(\\pi/6)}}", "\\frac12", 1),
    (f"{B}{{\\cos(\\pi/6)}}", "\\frac12", 0),
    (f"{B}{{2+3i}}", "3i+2", 1),
    (f"{B}{{2-3i}}", "2+3i", 0),
    (f"{B}{{x+1}}", "y+1", 0),  # different variables, different expressions
    # ---------------------------------------------------------------- units
    (f"{B}{{5\\text{{ cm}}}}", "5", 1),  # the unit is what the question asked in
    (f"{B}{{\\text{{5 cm}}}}", "5", 1),
    (f"{B}{{5 \\text{{ cm}}}}", "5\\text{ cm}", 1),
    (f"{B}{{6\\text{{ cm}}}}", "5", 0),
    (f"{B}{{30^\\circ}}", "30", 1),
    (f"{B}{{30^{{\\circ}}}}", "30^\\circ", 1),
    (f"{B}{{60^\\circ}}", "30^\\circ", 0),
    (f"{B}{{\\$18.90}}", "18.90", 1),
    (f"{B}{{12 \\text{{ meters}}}}", "12", 1),
    (f"{B}{{120 \\text{{ km}}}}", "12", 0),
    (f"{B}{{10\\%}}", "10\\%", 1),
    (f"{B}{{15\\%}}", "10\\%", 0),
    # ---------------------------------------------------------------- text answers
    (f"{B}{{\\text{{Monday}}}}", "\\text{Monday}", 1),
    (f"{B}{{\\text{{Monday}}}}", "Monday", 1),
    (f"{B}{{\\text{{Tuesday}}}}", "Monday", 0),
    (f"{B}{{\\text{{(A)}}}}", "A", 1),  # choice (A) is choice A
    (f"{B}{{A}}", "\\text{(A)}", 1),
    (f"{B}{{B}}", "A", 0),
    (f"{B}{{\\text{{(C)}}}}", "\\text{(B)}", 0),
    (f"{B}{{\\text{{Evelyn}}}}", "\\text{Evelyn}", 1),
    (f"{B}{{\\text{{Evelyn}}}}", "\\text{Carla}", 0),
    (f"{B}{{\\text{{yes}}}}", "\\text{no}", 0),
    (f"{B}{{\\text{{odd}}}}", "\\text{even}", 0),
    (f"{B}{{\\text{{even}}}}", "\\text{even}", 1),
    (f"{B}{{\\text{{No}}}}", "\\text{no}", 1),  # the same word, capitalised
    # ---------------------------------------------------------------- malformed LaTeX
    (f"{B}{{\\frac{{1}}{{2}}", "\\frac{1}{2}", 0),  # the box never closes: no answer given
    (f"{B}{{5", "5", 0),
    (f"{B}{{2\\sqrt{{2}}", "2\\sqrt{2}", 0),
    (f"{B}{{}}", "1", 0),  # an empty box answers nothing
    (f"{B}{{\\text{{}}}}", "1", 0),
    (f"{B}{{)}}", "1", 0),
    (f"{B}{{\\frac{{}}{{}}}}", "0", 0),  # an empty fraction is no number
    (f"{B}{{\\frac12}}", "\\frac{1}{2}", 1),  # TeX's argument shorthand
    (f"{B}{{\\sqrt2}}", "\\sqrt{2}", 1),
    (f"{B}{{\\frac{{1}}{{2}}}}}}", "\\frac{1}{2}", 1),  # a stray brace after a closed box
    (f"{B}{{{{{{5}}}}}}", "5", 1),  # extra grouping braces
    (f"{B}{{\\left(1,2\\right)}}", "(1,2)", 1),
    (f"{B} 5", "5", 1),  # \boxed 5: TeX takes the next token as the argument
    ("\\fbox{7}", "7", 1),
    (f"{B}{{{B}{{7}}}}", "7", 1),  # a box in a box
    # ---------------------------------------------------------------- which answer is read
    (f"<think>{B}{{5}}</think>{B}{{6}}", "5", 0),  # the answer is after the thinking
    (f"<think>{B}{{6}}</think>{B}{{5}}", "5", 1),
    (f"So {B}{{3}} ... wait, no: {B}{{68}}", "68", 1),  # a corrected answer: the last one
    (f"So {B}{{68}} ... wait, no: {B}{{3}}", "68", 0),
    ("The final answer is $\\frac{1}{2}$.", "0.5", 1),
    ("I think it is 42.", "42", 1),
    ("I have no idea.", "42", 0),
    ("The answer is $3$ or $4$.", "4", 0),  # two candidate answers: a hedge
    # $1 + 1$ written over two lines is 1 + 1 = 2; reading "1" out of it is wrong.
    ("The answer is $1\n+1$", "1", 0),
    ("The answer is\n$$\n9\n$$", "9", 1),  # display math may span lines
    # ---------------------------------------------------------------- hard true equivalences
    # (right answers in notations a grader may not read; a 0 here is a missed reward, not a
    # false positive)
    (f"{B}{{\\mathbb{{R}}}}", "(-\\infty,\\infty)", 1),  # the real line
    (f"{B}{{0.\\overline{{3}}}}", "\\frac{1}{3}", 1),  # 0.333... = 1/3
    (f"{B}{{\\frac{{\\pi}}{{3}}}}", "60^\\circ", 1),  # pi/3 radians is 60 degrees
    (f"{B}{{x \\in (1,2)}}", "(1,2)", 1),
    (f"{B}{{\\pm 1}}", "\\{-1,1\\}", 1),  # +-1 names the two values -1 and 1
    (f"{B}{{\\text{{five}}}}", "5", 1),
    (f"{B}{{\\sqrt[3]{{27}}}}", "3", 1),
    (f"{B}{{\\text{{2 and 3}}}}", "2, 3", 1),
]


def _math_verify_forward(response: str, gold: str) -> int:
    """math-verify on its own: ``verify(parse(gold), parse(response))`` with its defaults (the
    gold wrapped in ``$...$`` when it has no delimiters, as math-verify's examples do)."""
    from math_verify import parse, verify

    gold_text = gold if "$" in gold else f"${gold}$"
    return int(bool(verify(parse(gold_text), parse(response))))


@pytest.fixture(scope="module")
def or1_scores() -> list[float]:
    v = MathVerifier(MathVerifierConfig(timeout_s=10.0, workers=2))
    try:
        rows = [
            {"data_source": "adversarial", "reward_model": {"ground_truth": g}} for _, g, _ in PAIRS
        ]
        return [s.value for s in v.score_many([r for r, _, _ in PAIRS], rows)]
    finally:
        v.close()


def test_suite_is_large_and_labelled():
    assert len(PAIRS) >= 150
    assert {label for _, _, label in PAIRS} == {0, 1}
    assert len({(r, g) for r, g, _ in PAIRS}) == len(PAIRS)  # no pair twice


def test_no_false_positives(or1_scores):
    false_positives = [
        (r, g) for (r, g, label), s in zip(PAIRS, or1_scores, strict=True) if label == 0 and s
    ]
    assert false_positives == []


def test_agreement_at_least_math_verify_forward(or1_scores, capsys):
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    mv = [_math_verify_forward(r, g) for r, g, _ in PAIRS]
    labels = [label for _, _, label in PAIRS]
    or1_agree = sum(int(s == label) for s, label in zip(or1_scores, labels, strict=True))
    mv_agree = sum(int(m == label) for m, label in zip(mv, labels, strict=True))
    mv_fp = sum(int(m == 1 and label == 0) for m, label in zip(mv, labels, strict=True))
    with capsys.disabled():
        print(
            f"\nmath adversarial suite: {len(PAIRS)} pairs; or1 agrees on {or1_agree}, "
            f"math-verify forward on {mv_agree} (its false positives: {mv_fp})"
        )
    assert or1_agree >= mv_agree
