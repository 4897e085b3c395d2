"""lowlevel.tty against the real kernel: ptys, window sizes, the controlling
tty and the console-socket protocol.  Runs as root; no fakes."""

import errno
import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import termios
import time

import pytest

from lowlevel import tty
from lowlevel._ffi import ffi, lib


# --- helpers ---------------------------------------------------------------

class Fds:
    """Every fd a test opens; whatever is still open is closed at teardown."""

    def __init__(self):
        self.open = []

    def add(self, fd):
        self.open.append(fd)
        return fd

    def close(self, fd):
        self.open.remove(fd)
        os.close(fd)

    def close_all(self):
        while self.open:
            try:
                os.close(self.open.pop())
            except OSError:
                pass


@pytest.fixture
def fds():
    before = set(os.listdir("/proc/self/fd"))
    tracker = Fds()
    yield tracker
    tracker.close_all()
    leaked = set(os.listdir("/proc/self/fd")) - before
    assert not leaked, f"test leaked fds {sorted(leaked)}"


@pytest.fixture
def pty_pair(fds):
    master = fds.add(tty.open_pty_master())
    slave = fds.add(tty.open_pty_slave(master))
    return master, slave


def read_exactly(fd, n, timeout=5.0):
    """Read n bytes from fd, failing after timeout seconds (never hang)."""
    data = b""
    deadline = time.monotonic() + timeout
    while len(data) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            pytest.fail(f"read from fd {fd}: got {data!r} of {n} bytes")
        data += os.read(fd, n - len(data))
    return data


def nothing_to_read(fd, wait=0.2):
    return not select.select([fd], [], [], wait)[0]


