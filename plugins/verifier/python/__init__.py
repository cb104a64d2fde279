"""Built-in plugin: the ``python`` reward verifier (a reward function in one file of yours).

Importing this package is cheap and never imports the user's file: that happens in the worker
processes, started when the verifier is built.
"""

from or1.core.hookspecs import hookimpl

from .verifier import PythonVerifier, PythonVerifierConfig

__all__ = ["PythonVerifier", "PythonVerifierConfig", "or1_register"]


@hookimpl
def or1_register(register):
    register("verifier", "python", PythonVerifier, PythonVerifierConfig)
