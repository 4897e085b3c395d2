"""A container's stdio: barerun is its own shim.

In the library, the container's fds 0/1/2 are pipes that barerun makes and
owns; one relay thread per stream copies between a pipe and what the
caller gave in ``IO`` (a path to a FIFO or file, an open fd).  CRIU can
dump and re-attach pipes, and ``close_stdin`` needs a writing side barerun
owns.  A stream given as None is /dev/null, with no relay.  The CLI passes
its own fds straight through (``IO.inherit()``), as runc does.
"""

from __future__ import annotations

import errno
import os
import threading

TYPE_CHECKING = False  # typing is not imported at run time (CLI start-up)
if TYPE_CHECKING:
    from typing import Any

_INHERIT = "inherit"


class IO:
    """stdin/stdout/stderr: a path (FIFO or file), an open fd, or None
    (/dev/null); terminal: the process gets a pty (see console.py)."""

    __slots__ = ("stdin", "stdout", "stderr", "terminal")

    def __init__(self, stdin: int | str | None = None, stdout: int | str | None = None,
                 stderr: int | str | None = None, terminal: bool = False) -> None:
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.terminal = terminal

    def __repr__(self):
        return (f"IO(stdin={self.stdin!r}, stdout={self.stdout!r}, "
                f"stderr={self.stderr!r}, terminal={self.terminal!r})")

    def __eq__(self, other):
        return isinstance(other, IO) and all(getattr(self, k) == getattr(other, k)
                                             for k in self.__slots__)

    @classmethod
    def inherit(cls, terminal: bool = False) -> IO:
        """The caller's own fds 0, 1, 2 become the container's (CLI use)."""
        return cls(_INHERIT, _INHERIT, _INHERIT, terminal)


def copy(src, dst):
    """Copy from fd ``src`` to fd ``dst`` until EOF (or EIO: a pty whose
    other side is gone), then close both."""
    try:
        while True:
            try:
                data = os.read(src, 65536)
            except OSError:
                break
            if not data:
                break
            while data:
                data = data[os.write(dst, data):]
    except OSError:
        pass
    finally:
        close_fd(src)
        close_fd(dst)


class Relay(threading.Thread):
    """Copies bytes from ``src`` (fd) to a destination until EOF."""

    def __init__(self, name, src, dst):
        super().__init__(name=f"barerun-relay-{name}", daemon=True)
        self.src: Any = src  # an fd or a path
        self.dst: Any = dst  # an fd, or a function that opens one (in the thread)

    def discard(self):
        """Close the fds of a relay that was never started."""
        close_fd(self.src)
        if isinstance(self.dst, int):
            close_fd(self.dst)

    def run(self):
        try:
            dst = self.dst() if callable(self.dst) else self.dst
        except OSError:
            close_fd(self.src)
            return
        copy(self.src, dst)


def close_fd(fd):
    try:
        os.close(fd)
    except OSError:
        pass


def _opener(path, flags):
    def open_it():
        return os.open(path, flags | os.O_CLOEXEC, 0o644)
    return open_it


class Stdio:
    """The three fds handed to the container and the relays behind them."""

    def __init__(self):
        self.child: list[int | None] = [None, None, None]  # fds the child dups onto 0, 1, 2
        self.relays = []
        self.stdin_writer = None  # barerun's writing side of the stdin pipe
        self._stdin_relay = None

    def close_child_side(self):
        """After fork: the parent no longer needs the container's ends."""
        for fd in self.child:
            if fd is not None and fd > 2:
                close_fd(fd)
        self.child = [None, None, None]

    def start(self):
        for r in self.relays:
            r.start()

    def close_stdin(self):
        """EOF on the container's stdin (after what was already written)."""
        if self._stdin_relay is not None:
            if self._stdin_relay.is_alive() or not self._stdin_relay.ident:
                if self._stdin_relay.ident:
                    self._stdin_relay.close()
                else:  # never started (a failed create): close its fds
                    self._stdin_relay.discard()
            self._stdin_relay = None
            self.stdin_writer = None
        elif self.stdin_writer is not None:
            close_fd(self.stdin_writer)
            self.stdin_writer = None

    def discard(self):
        """After a failed create/restore: close every fd this Stdio holds,
        the relays' too when they never started."""
        self.close_child_side()
        self.close_stdin()
        for r in self.relays:
            if r.ident is None:
                r.discard()

    def join(self, timeout=1.0):
        for r in self.relays:
            if r.name.endswith("stdin"):
                continue
            r.join(timeout)


