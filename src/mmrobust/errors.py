"""One error hierarchy. Every error a user can cause derives from :class:`MMRobustError`; the
command line catches that base and prints its message in one line (a traceback means a bug).

The classes also derive from the built-in error they refine (``ValueError``, ``KeyError``), so
code that catches those keeps working.
"""
from __future__ import annotations


class MMRobustError(Exception):
    """Base of every error caused by a configuration, a file or data (not by a bug)."""


class ConfigError(MMRobustError, ValueError):
    """A configuration key that does not exist, or a value of the wrong type."""


class UnknownNameError(MMRobustError, KeyError):
    """A name that no registry knows (the message lists the known ones)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ProtocolError(MMRobustError, ValueError):
    """A protocol string that cannot be parsed or does not apply to the data."""


class DataError(MMRobustError, ValueError):
    """Input data that does not match what is expected (names the file, split, row or field)."""


class InputError(DataError):
    """An input to a saved model that cannot become what the model expects."""


class ModelFileError(MMRobustError, ValueError):
    """A saved model, method or checkpoint file that cannot be read, or does not fit its config."""


class NonFiniteOutputError(MMRobustError, ArithmeticError):
    """A model gave NaN or infinite outputs on rows it claims to score (names method, seed, pattern)."""


class UntrustedCodeError(MMRobustError, PermissionError):
    """A model or run folder names code to import (an encoder ``package.module:factory``) and the
    caller did not opt in (``trust_code=True``, ``--trust-code``)."""


class RunFolderBusyError(MMRobustError, BlockingIOError):
    """Another process is writing the run folder (it holds the folder's lock)."""


class WorkerError(MMRobustError, RuntimeError):
    """A worker process of a run died (killed by the system: out of memory?); what it finished is saved."""
