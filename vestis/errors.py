"""Errors that vestis raises on purpose.

Every failure a user can cause (a missing model, a bad image, a malformed
request) is a :class:`VestisError` with a message that names the problem and,
where there is one, the fix.  The CLI and the HTTP service print the message
and never a traceback.
"""

from __future__ import annotations


class VestisError(Exception):
    """Base class: a problem the user can understand and act on."""


class ModelNotFoundError(VestisError):
    """A model name or path that resolves to nothing usable on this machine."""


class ModelFormatError(VestisError):
    """Model files that exist but cannot be read as the format they claim."""


class InputError(VestisError, ValueError):
    """Input of the wrong type, shape or content (texts, images, requests)."""


class ImageError(InputError):
    """An image that cannot be decoded, is empty, or is too large."""


class ConflictError(VestisError):
    """A request that the current state of a resource refuses for now (an index being written
    by another process): retrying later can succeed. The HTTP API answers 409."""


class UnavailableError(VestisError):
    """A service vestis depends on (a catalog's database) cannot be reached now, or the connection to it was
    lost in the middle of a query: retrying later can succeed. The HTTP API answers 503."""
