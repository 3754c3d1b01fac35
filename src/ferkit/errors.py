"""The one exception type that reaches the user as a single line instead of a traceback."""


class FerError(Exception):
    """A problem with the user's input, files or parameters.

    The message must say which file (and line, item or key) is at fault and what is wrong,
    on one line; the CLI prints it as `fer: error: <message>` and exits non-zero.
    """


def first_line(error: BaseException, limit: int = 160) -> str:
    """A library exception as a short reason for a one-line message: its first line, or its type."""
    text = str(error).strip()
    return (text.splitlines()[0] if text else type(error).__name__)[:limit]
