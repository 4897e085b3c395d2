"""lowlevel.cgroups.devices: the cgroup v2 device program, on the real
kernel.

Each test makes a scratch cgroup in the unified hierarchy alone, attaches
a program built from rules, and runs a probe process inside it that opens
(never reads or writes) device nodes made in the test's directory:
c 1:3 (null, an OCI default) and c 1:11 (kmsg, not a default).  The probe
outside any program proves it can see an open succeed.
"""

import errno
import json
import os
import stat
import subprocess
import sys
import uuid

import pytest

from lowlevel import cgroups
from lowlevel.cgroups import devices as D

DEFAULTS = [(True, "c", None, None, "m"), (True, "b", None, None, "m"),
            (True, "c", 1, 3, "rwm")]
DENY_ALL = (False, "a", None, None, "rwm")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (bpf, cgroups)")

PROBE = r"""
import json, os, sys
out = []
for kind, path, rdev in json.loads(sys.argv[1]):
    try:
        if kind == "mknod":
            os.mknod(path, 0o600 | 0o020000, rdev)
            os.unlink(path)
        else:
            flags = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}[kind]
            os.close(os.open(path, flags | os.O_NONBLOCK))
        out.append("ok")
    except OSError as exc:
        out.append(os.strerror(exc.errno))
print(json.dumps(out))
"""


@pytest.fixture
def unified_cgroup():
    layout = cgroups.detect()
    if not layout.unified:
        pytest.skip("no cgroup v2 hierarchy mounted")
    path = os.path.join(layout.unified, "barerun-test-dev-" + uuid.uuid4().hex[:8])
    os.mkdir(path)
    try:
        yield path
    finally:
        os.rmdir(path)


@pytest.fixture
def nodes(tmp_path):
    null, kmsg = str(tmp_path / "null"), str(tmp_path / "kmsg")
    os.mknod(null, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    os.mknod(kmsg, 0o600 | stat.S_IFCHR, os.makedev(1, 11))
    return {"null": null, "kmsg": kmsg, "new": str(tmp_path / "made"),
            "kmsg_rdev": os.makedev(1, 11)}


def probe(cgdir, ops):
    """Results of ``ops`` [(kind, path, rdev)] run by a process inside
    ``cgdir`` (None: outside any program)."""
    prefix = ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', cgdir] if cgdir else []
    r = subprocess.run([*prefix, sys.executable, "-c", PROBE, json.dumps(ops)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


EPERM = os.strerror(errno.EPERM)


def test_the_probe_sees_an_open_succeed(nodes):
    assert probe(None, [("w", nodes["kmsg"], 0), ("r", nodes["null"], 0)]) == ["ok", "ok"]


def test_deny_all_plus_defaults(unified_cgroup, nodes):
    D.attach(unified_cgroup, [DENY_ALL, *DEFAULTS])
    got = probe(unified_cgroup, [("rw", nodes["null"], 0), ("r", nodes["kmsg"], 0),
                                 ("w", nodes["kmsg"], 0),
                                 ("mknod", nodes["new"], nodes["kmsg_rdev"])])
    assert got == ["ok", EPERM, EPERM, "ok"]


def test_each_access_bit_is_decided_on_its_own(unified_cgroup, nodes):
    """r allowed by one rule and w by another: O_RDWR needs both, and gets
    them (as the v1 files merge the two rules); a later deny of w wins."""
    D.attach(unified_cgroup, [DENY_ALL, (True, "c", 1, 11, "r"), (True, "c", 1, 11, "w")])
    assert probe(unified_cgroup, [("rw", nodes["kmsg"], 0)]) == ["ok"]
    D.attach(unified_cgroup, [DENY_ALL, (True, "c", 1, 11, "rw"), (False, "c", 1, 11, "w")])
    got = probe(unified_cgroup, [("r", nodes["kmsg"], 0), ("w", nodes["kmsg"], 0),
                                 ("rw", nodes["kmsg"], 0),
                                 ("mknod", nodes["new"], nodes["kmsg_rdev"])])
    assert got == ["ok", EPERM, EPERM, EPERM]


def test_wildcards_and_type(unified_cgroup, nodes):
    """c 1:* allows kmsg; a block rule for the same numbers does not."""
    D.attach(unified_cgroup, [DENY_ALL, (True, "b", 1, 11, "rwm")])
    assert probe(unified_cgroup, [("r", nodes["kmsg"], 0)]) == [EPERM]
    D.attach(unified_cgroup, [DENY_ALL, (True, "c", 1, None, "r")])
    assert probe(unified_cgroup, [("r", nodes["kmsg"], 0), ("w", nodes["kmsg"], 0)]) \
        == ["ok", EPERM]


def test_replacing_the_rules_leaves_one_program(unified_cgroup, nodes):
    D.attach(unified_cgroup, [DENY_ALL, (True, "a", None, None, "rwm")])
    assert probe(unified_cgroup, [("w", nodes["kmsg"], 0)]) == ["ok"]
    D.attach(unified_cgroup, [DENY_ALL, *DEFAULTS])
    fd = os.open(unified_cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert len(D.attached(fd, unified_cgroup)) == 1
    finally:
        os.close(fd)
    assert probe(unified_cgroup, [("w", nodes["kmsg"], 0)]) == [EPERM]


def _ids(path):
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        return D.attached(fd, path)
    finally:
        os.close(fd)


@pytest.fixture
def two_unified_cgroups(unified_cgroup):
    other = unified_cgroup + "-b"
    os.mkdir(other)
    try:
        yield unified_cgroup, other
    finally:
        os.rmdir(other)


def test_a_known_program_for_the_same_rules_is_attached_again(two_unified_cgroups, nodes):
    a, b = two_unified_cgroups
    rules = [DENY_ALL, *DEFAULTS]
    known = {}
    D.attach(a, rules, known)
    assert list(known) == [D.program_key(rules)]
    D.attach(b, rules, known)
    assert _ids(a) == _ids(b) == [known[D.program_key(rules)][0]]
    assert probe(b, [("w", nodes["kmsg"], 0), ("r", nodes["null"], 0)]) == [EPERM, "ok"]
    # the same rules again on a: still that one program, attached once
    D.attach(a, rules, known)
    assert _ids(a) == _ids(b)


def test_a_record_whose_tag_does_not_match_is_not_trusted(two_unified_cgroups, nodes):
    """A record naming a live program with another tag (an id reused by
    the kernel, or a forged record naming an allow-all program) is not
    attached: the rules' own program is loaded."""
    a, b = two_unified_cgroups
    allow_all = [DENY_ALL, (True, "a", None, None, "rwm")]
    D.attach(a, allow_all)
    rules = [DENY_ALL, *DEFAULTS]
    known = {D.program_key(rules): [_ids(a)[0], "0000000000000000"]}
    D.attach(b, rules, known)
    assert _ids(b) != _ids(a)
    assert probe(b, [("w", nodes["kmsg"], 0)]) == [EPERM]
    assert known[D.program_key(rules)][0] == _ids(b)[0]


def test_bad_rule_names_its_index():
    with pytest.raises(ValueError, match="device rule 1: access"):
        D.compile_rules([DENY_ALL, (True, "c", 1, 3, "x")])


def test_disassembly_reads_as_the_rules():
    text = D.disassemble(D.compile_rules([DENY_ALL, (True, "c", 1, 3, "r")]))
    assert "if r4 != 1 goto" in text and "if r5 != 3 goto" in text
    assert text.splitlines()[-1].endswith("exit")
