"""Pseudo-terminals, window sizes, the controlling tty and the console socket.

A pty is a pair of character devices joined by the kernel's line discipline:

- the *master* (opened through ``ptmx``) is held by the runtime, which copies
  bytes between it and the user's terminal;
- the *slave* (``<devpts>/<N>``) becomes the container process's stdin,
  stdout, stderr and controlling terminal.

Every ``ptmx`` belongs to one devpts instance: opening ``<rootfs>/dev/pts/ptmx``
creates a pty inside the container's own devpts, numbered from 0, so the
slave's name is valid inside the container.

``send_fd``/``recv_fd`` speak runc's console-socket protocol: one message
whose data is a name (runc sends ``b"/dev/ptmx"``) and whose ancillary data
carries exactly one file descriptor (SCM_RIGHTS), the pty master.
"""

from __future__ import annotations

import errno
import os
import socket
import termios

from ._ffi import ffi, lib
from .tracing import check, error, trace

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from typing import Any

# Flags for every pty end we open: read/write; never become our controlling
# tty by accident; do not leak into programs we exec.
_OPEN_FLAGS = os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC
_OPEN_FLAGS_TEXT = "O_RDWR|O_NOCTTY|O_CLOEXEC"

# go-runc reads the name into a 4096-byte buffer and rejects a name that
# fills it.
_MAX_NAME = 4096 - 1
# recv_fd makes room for a few descriptors so it can close (not leak) any
# extras a misbehaving peer sends before rejecting the message.
_MAX_FDS = 8


# --- the pty pair ----------------------------------------------------------

def open_pty_master(devpts_ptmx: str = "/dev/ptmx") -> int:
    """Open a new pty master through ``devpts_ptmx`` and unlock its slave.

    open(ptmx) allocates the next free pty in that devpts instance; the slave
    starts locked, and ioctl(TIOCSPTLCK, 0) unlocks it so it can be opened.
    """
    trace("open", path=devpts_ptmx, flags=_OPEN_FLAGS_TEXT)
    try:
        fd = os.open(devpts_ptmx, _OPEN_FLAGS)
    except OSError as exc:
        raise error(exc.errno, f"open pty master {devpts_ptmx}") from None
    try:
        trace("ioctl", fd=fd, req="TIOCSPTLCK", value=0)
        unlock = ffi.new("int *", 0)
        check(lib.barerun_ioctl_int(fd, lib.TIOCSPTLCK, unlock),
              f"ioctl TIOCSPTLCK (unlock) on pty master fd {fd} "
              f"({devpts_ptmx})")
    except BaseException:
        os.close(fd)
        raise
    return fd


def pty_number(master_fd: int) -> int:
    """The slave's number N in its devpts instance: ioctl(TIOCGPTN)."""
    trace("ioctl", fd=master_fd, req="TIOCGPTN")
    number = ffi.new("int *")
    check(lib.barerun_ioctl_int(master_fd, lib.TIOCGPTN, number),
          f"ioctl TIOCGPTN on pty master fd {master_fd}")
    return number[0]


def pty_slave_name(master_fd: int, devpts_dir: str = "/dev/pts") -> str:
    """The slave's path, ``<devpts_dir>/<N>``, where devpts_dir is where the
    master's devpts instance is mounted."""
    return f"{devpts_dir}/{pty_number(master_fd)}"


def open_pty_slave(master_fd: int, devpts_dir: str = "/dev/pts") -> int:
    """Open the slave of ``master_fd`` and return its fd.

    ioctl(TIOCGPTPEER, flags) (Linux 4.13+) opens the peer straight from the
    master, without a path lookup, so it cannot be fooled by whatever is
    mounted at the slave's path.  Kernels without it answer EINVAL or ENOTTY;
    then the slave is opened by name under ``devpts_dir``.
    """
    trace("ioctl", fd=master_fd, req="TIOCGPTPEER", flags=_OPEN_FLAGS_TEXT)
    fd = lib.barerun_ioctl_arg(master_fd, lib.TIOCGPTPEER, _OPEN_FLAGS)
    if fd != -1:
        return fd
    err = ffi.errno
    if err not in (errno.EINVAL, errno.ENOTTY):
        raise error(err, f"ioctl TIOCGPTPEER on pty master fd {master_fd}")
    path = pty_slave_name(master_fd, devpts_dir)
    trace("open", path=path, flags=_OPEN_FLAGS_TEXT)
    try:
        return os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise error(exc.errno, f"open pty slave {path}") from None


# --- window size and controlling terminal -----------------------------------

def set_winsize(fd: int, rows: int, cols: int) -> None:
    """Set the window size of the terminal behind ``fd``: ioctl(TIOCSWINSZ).

    Master and slave share one size; the kernel sends SIGWINCH to the
    foreground process group of the slave when it changes.
    """
    for what, value in (("rows", rows), ("cols", cols)):
        if not 0 <= value <= 0xFFFF:
            raise ValueError(f"window size {what}={value} is out of range "
                             f"0..65535 (fd {fd})")
    trace("ioctl", fd=fd, req="TIOCSWINSZ", rows=rows, cols=cols)
    size = ffi.new("struct winsize *", {"ws_row": rows, "ws_col": cols})
    check(lib.barerun_ioctl_winsize(fd, lib.TIOCSWINSZ, size),
          f"ioctl TIOCSWINSZ on fd {fd}")


