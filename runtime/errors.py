"""The one error family of barerun: every failure a user can see."""


_CONTROL = {c: f"\\x{c:02x}" for c in range(32)} | {10: "\\n", 13: "\\r", 9: "\\t",
                                                     127: "\\x7f"}


def one_line(text):
    """``text`` with its control characters escaped: an error quotes what
    the user gave (an argument, a key or path from the spec), which may
    hold a newline, and is still one line."""
    return text.translate(_CONTROL)


class ContainerError(Exception):
    """Base of every barerun error; its text is meant for the user, and is
    always one line (control characters in what it quotes are escaped)."""

    def __init__(self, *args):
        if len(args) == 1 and isinstance(args[0], str):
            args = (one_line(args[0]),)
        super().__init__(*args)


class NotFound(ContainerError):
    """No container with that id (or no such bundle/checkpoint)."""


class AlreadyExists(ContainerError):
    """A container with that id exists already."""


class InvalidSpec(ContainerError):
    """config.json is malformed or asks for something unsupported.

    ``field`` is the JSON path of the offending field, e.g. "process.args".
    """

    def __init__(self, field, message):
        self.field = field
        super().__init__(f"invalid spec: {field}: {message}" if field
                         else f"invalid spec: {message}")


class InvalidState(ContainerError):
    """The operation is not legal in the container's current status."""

    def __init__(self, message, status=None):
        self.status = status
        super().__init__(message)


class InvalidId(ContainerError):
    """A container id that barerun refuses before building any path."""


class CheckpointError(ContainerError):
    """CRIU failed: one line, CRIU's words for the cause and where its log
    is; the log's last lines are kept in ``log_tail`` (the CLI writes them
    to its --log file, never to stderr)."""

    def __init__(self, message, log_path=None, log_tail=""):
        self.log_path = log_path
        self.log_tail = log_tail
        text = message
        if log_path:
            text += f" (log: {log_path})"
        super().__init__(text)


class ChildError(ContainerError):
    """A step of the container's init process failed before exec.

    ``step`` names the step ("mount", "pivot_root", "exec" ...), ``path`` the
    object, ``errno`` the kernel's error number.
    """

    def __init__(self, step, message, errno=None, path=None):
        self.step = step
        self.errno = errno
        self.path = path
        super().__init__(f"container init: {step}: {message}")


def os_message(exc):
    """An OSError as one line without Python's "[Errno N]" prefix."""
    if exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return str(exc)
