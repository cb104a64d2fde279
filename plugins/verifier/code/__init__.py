"""Built-in plugin: the ``code`` reward verifier (unit tests run in a bubblewrap sandbox).

Importing this package is cheap and runs nothing; the sandbox is probed when the verifier is
built.
"""

from or1.core.hookspecs import hookimpl

from .verifier import CodeVerifier, CodeVerifierConfig

__all__ = ["CodeVerifier", "CodeVerifierConfig", "or1_register"]


@hookimpl
def or1_register(register):
    register("verifier", "code", CodeVerifier, CodeVerifierConfig)
