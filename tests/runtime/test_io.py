"""A container's stdio (runtime/io.py): paths, fds and None (/dev/null),
relayed by barerun's own threads."""

import os

import runtime


def _create(root, bundle, new_id, args, io):
    c = runtime.create(new_id(), bundle(args), root=root, io=io)
    return root.track(c)


def test_stdout_to_fd_and_stdin_from_path(root, bundle, new_id, tmp_path):
    src = tmp_path / "in"
    src.write_text("line one\nline two\n")
    out_path = tmp_path / "out"
    fd = os.open(out_path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        c = _create(root, bundle, new_id, ["sh", "-c", "cat; echo err >&2"],
                    runtime.IO(stdin=str(src), stdout=fd, stderr=None))
    finally:
        os.close(fd)  # the relay holds its own copy
    c.start()
    assert c.wait(timeout=10) == 0
    c.delete()
    assert out_path.read_text() == "line one\nline two\n"


def test_stdin_from_pipe_fd(root, bundle, new_id, tmp_path):
    r, w = os.pipe()
    out = tmp_path / "out"
    try:
        c = _create(root, bundle, new_id, ["tr", "a-z", "A-Z"],
                    runtime.IO(stdin=r, stdout=str(out)))
    finally:
        os.close(r)
    c.start()
    os.write(w, b"hello\n")
    os.close(w)
    assert c.wait(timeout=10) == 0
    c.delete()
    assert out.read_text() == "HELLO\n"


def test_no_io_is_dev_null(root, bundle, new_id):
    c = _create(root, bundle, new_id, ["sh", "-c", "cat; echo ignored; readlink /proc/self/fd/1"],
                None)
    pid = c.state().pid
    assert all(os.readlink(f"/proc/{pid}/fd/{n}") == "/dev/null" for n in (0, 1, 2))
    c.start()
    assert c.wait(timeout=10) == 0  # cat read EOF from /dev/null at once
    c.delete()


def test_stdout_appends_to_an_existing_file(tmp_path, bundle, root, new_id):
    out = tmp_path / "log"
    out.write_text("before\n")
    c = _create(root, bundle, new_id, ["echo", "after"], runtime.IO(stdout=str(out)))
    c.start()
    assert c.wait(timeout=10) == 0
    c.delete()
    assert out.read_text() == "before\nafter\n"


def test_large_output_is_complete(sh):
    status, out, err = sh("head -c 3000000 /dev/zero | tr '\\0' 'x'; echo")
    assert status == 0, err
    assert len(out) == 3000001


def test_debug_logging_never_reaches_the_containers_stderr(create):
    """With the trace on, the child's steps come back to this process's
    loggers under the child's pid; the container's stderr holds only what
    the container wrote."""
    import logging

    records = []

    class Keep(logging.Handler):
        """Keeps the record and writes it to fd 2, as the CLI's --trace
        handler does: in a child that kept it, fd 2 is the container's."""

        def emit(self, record):
            records.append(record)
            os.write(2, f"trace {record.process}: {record.getMessage()}\n".encode())

    log = logging.getLogger("barerun")
    handler = Keep()
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        o = create(["sh", "-c", "echo out; echo err >&2"])
        o.c.start()
        assert o.c.wait(timeout=10) == 0
        pid = o.c.pid
        o.c.delete()
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)
    assert o.stderr() == "err\n"
    assert o.stdout() == "out\n"
    child = [r for r in records if r.process == pid]
    assert any("pivot_root" in r.getMessage() for r in child), [r.getMessage() for r in child]
