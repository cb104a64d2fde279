"""User-facing errors: one clear line naming the culprit, a non-zero exit, no traceback."""

from __future__ import annotations


class Or1Error(Exception):
    """An error caused by the user's input (config, data, model folder, plugin package).

    The command-line entry points print ``or1: error: <message>`` and exit with status 2.
    """


class ConfigError(Or1Error):
    """A config value that cannot be used (unknown component, out-of-range value...)."""


class DataError(Or1Error):
    """A dataset file or row that cannot be used; the message names the file and row."""


class PluginError(Or1Error):
    """A plugin package that conflicts with another or cannot be loaded."""


class TrainingError(Or1Error):
    """A run that cannot go on (repeated non-finite updates, a rollout engine that keeps
    failing); the message says what happened and where the last checkpoint is."""


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (its type name when it has none), for
    the one-line errors above."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