def get_winsize(fd: int) -> tuple[int, int]:
    """The window size ``(rows, cols)`` of the terminal behind ``fd``:
    ioctl(TIOCGWINSZ)."""
    trace("ioctl", fd=fd, req="TIOCGWINSZ")
    size = ffi.new("struct winsize *")
    check(lib.barerun_ioctl_winsize(fd, lib.TIOCGWINSZ, size),
          f"ioctl TIOCGWINSZ on fd {fd}")
    return size.ws_row, size.ws_col


def set_controlling_tty(fd: int) -> None:
    """Make the terminal behind ``fd`` our controlling tty: ioctl(TIOCSCTTY, 0).

    The caller must be a session leader without a controlling tty (call
    os.setsid() first); the argument 0 means "do not steal it from another
    session".
    """
    trace("ioctl", fd=fd, req="TIOCSCTTY", arg=0)
    check(lib.barerun_ioctl_arg(fd, lib.TIOCSCTTY, 0),
          f"ioctl TIOCSCTTY on fd {fd}")


# --- raw mode for a relay -----------------------------------------------------

def make_raw(fd: int) -> list[Any]:
    """Put the terminal behind ``fd`` in raw mode; return its old attributes.

    Raw mode is what cfmakeraw(3) sets: no echo, no line editing (ICANON), no
    signals from ^C/^Z (ISIG), no CR/NL translation, 8-bit bytes; read()
    returns as soon as one byte is there.  Keys then reach the container
    untouched and its own line discipline does the work.
    """
    trace("tcgetattr", fd=fd)
    try:
        old = termios.tcgetattr(fd)
    except termios.error as exc:
        raise error(exc.args[0], f"tcgetattr on fd {fd}") from None
    iflag, oflag, cflag, lflag, ispeed, ospeed, cc = (
        old[0], old[1], old[2], old[3], old[4], old[5], list(old[6]))
    iflag &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK
               | termios.ISTRIP | termios.INLCR | termios.IGNCR
               | termios.ICRNL | termios.IXON)
    oflag &= ~termios.OPOST
    lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG
               | termios.IEXTEN)
    cflag = (cflag & ~(termios.CSIZE | termios.PARENB)) | termios.CS8
    cc[termios.VMIN], cc[termios.VTIME] = 1, 0
    restore(fd, [iflag, oflag, cflag, lflag, ispeed, ospeed, cc])
    return old


def restore(fd: int, attrs: list[Any]) -> None:
    """Set terminal attributes ``attrs`` (from make_raw or
    termios.tcgetattr) on ``fd`` now: tcsetattr(TCSANOW)."""
    trace("tcsetattr", fd=fd, when="TCSANOW")
    try:
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
    except termios.error as exc:
        raise error(exc.args[0], f"tcsetattr on fd {fd}") from None


# --- the console socket (runc's --console-socket) ----------------------------

def connect_console_socket(path: str) -> socket.socket:
    """Connect a SOCK_STREAM unix socket to ``path`` (close-on-exec)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        trace("connect", path=path)
        sock.connect(path)
    except OSError as exc:
        sock.close()
        raise error(exc.errno, f"connect console socket {path}") from None
    return sock


def send_fd(sock: socket.socket, fd: int, name: bytes) -> None:
    """Send ``fd`` over unix socket ``sock`` with ``name`` as the data.

    One sendmsg() whose ancillary data is one SCM_RIGHTS message holding
    exactly one fd, so the receiver sees CMSG_SPACE(4) bytes of control data,
    which is all go-runc accepts.
    """
    if not name or len(name) > _MAX_NAME:
        raise ValueError(f"console name must be 1..{_MAX_NAME} bytes, "
                         f"got {len(name)} (fd {fd})")
    trace("sendmsg", sock=sock.fileno(), fd=fd, name=name)
    try:
        sent = socket.send_fds(sock, [name], [fd])
    except OSError as exc:
        raise error(exc.errno, f"sendmsg fd {fd} on console socket fd "
                               f"{sock.fileno()}") from None
    if sent != len(name):
        raise OSError(errno.EIO, f"sendmsg fd {fd} on console socket fd "
                                 f"{sock.fileno()}: sent {sent} of "
                                 f"{len(name)} bytes")


def recv_fd(sock: socket.socket) -> tuple[bytes, int]:
    """Receive ``(name, fd)`` sent by send_fd (or runc) on ``sock``.

    recvmsg(MSG_CMSG_CLOEXEC) installs the received fd with close-on-exec
    already set.  Anything but exactly one SCM_RIGHTS fd is refused, and every
    fd that did arrive is closed first.
    """
    trace("recvmsg", sock=sock.fileno(), flags="MSG_CMSG_CLOEXEC")
    try:
        name, ancillary, flags, _ = sock.recvmsg(
            _MAX_NAME + 1, socket.CMSG_SPACE(_MAX_FDS * 4),
            socket.MSG_CMSG_CLOEXEC)
    except OSError as exc:
        raise error(exc.errno, f"recvmsg on console socket fd "
                               f"{sock.fileno()}") from None
    fds: list[int] = []
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            fds.extend(memoryview(data[:usable]).cast("i"))
    if len(fds) != 1 or len(ancillary) != 1 or flags & socket.MSG_CTRUNC:
        for fd in fds:
            os.close(fd)
        raise OSError(errno.EBADMSG,
                      f"recvmsg on console socket fd {sock.fileno()}: "
                      f"expected one SCM_RIGHTS fd, got {len(fds)} fds in "
                      f"{len(ancillary)} control messages"
                      + (" (truncated)" if flags & socket.MSG_CTRUNC else ""))
    return name, fds[0]
