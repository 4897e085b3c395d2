"""Terminals: a pty made in the container's own devpts.

The init (or an exec'd process) opens /dev/ptmx *inside* the container
after pivot_root, so the pty belongs to the container's devpts instance;
the slave becomes its controlling terminal (setsid + TIOCSCTTY) and its
stdio.  The master goes out over a unix socket with SCM_RIGHTS:

* CLI: to the caller's --console-socket (connected before pivot_root,
  while the host path is still reachable), as runc does for containerd
  and conmon;
* library: to barerun itself over a socketpair; barerun keeps the master,
  relays it to IO.stdin/IO.stdout like a shim, and resizes it in pty().
"""

import os
import socket
import threading

from lowlevel import tty

from . import io as _io
from .errors import ContainerError
from .io import close_fd


class Channel:
    """The parent's end of the master's way out, and the child's."""

    SUN_PATH_MAX = 107  # sockaddr_un.sun_path holds 108 bytes, NUL included

    def __init__(self, console_socket=None):
        if console_socket is not None and len(os.fsencode(console_socket)) > self.SUN_PATH_MAX:
            raise ContainerError(f"console socket {console_socket}: the path is longer than "
                                 f"{self.SUN_PATH_MAX} bytes, which a unix socket address "
                                 "cannot hold")
        self.path = console_socket
        self.parent = self.child = None
        if console_socket is None:
            self.parent, self.child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)

    def connect_in_child(self):
        """Child side, before pivot_root: a connected socket."""
        if self.path is not None:
            return tty.connect_console_socket(self.path)
        return self.child

    def child_fds(self):
        """The fds the child must keep through its fd sweep."""
        return {self.child.fileno()} if self.child is not None else set()

    def after_fork(self):
        if self.child is not None:
            self.child.close()
            self.child = None

    def receive_master(self):
        """Library: the master the child sent (None for --console-socket)."""
        if self.parent is None:
            return None
        try:
            _name, fd = tty.recv_fd(self.parent)
        finally:
            self.parent.close()
            self.parent = None
        return fd

    def close(self):
        for s in (self.parent, self.child):
            if s is not None:
                s.close()
        self.parent = self.child = None


def open_console(sock, size=None):
    """Child side, inside the container: make the pty, send the master,
    return the slave fd (it becomes stdio and the controlling tty)."""
    master = tty.open_pty_master("/dev/ptmx")
    try:
        slave = tty.open_pty_slave(master)
        if size and size[0] and size[1]:
            tty.set_winsize(master, size[0], size[1])
        tty.send_fd(sock, master, b"/dev/ptmx")
    finally:
        os.close(master)
        sock.close()
    return slave


class Relay:
    """Library side: the master <-> IO.stdin / IO.stdout, like a shim."""

    def __init__(self, master, io):
        self.master = master
        self.threads = []
        out = io.stdout if io is not None else None
        inp = io.stdin if io is not None else None
        if out is not None:
            dst = os.dup(out) if isinstance(out, int) else os.open(
                os.fspath(out), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644)
            self.threads.append(threading.Thread(target=_io.copy, args=(os.dup(master), dst),
                                                 daemon=True, name="barerun-console-out"))
        else:
            self.threads.append(threading.Thread(target=self._drain, args=(os.dup(master),),
                                                 daemon=True, name="barerun-console-out"))
        # take our own copy of the caller's stdin now: the caller may close
        # its fd as soon as create() returns
        self._stdin_src = os.dup(inp) if isinstance(inp, int) else inp
        if inp is not None:
            self.threads.append(threading.Thread(target=self._copy_in, daemon=True,
                                                 name="barerun-console-in"))

    def start(self):
        for t in self.threads:
            t.start()

    def _drain(self, src):
        _io.copy(src, os.open("/dev/null", os.O_WRONLY | os.O_CLOEXEC))

    def _copy_in(self):
        inp = self._stdin_src
        if inp is None:
            return
        try:
            src = inp if isinstance(inp, int) else os.open(
                os.fspath(inp), os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        _io.copy(src, os.dup(self.master))

    def resize(self, width, height):
        tty.set_winsize(self.master, height, width)

    def close_stdin(self):
        """A terminal has no separate stdin: send EOF (^D) at line start."""
        try:
            os.write(self.master, b"\x04")
        except OSError:
            pass

    def join(self, timeout=1.0):
        for t in self.threads:
            if t.name.endswith("out"):
                t.join(timeout)

    def close(self):
        close_fd(self.master)
