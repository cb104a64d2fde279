"""Built-in plugin: the ``math`` reward verifier (Skywork-OR1's binary math-verify reward).

Importing this package is cheap: math-verify and sympy load only in the worker processes.
"""

from or1.core.hookspecs import hookimpl

from .verifier import MathVerifier, MathVerifierConfig

__all__ = ["MathVerifier", "MathVerifierConfig", "or1_register"]


@hookimpl
def or1_register(register):
    register("verifier", "math", MathVerifier, MathVerifierConfig)
