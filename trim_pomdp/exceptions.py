"""Exceptions raised by trim-pomdp.

Every error the package raises on purpose derives from :class:`TrimPomdpError`, so callers can catch the
package's errors without catching unrelated ones. Each subclass also derives from the built-in exception a
user would expect (``ValueError`` for bad input, ``ImportError`` for a missing extra, ...).
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "DataFormatError",
    "InvalidParameterError",
    "ModelCheckError",
    "NotFittedError",
    "ResourceLimitError",
    "SolverError",
    "TrimPomdpError",
    "ZeroLikelihoodError",
]


class TrimPomdpError(Exception):
    """Base class of every error raised on purpose by trim-pomdp."""


class InvalidParameterError(TrimPomdpError, ValueError):
    """A hyperparameter or argument has a value outside its documented domain."""


class NotFittedError(TrimPomdpError, ValueError, AttributeError):
    """An estimator was used before ``fit``."""


class DataFormatError(TrimPomdpError, ValueError):
    """A data or artifact file is malformed, corrupted or of a foreign format.

    The message names the file and, where it applies, the line and field that was wrong.
    """


class ModelCheckError(TrimPomdpError, ValueError):
    """A POMDP's arrays fail a consistency check (shape, stochasticity, range); the message names the index."""


class ZeroLikelihoodError(TrimPomdpError, FloatingPointError):
    """An observation has zero likelihood under every state of the current belief.

    Attributes
    ----------
    belief, action, observation
        The belief before the update, the action taken and the observation that could not be explained.
    """

    def __init__(self, message: str, *, belief=None, action=None, observation=None):
        super().__init__(message)
        self.belief = belief
        self.action = action
        self.observation = observation


class SolverError(TrimPomdpError, RuntimeError):
    """A solver failed (including failures reported by an external backend such as Julia/SARSOP)."""


class ResourceLimitError(TrimPomdpError, RuntimeError):
    """A model or a solve would exceed a configured limit (memory, time); the message names it and how to raise it."""


class BackendUnavailableError(TrimPomdpError, ImportError):
    """An optional dependency or external backend is missing; the message says what to install."""