def run_in_child(fn, timeout=10.0):
    """Run fn() in a forked child and return its JSON-able result.

    The child reports through a pipe and always leaves with os._exit; the
    parent always reaps it (and kills it if it does not answer in time).
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            try:
                report = {"ok": fn()}
            except BaseException as exc:
                report = {"error": f"{type(exc).__name__}: {exc}",
                          "errno": getattr(exc, "errno", None)}
            os.write(w, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b""
    try:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                pytest.fail("child did not report in time")
            chunk = os.read(r, 65536)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(r)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(data)


# --- window size -------------------------------------------------------------

def test_winsize_set_on_master_is_seen_on_slave(pty_pair):
    master, slave = pty_pair
    tty.set_winsize(master, 33, 101)
    assert tty.get_winsize(slave) == (33, 101)
    assert tty.get_winsize(master) == (33, 101)
    # A real program sees it too: stty asks its stdin with TIOCGWINSZ.
    out = subprocess.run(["stty", "size"], stdin=slave, capture_output=True,
                         check=True, timeout=10)
    assert out.stdout == b"33 101\n"


def test_winsize_out_of_range_is_refused(pty_pair):
    master, _ = pty_pair
    with pytest.raises(ValueError, match="rows=70000"):
        tty.set_winsize(master, 70000, 80)


# --- the pty pair --------------------------------------------------------------

def test_slave_by_peer_and_by_name_are_the_same_device(fds, pty_pair):
    master, slave = pty_pair
    name = tty.pty_slave_name(master)
    assert name == f"/dev/pts/{tty.pty_number(master)}"
    assert os.ttyname(slave) == name
    by_name = fds.add(os.open(name, os.O_RDWR | os.O_NOCTTY))
    assert os.fstat(by_name).st_rdev == os.fstat(slave).st_rdev
    # TIOCGPTPEER opened it close-on-exec.
    assert fcntl.fcntl(slave, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    assert fcntl.fcntl(master, fcntl.F_GETFD) & fcntl.FD_CLOEXEC


def test_bytes_cross_the_line_discipline_cooked_then_raw(pty_pair):
    master, slave = pty_pair
    # Cooked (the default): the line discipline echoes input back to the
    # master, turning "\n" into "\r\n" on the way out (ONLCR).
    os.write(master, b"abc\n")
    assert read_exactly(slave, 4) == b"abc\n"
    assert read_exactly(master, 5) == b"abc\r\n"

    old = tty.make_raw(slave)
    try:
        # Raw: no echo, no translation, in either direction.
        os.write(master, b"hi\r\n")
        assert read_exactly(slave, 4) == b"hi\r\n"
        assert nothing_to_read(master)
        os.write(slave, b"back\n")
        assert read_exactly(master, 5) == b"back\n"
        attrs = termios.tcgetattr(slave)
        assert not attrs[3] & (termios.ECHO | termios.ICANON | termios.ISIG)
    finally:
        tty.restore(slave, old)
    assert termios.tcgetattr(slave) == old


def test_controlling_tty_in_a_new_session(pty_pair):
    master, slave = pty_pair

    def child():
        os.setsid()
        tty.set_controlling_tty(slave)
        os.dup2(slave, 0)
        stat = open("/proc/self/stat").read()
        fields = stat[stat.rindex(")") + 2:].split()   # field 3 onwards
        return {"ttyname": os.ttyname(0), "tty_nr": int(fields[4]),
                "foreground": os.tcgetpgrp(0) == os.getpgrp()}

    report = run_in_child(child)
    assert "error" not in report, report
    got = report["ok"]
    assert got["ttyname"] == tty.pty_slave_name(master)
    assert got["tty_nr"] != 0
    assert got["tty_nr"] == os.fstat(slave).st_rdev
    assert got["foreground"]


def test_controlling_tty_needs_a_session_leader(pty_pair):
    _, slave = pty_pair
    # A forked child is not a session leader until it calls setsid().
    report = run_in_child(lambda: tty.set_controlling_tty(slave))
    assert report["errno"] == errno.EPERM
    assert f"TIOCSCTTY on fd {slave}" in report["error"]


def test_pty_in_a_private_devpts_instance(tmp_path):
    pts = str(tmp_path)

    def child():
        if lib.unshare(lib.CLONE_NEWNS) == -1:
            raise OSError(ffi.errno, "unshare(CLONE_NEWNS)")
        if lib.mount(b"none", b"/", ffi.NULL, lib.MS_REC | lib.MS_PRIVATE,
                     ffi.NULL) == -1:
            raise OSError(ffi.errno, "make / private")
        if lib.mount(b"devpts", pts.encode(), b"devpts", 0,
                     b"newinstance,ptmxmode=0666,mode=0620") == -1:
            raise OSError(ffi.errno, f"mount devpts on {pts}")
        master = tty.open_pty_master(pts + "/ptmx")
        slave = tty.open_pty_slave(master, devpts_dir=pts)
        tty.set_winsize(master, 24, 80)
        return {"number": tty.pty_number(master),
                "name": tty.pty_slave_name(master, pts),
                "winsize": tty.get_winsize(slave),
                "names": sorted(os.listdir(pts))}

    report = run_in_child(child)
    assert "error" not in report, report
    got = report["ok"]
    assert got["number"] == 0             # first pty of a fresh instance
    assert got["name"] == pts + "/0"
    assert got["winsize"] == [24, 80]
    assert got["names"] == ["0", "ptmx"]
    assert os.listdir(pts) == []          # the mount stayed in the child


# --- console socket ------------------------------------------------------------

def test_send_fd_recv_fd_delivers_a_working_fd(fds):
    r, w = os.pipe()
    fds.add(r), fds.add(w)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        tty.send_fd(a, w, b"/dev/ptmx")
        name, got = tty.recv_fd(b)
        fds.add(got)
    assert name == b"/dev/ptmx"
    assert got != w
    assert fcntl.fcntl(got, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
    os.write(got, b"through the socket")
    assert read_exactly(r, 18) == b"through the socket"


def test_send_fd_puts_exactly_one_fd_in_one_cmsg(fds, pty_pair):
    master, slave = pty_pair
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        tty.send_fd(a, master, b"/dev/ptmx")
        # Receive the way go-runc checks it: one SOL_SOCKET/SCM_RIGHTS cmsg
        # with 4 bytes (one int) of data, i.e. CMSG_SPACE(4) control bytes.
        data, anc, flags, _ = b.recvmsg(4096, socket.CMSG_SPACE(64),
                                        socket.MSG_CMSG_CLOEXEC)
        received = [fds.add(fd) for _, kind, payload in anc
                    if kind == socket.SCM_RIGHTS
                    for fd in memoryview(payload).cast("i")]
    assert data == b"/dev/ptmx"
    assert not flags & socket.MSG_CTRUNC
    assert [(level, kind, len(payload)) for level, kind, payload in anc] == \
        [(socket.SOL_SOCKET, socket.SCM_RIGHTS, 4)]
    assert sum(socket.CMSG_SPACE(len(p)) for _, _, p in anc) == \
        socket.CMSG_SPACE(4)
    # The received fd is the pty master: it drives the slave (a whole line,
    # since the slave is in canonical mode).
    os.write(received[0], b"x\n")
    assert read_exactly(slave, 2) == b"x\n"


def test_recv_fd_refuses_two_fds_and_closes_them(fds):
    r, w = os.pipe()
    fds.add(r), fds.add(w)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        socket.send_fds(a, [b"/dev/ptmx"], [r, w])
        before = len(os.listdir("/proc/self/fd"))
        with pytest.raises(OSError) as info:
            tty.recv_fd(b)
        assert len(os.listdir("/proc/self/fd")) == before  # none leaked
    assert info.value.errno == errno.EBADMSG
    assert "got 2 fds" in str(info.value)


def test_connect_console_socket(fds, tmp_path):
    path = str(tmp_path / "console.sock")
    r, w = os.pipe()
    fds.add(r), fds.add(w)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(1)
        with tty.connect_console_socket(path) as client:
            conn, _ = server.accept()
            with conn:
                tty.send_fd(client, w, b"/dev/ptmx")
                name, got = tty.recv_fd(conn)
                fds.add(got)
    assert name == b"/dev/ptmx"
    os.write(got, b"ok")
    assert read_exactly(r, 2) == b"ok"


def test_connect_console_socket_names_a_missing_path(tmp_path):
    path = str(tmp_path / "missing.sock")
    with pytest.raises(OSError) as info:
        tty.connect_console_socket(path)
    assert info.value.errno == errno.ENOENT
    assert path in str(info.value)


# --- errors name the fd or path --------------------------------------------

def test_set_winsize_on_a_pipe_is_enotty(fds):
    r, w = os.pipe()
    fds.add(r), fds.add(w)
    with pytest.raises(OSError) as info:
        tty.set_winsize(w, 24, 80)
    assert info.value.errno == errno.ENOTTY
    assert f"TIOCSWINSZ on fd {w}" in str(info.value)


def test_open_pty_master_on_a_missing_path_is_enoent(tmp_path):
    path = str(tmp_path / "no" / "ptmx")
    with pytest.raises(OSError) as info:
        tty.open_pty_master(path)
    assert info.value.errno == errno.ENOENT
    assert path in str(info.value)


def test_get_winsize_on_a_closed_fd_is_ebadf():
    r, w = os.pipe()
    os.close(r)
    os.close(w)
    with pytest.raises(OSError) as info:
        tty.get_winsize(r)
    assert info.value.errno == errno.EBADF
    assert f"TIOCGWINSZ on fd {r}" in str(info.value)


def test_open_pty_slave_of_a_non_pty_is_enotty(fds):
    r, w = os.pipe()
    fds.add(r), fds.add(w)
    with pytest.raises(OSError) as info:
        tty.open_pty_slave(r)
    assert info.value.errno == errno.ENOTTY
    assert f"fd {r}" in str(info.value)
