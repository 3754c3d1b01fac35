"""The one exception type that reaches the user as a single line instead of a traceback."""


class FerError(Exception):
    """A problem with the user's input, files or parameters.

    The message must say which file (and line, item or key) is at fault and what is wrong,
    on one line; the CLI prints it as `fer: error: <message>` and exits non-zero.
    """
