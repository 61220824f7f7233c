"""The one exception type users see: a clear, one-line message."""


class DenseprError(Exception):
    """A problem with the user's input or options, reported as one line by the CLI."""


def at_line(path: object, line: int, message: str) -> DenseprError:
    """An error pointing at ``path:line``."""
    return DenseprError(f"{path}:{line}: {message}")
