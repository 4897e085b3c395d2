"""CVE-2019-5736 class: the host interpreter must never be /proc/self/exe
of a process the container controls.

The attack: an entry point "#!/proc/self/exe" makes the kernel load, as
the script's interpreter, whatever binary the exec'ing process is.  If
that is the host's Python, its ELF interpreter (PT_INTERP, e.g.
/lib64/ld-linux-x86-64.so.2) is looked up in the container's root, where
the image ships a fake one: it runs with the host's Python mapped as
/proc/self/exe, and could keep an fd to it to reopen for writing once
barerun is gone.  The fake here only reports what /proc/self/exe is
(device and inode); the test fails if that is the host's interpreter.
Nothing is written."""

import os
import platform
import shutil
import struct
import subprocess
import sys

import pytest

# A freestanding x86_64 program: stat("/proc/self/exe"), print "dev ino".
FAKE_LD = r"""
typedef unsigned long u64;
static long sys(long n, long a, long b, long c) {
    long r; __asm__ volatile ("syscall" : "=a"(r) : "a"(n), "D"(a), "S"(b), "d"(c)
                              : "rcx", "r11", "memory"); return r; }
static char *num(char *p, u64 v) { char t[24]; int n = 0;
    do { t[n++] = '0' + v % 10; v /= 10; } while (v); while (n) *p++ = t[--n]; return p; }
void fake_main(void) {
    u64 st[18]; char buf[64], *p = buf;
    if (sys(4, (long)"/proc/self/exe", (long)st, 0) < 0) { sys(1, 1, (long)"stat-failed\n", 12); }
    else { p = num(p, st[0]); *p++ = ' '; p = num(p, st[1]); *p++ = '\n';
           sys(1, 1, (long)buf, p - buf); }
    for (;;) sys(231, 0, 0, 0);
}
__asm__(".text\n.global _start\n_start:\n and $-16, %rsp\n call fake_main\n hlt\n");
"""


def pt_interp(path):
    """The PT_INTERP of an ELF64 little-endian executable, or None."""
    with open(path, "rb") as f:
        data = f.read(1 << 16)
    if data[:4] != b"\x7fELF" or data[4] != 2:
        return None
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    for i in range(phnum):
        ptype, _flags, offset, _va, _pa, size = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize)
        if ptype == 3:
            with open(path, "rb") as f:
                f.seek(offset)
                return f.read(size).rstrip(b"\0").decode()
    return None


@pytest.fixture
def hostile_rootfs(private_rootfs, tmp_path):
    if platform.machine() != "x86_64":
        pytest.skip(f"the fake ld-linux is x86_64 code; this is {platform.machine()}")
    host_exe = os.path.realpath(sys.executable)
    interp = pt_interp(host_exe)
    if interp is None:
        pytest.skip(f"{host_exe} has no ELF interpreter (a static Python)")
    src = tmp_path / "fake_ld.c"
    src.write_text(FAKE_LD)
    fake = os.path.join(private_rootfs, interp.lstrip("/"))
    os.makedirs(os.path.dirname(fake), exist_ok=True)
    if os.path.lexists(fake):
        os.unlink(fake)
    subprocess.run([shutil.which("cc") or "cc", "-static", "-nostdlib", "-ffreestanding",
                    "-fno-builtin", "-fno-stack-protector", "-fno-pie", "-no-pie", "-O1",
                    "-o", fake, str(src)], check=True)
    with open(os.path.join(private_rootfs, "evil"), "w") as f:
        f.write("#!/proc/self/exe\n")
    os.chmod(os.path.join(private_rootfs, "evil"), 0o755)
    st = os.stat(host_exe)
    return private_rootfs, f"{st.st_dev} {st.st_ino}"


def test_entry_point_cannot_reach_the_host_interpreter(run, hostile_rootfs):
    rootfs, host_id = hostile_rootfs
    status, out, err = run(["/evil"], rootfs_path=rootfs)
    assert host_id not in out, "the container ran with the host's interpreter as /proc/self/exe"


def test_exec_cannot_reach_the_host_interpreter(create, hostile_rootfs, tmp_path):
    import json

    import runtime
    rootfs, host_id = hostile_rootfs
    o = create(["sleep", "60"], rootfs_path=rootfs)
    o.c.start()
    out = str(tmp_path / "exec.out")
    try:
        spec = {"args": ["/evil"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}}
        try:
            p = o.c.exec(runtime.ExecOpts(json.dumps(spec).encode(), runtime.IO(stdout=out)))
            p.wait(timeout=10)
        except runtime.ContainerError:
            pass
        got = open(out).read() if os.path.exists(out) else ""
        assert host_id not in got, "exec ran with the host's interpreter as /proc/self/exe"
    finally:
        o.c.delete(force=True)


def test_the_check_can_fail(hostile_rootfs):
    """The fake ld-linux really reports the host interpreter when the host
    interpreter itself execs the script: here outside barerun, chrooted
    into the rootfs with a procfs mounted in a private mount namespace
    (gone with the process)."""
    rootfs, host_id = hostile_rootfs
    script = ("import os, sys; os.chroot(sys.argv[1]); os.chdir('/');"
              "os.execv('/evil', ['/evil'])")
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        'mount -t proc proc "$1/proc" && exec "$2" -c "$3" "$1"', "sh",
                        rootfs, sys.executable, script],
                       capture_output=True, text=True, timeout=10)
    assert r.stdout.strip() == host_id, (r.stdout, r.stderr)