def open_stdio(io):
    """Build the container's stdio from an IO; returns a Stdio."""
    s = Stdio()
    if io is None:
        io = IO()
    specs = [io.stdin, io.stdout, io.stderr]
    devnull = None
    for i, what in enumerate(specs):
        if what == _INHERIT:
            s.child[i] = i
            continue
        if what is None:
            if devnull is None:
                devnull = os.open("/dev/null", os.O_RDWR | os.O_CLOEXEC)
            s.child[i] = os.dup(devnull)
            continue
        r, w = os.pipe2(os.O_CLOEXEC)
        if i == 0:
            # caller -> relay -> pipe -> container
            s.child[0] = r
            s.stdin_writer = w
            relay = _StdinRelay(os.dup(what) if isinstance(what, int) else os.fspath(what), w)
            s._stdin_relay = relay
            s.relays.append(relay)
        else:
            s.child[i] = w
            name = "stdout" if i == 1 else "stderr"
            if isinstance(what, int):
                dst = os.dup(what)
            else:
                dst = _opener(os.fspath(what), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            s.relays.append(Relay(name, r, dst))
    if devnull is not None:
        os.close(devnull)
    return s


class _StdinRelay(Relay):
    """caller -> container stdin.  ``close()`` ends it: whatever the caller
    wrote up to then is still delivered, then the container sees EOF."""

    def __init__(self, src, w):
        super().__init__("stdin", src, w)
        self._wake_r: Any
        self._wake_w: Any
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC)

    def close(self):
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def discard(self):
        """Close every fd of a relay that was never started (once)."""
        for fd in (self.src if isinstance(self.src, int) else None, self.dst,
                   self._wake_r, self._wake_w):
            if fd is not None:
                close_fd(fd)
        self.src = self.dst = self._wake_r = self._wake_w = None

    def _source(self):
        if isinstance(self.src, int):
            return self.src
        return os.open(self.src, os.O_RDONLY | os.O_CLOEXEC)  # a FIFO waits for a writer

    def run(self):
        import select
        src = None
        try:
            src = self._source()
            poll = select.poll()
            poll.register(src, select.POLLIN)
            poll.register(self._wake_r, select.POLLIN)
            closing = False
            while True:
                events = dict(poll.poll(0 if closing else None))
                if self._wake_r in events:
                    closing = True
                if src in events:
                    data = os.read(src, 65536)
                    if not data:
                        break
                    while data:
                        data = data[os.write(self.dst, data):]
                elif closing:
                    break  # nothing more pending
        except OSError:
            pass
        finally:
            if src is not None:
                close_fd(src)
            for fd in (self.dst, self._wake_r, self._wake_w):
                close_fd(fd)


def reopen_null():
    """In the child, inside the container: any of fds 0-2 that is the
    host's /dev/null (char device 1:3) is re-opened as the container's own
    /dev/null, as runc does.  A host file open in the container would stop
    CRIU ("Can't lookup mount=... for fd=0") from dumping it."""
    import stat
    slots = []
    for i in range(3):
        try:
            st = os.fstat(i)
        except OSError:
            continue
        if stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3):
            slots.append(i)
    if not slots:
        return
    from .rootfs import StepError, open_null
    try:
        fd = open_null(os.O_RDWR)
    except StepError as exc:
        if isinstance(exc.exc, FileNotFoundError):
            return  # no /dev/null in the container: keep the host's
        raise
    for i in slots:
        os.dup2(fd, i)
    if fd not in slots:
        os.close(fd)


def set_child_stdio(fds):
    """In the child: make fds[0..2] the process's 0, 1, 2 (inheritable)."""
    # copy every source first, so one dup2 cannot overwrite another's source
    srcs = [fd if fd is None or fd == i else os.dup(fd) for i, fd in enumerate(fds)]
    for i, fd in enumerate(srcs):
        if fd is None:
            continue
        if fd != i:
            os.dup2(fd, i, inheritable=True)
        else:
            os.set_inheritable(i, True)


__all__ = ["IO", "Stdio", "open_stdio", "set_child_stdio", "errno"]
