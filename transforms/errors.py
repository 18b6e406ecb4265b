"""Error types raised by the pipeline's own parsers and steps."""


class KavError(Exception):
    """Base class of every error the pipeline raises on purpose."""


class LineRejected(KavError):
    """An input line that cannot become an event.

    `code` is the short dead-letter reason written to the `error` column, and
    `detail` is one sentence that names the offending value.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class StructuredDataError(KavError):
    """RFC 5424 STRUCTURED-DATA text that does not follow the grammar."""
