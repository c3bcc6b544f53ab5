"""Every error the emulator raises, in one module.

Request-level errors map to one kind of answer each: a JSON error (EmulatorError and MetadataError), an
entry in an executeOperations error list (OperationError, StoredButRejected), a 400 "Syntax error"
(NQLSyntaxError), a 400 web page (PageError) or a 413 (BodyTooLarge). DataDirectoryError stops the
emulator from starting on a data directory it cannot use.
"""

from __future__ import annotations


class EmulatorError(Exception):
    """A request-level error: HTTP status, Neptune errorType and a message."""

    def __init__(self, status: int, message: str, error_type: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type


class MetadataError(EmulatorError):
    """A write the data model refuses (type clash, read-only field, bad path).

    Upload endpoints report it in their `errors` list with status 200, as the real server does, so
    the client logs it and drops the data instead of treating it as a failed request.
    """

    def __init__(self, message: str) -> None:
        super().__init__(400, message, "METADATA_INCONSISTENCY")


class OperationError(Exception):
    """One rejected operation (reported in the executeOperations response)."""


class StoredButRejected(OperationError):
    """Some points were stored, others rejected for their step."""

    def __init__(self, message: str, stored: int) -> None:
        super().__init__(message)
        self.stored = stored


class NQLSyntaxError(ValueError):
    """The query is not valid NQL (the server answers 400 "Syntax error")."""


class PageError(Exception):
    """A bad request parameter of a web page: answered with a 400 page naming the parameter."""


class BodyTooLarge(Exception):
    """A request body over the configured limit (answered 413)."""


class DataDirectoryError(Exception):
    """A data directory the emulator cannot open (written by a newer emulator)."""
