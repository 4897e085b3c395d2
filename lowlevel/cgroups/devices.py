"""Device access rules: which device nodes a cgroup's processes may open
or create.

A rule is ``(allow, type, major, minor, access)``: ``allow`` True/False,
``type`` "a" (any), "c" or "b", ``major``/``minor`` a number or None for
any, ``access`` a string of "r", "w", "m" (mknod).  Rules are applied in
order, a later rule overriding an earlier one, as writes to cgroup v1's
``devices.allow`` / ``devices.deny`` files are.

cgroup v1 has those files.  cgroup v2 has none: the kernel asks a BPF
program of type BPF_PROG_TYPE_CGROUP_DEVICE attached to the cgroup, once
per open(2)/mknod(2) of a device node, with a context of three 32-bit
words (struct bpf_cgroup_dev_ctx)::

    access_type   low 16 bits: BPF_DEVCG_DEV_BLOCK 1 / _CHAR 2
                  high 16 bits: BPF_DEVCG_ACC_MKNOD 1 | _READ 2 | _WRITE 4
    major, minor

and the program returns 1 (allow) or 0 (EPERM).  ``compile_rules`` turns
the rules into that program; ``attach`` loads and attaches it.  The
program decides each requested access bit on its own (open O_RDWR asks
for read and write at once): for each bit, the last rule that matches the
device and names the bit decides, and no matching rule means deny.  That
is what the v1 files do for an allow-list, so a rule set means the same on
v1 and v2.
"""

from __future__ import annotations

import errno
import os

from .._ffi import ffi, lib
from ..tracing import error, trace

TYPE_CHECKING = False  # typing is not imported at run time (start-up cost)
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from typing import Literal, TypeAlias

    #: (allow, type "a"/"b"/"c", major or None, minor or None, access "rwm")
    Rule: TypeAlias = tuple[bool, str, int | None, int | None, str]
    #: one eBPF instruction: (opcode, dst, src, off, imm)
    Insn: TypeAlias = tuple[int, int, int, int, int]
    # compile_rules' draft: jump offsets still label names, and the labels
    _Draft: TypeAlias = tuple[int, int, int, int | str, int] | tuple[Literal["label"], str]

BLOCK, CHAR = 1, 2                 # BPF_DEVCG_DEV_*
MKNOD, READ, WRITE = 1, 2, 4       # BPF_DEVCG_ACC_*
_ACCESS = {"m": MKNOD, "r": READ, "w": WRITE}
_TYPE = {"b": BLOCK, "c": CHAR}

# the eBPF instructions used (linux/bpf_common.h, linux/bpf.h)
LDXW = 0x61      # BPF_LDX | BPF_MEM | BPF_W:   dst = *(u32 *)(src + off)
AND_K = 0x57     # BPF_ALU64 | BPF_AND | BPF_K: dst &= imm
RSH_K = 0x77     # BPF_ALU64 | BPF_RSH | BPF_K: dst >>= imm
MOV_K = 0xb7     # BPF_ALU64 | BPF_MOV | BPF_K: dst = imm
MOV_X = 0xbf     # BPF_ALU64 | BPF_MOV | BPF_X: dst = src
JA = 0x05        # BPF_JMP | BPF_JA:            goto +off
JEQ_K = 0x15     # BPF_JMP | BPF_JEQ | BPF_K:   if dst == imm goto +off
JNE_K = 0x55     # BPF_JMP | BPF_JNE | BPF_K:   if dst != imm goto +off
EXIT = 0x95      # BPF_JMP | BPF_EXIT:          return r0

# r1 = context on entry; the prologue leaves
R_TYPE, R_ACCESS, R_MAJOR, R_MINOR = 2, 3, 4, 5


# bumped whenever compile_rules changes what it emits (see program_key)
COMPILER = "1"


def rule_text(rule: Rule) -> str:
    """A rule as cgroup v1 writes it: "c 1:3 rwm", "a"."""
    allow, kind, major, minor, access = rule
    if kind == "a":
        return "a"
    return f"{kind} {'*' if major is None else major}:{'*' if minor is None else minor} {access}"


def _check(rule: Rule, i: int) -> None:
    allow, kind, major, minor, access = rule
    if kind not in ("a", "b", "c"):
        raise ValueError(f"device rule {i}: type {kind!r} is not a, b or c")
    if not access or set(access) - set(_ACCESS):
        raise ValueError(f"device rule {i}: access {access!r} is not made of r, w, m")
    for name, v in (("major", major), ("minor", minor)):
        if v is not None and not 0 <= v <= 0x7fffffff:
            raise ValueError(f"device rule {i}: {name} {v} out of range")


def compile_rules(rules: Iterable[Rule]) -> list[Insn]:
    """The BPF_PROG_TYPE_CGROUP_DEVICE program for ``rules``: a list of
    (opcode, dst, src, off, imm) instructions (see ``encode``)."""
    rules = [(bool(a), k, None if ma in (None, -1) else ma, None if mi in (None, -1) else mi, acc)
             for a, k, ma, mi, acc in rules]
    for i, rule in enumerate(rules):
        _check(rule, i)
    prog: list[_Draft] = [  # labels are resolved below: ("label", name) and offsets by name
        (LDXW, R_TYPE, 1, 0, 0), (AND_K, R_TYPE, 0, 0, 0xffff),
        (LDXW, R_ACCESS, 1, 0, 0), (RSH_K, R_ACCESS, 0, 0, 16),
        (LDXW, R_MAJOR, 1, 4, 0), (LDXW, R_MINOR, 1, 8, 0),
    ]
    deny: list[_Draft] = [(MOV_K, 0, 0, 0, 0), (EXIT, 0, 0, 0, 0)]
    for bit_name, bit in (("m", MKNOD), ("r", READ), ("w", WRITE)):
        done = f"done_{bit_name}"
        # not asked for this access: nothing to decide
        prog += [(MOV_X, 1, R_ACCESS, 0, 0), (AND_K, 1, 0, 0, bit), (JEQ_K, 1, 0, done, 0)]
        for n, (allow, kind, major, minor, access) in reversed(list(enumerate(rules))):
            if bit_name not in access:
                continue
            nxt = f"next_{bit_name}_{n}"
            if kind != "a":
                prog.append((JNE_K, R_TYPE, 0, nxt, _TYPE[kind]))
            if major is not None:
                prog.append((JNE_K, R_MAJOR, 0, nxt, major))
            if minor is not None:
                prog.append((JNE_K, R_MINOR, 0, nxt, minor))
            prog += [(JA, 0, 0, done, 0)] if allow else deny
            if kind == "a" and major is None and minor is None:
                break                # matches every device: earlier rules
                                     # never decide (the verifier refuses
                                     # unreachable instructions)
            prog.append(("label", nxt))
        else:
            prog += deny             # no rule names this device and access
        prog.append(("label", done))
    prog += [(MOV_K, 0, 0, 0, 1), (EXIT, 0, 0, 0, 0)]
    return _resolve(prog)


def _resolve(prog: list[_Draft]) -> list[Insn]:
    where: dict[str, int] = {}
    pc = 0
    for ins in prog:
        if ins[0] == "label":
            where[ins[1]] = pc
        else:
            pc += 1
    out: list[Insn] = []
    pc = 0
    for ins in prog:
        if ins[0] == "label":
            continue
        code, dst, src, off, imm = ins
        if isinstance(off, str):
            off = where[off] - pc - 1
        out.append((code, dst, src, off, imm))
        pc += 1
    return out


def encode(prog: Iterable[Insn]) -> bytes:
    """struct bpf_insn[]: u8 code, u8 dst:4 src:4, s16 off, s32 imm."""
    import struct  # only where a program is built: not on every CLI call
    return b"".join(struct.pack("<BBhi", code, dst | (src << 4), off, imm)
                    for code, dst, src, off, imm in prog)


def disassemble(prog: Iterable[Insn]) -> str:
    """One readable line per instruction, for the trace and for learners."""
    lines = []
    for pc, (code, dst, src, off, imm) in enumerate(prog):
        text = {
            LDXW: f"r{dst} = *(u32 *)(r{src} + {off})",
            AND_K: f"r{dst} &= {imm:#x}",
            RSH_K: f"r{dst} >>= {imm}",
            MOV_K: f"r{dst} = {imm}",
            MOV_X: f"r{dst} = r{src}",
            JA: f"goto {pc + 1 + off}",
            JEQ_K: f"if r{dst} == {imm} goto {pc + 1 + off}",
            JNE_K: f"if r{dst} != {imm} goto {pc + 1 + off}",
            EXIT: "exit",
        }[code]
        lines.append(f"{pc:3}: {text}")
    return "\n".join(lines)


def load(prog: Sequence[Insn]) -> int:
    """bpf(BPF_PROG_LOAD): the program's fd (the verifier's log in the
    error when it refuses it)."""
    code = encode(prog)
    buf = ffi.from_buffer(code)
    trace("bpf", cmd="BPF_PROG_LOAD", prog_type="BPF_PROG_TYPE_CGROUP_DEVICE",
          insns=len(prog))
    fd = lib.barerun_bpf_load_device_prog(buf, len(prog), ffi.NULL, 0)
    if fd >= 0:
        return fd
    err = ffi.errno
    log = ffi.new("char[]", 65536)
    lib.barerun_bpf_load_device_prog(buf, len(prog), log, 65536)
    text = ffi.string(log).decode(errors="replace").strip().splitlines()
    raise error(err, "bpf BPF_PROG_LOAD of the device filter"
                + (f" (verifier: {text[-1]})" if text else ""))


def attached(cgroup_fd: int, path: str) -> list[int]:
    """Ids of the device programs attached to the cgroup itself (not its
    parents)."""
    count = ffi.new("unsigned int *", 64)
    ids = ffi.new("unsigned int[]", 64)
    if lib.barerun_bpf_query(cgroup_fd, lib.BARERUN_BPF_CGROUP_DEVICE, ids, count) < 0:
        raise error(ffi.errno, f"bpf BPF_PROG_QUERY BPF_CGROUP_DEVICE on {path}")
    return [ids[i] for i in range(min(count[0], 64))]


def program_key(rules: Sequence[Rule]) -> str:
    """A text that names the program ``compile_rules(rules)`` makes: equal
    keys, equal programs (the compiler's version is part of it)."""
    return f"{COMPILER}:" + ";".join(("allow " if r[0] else "deny ") + rule_text(r)
                                     for r in rules)


def _info(progfd: int) -> tuple[int, int, str]:
    pid_, ptype = ffi.new("unsigned int *"), ffi.new("unsigned int *")
    tag = ffi.new("unsigned char[8]")
    if lib.barerun_bpf_prog_info(progfd, pid_, ptype, tag) < 0:
        raise error(ffi.errno, f"bpf BPF_OBJ_GET_INFO_BY_FD {progfd}")
    return pid_[0], ptype[0], bytes(ffi.buffer(tag)).hex()


def _reuse(record: Sequence[object] | None) -> int | None:
    """The fd of a loaded program ``record`` ([id, tag]) names, when that
    id is still a device program with that very tag (an id the kernel gave
    to another program since has another tag); else None."""
    if not record or len(record) != 2:
        return None
    prog_id, tag = record
    if not isinstance(prog_id, int) or not isinstance(tag, str):
        return None
    fd = lib.barerun_bpf_prog_fd(prog_id)
    if fd < 0:
        return None
    try:
        _id, ptype, real_tag = _info(fd)
    except OSError:
        os.close(fd)
        return None
    if ptype != lib.BARERUN_BPF_PROG_TYPE_CGROUP_DEVICE or real_tag != tag:
        os.close(fd)
        return None
    trace("bpf", cmd="BPF_PROG_GET_FD_BY_ID", prog_id=prog_id, tag=tag,
          instead_of="BPF_PROG_LOAD of the same program")
    return fd


def attach(path: str, rules: Sequence[Rule], known: dict | None = None) -> None:
    """Make ``rules`` the device rules of the cgroup v2 directory ``path``.

    The new program is attached (BPF_F_ALLOW_MULTI) before the ones
    attached earlier are detached: while both are attached a device must
    pass both, so the container never has more access than either rule
    set gives, not even for an instant (an ``update`` replacing the
    rules).  Programs attached to parent cgroups (systemd's) stay and
    apply too.  The kernel keeps an attached program alive; no fd stays
    open.

    ``known`` ({program_key: [id, tag]}, kept by the caller between
    calls): a program loaded before for the same rules is attached again
    instead of loading (and verifying) a new one, ~1 ms saved; a new load
    is recorded there."""
    prog = compile_rules(rules)
    trace("cgroup.devices", path=path, rules=[("allow " if r[0] else "deny ") + rule_text(r)
                                              for r in rules])
    try:
        cgfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise error(exc.errno, f"open {path}") from None
    progfd = None
    try:
        old = attached(cgfd, path)
        key = program_key(rules) if known is not None else ""
        progfd = _reuse(known.get(key)) if known is not None else None
        if progfd is None:
            progfd = load(prog)
        new_id, _type, tag = _info(progfd)
        if known is not None:
            known[key] = [new_id, tag]
        if new_id not in old:  # (an update to the same rules: attached already)
            trace("bpf", cmd="BPF_PROG_ATTACH", attach_type="BPF_CGROUP_DEVICE",
                  flags="BPF_F_ALLOW_MULTI", cgroup=path)
            if lib.barerun_bpf_attach(cgfd, progfd, lib.BARERUN_BPF_CGROUP_DEVICE,
                                      lib.BARERUN_BPF_F_ALLOW_MULTI) < 0:
                raise error(ffi.errno, f"bpf BPF_PROG_ATTACH BPF_CGROUP_DEVICE on {path}")
        for prog_id in old:
            if prog_id != new_id:
                _detach(cgfd, prog_id, path)
    finally:
        if progfd is not None:
            os.close(progfd)
        os.close(cgfd)


def _detach(cgfd: int, prog_id: int, path: str) -> None:
    fd = lib.barerun_bpf_prog_fd(prog_id)
    if fd < 0:
        if ffi.errno == errno.ENOENT:   # already gone
            return
        raise error(ffi.errno, f"bpf BPF_PROG_GET_FD_BY_ID {prog_id}")
    try:
        trace("bpf", cmd="BPF_PROG_DETACH", prog_id=prog_id, cgroup=path)
        if lib.barerun_bpf_detach(cgfd, fd, lib.BARERUN_BPF_CGROUP_DEVICE) < 0:
            raise error(ffi.errno, f"bpf BPF_PROG_DETACH program {prog_id} from {path}")
    finally:
        os.close(fd)


def write_v1(path: str, rules: Iterable[Rule]) -> None:
    """The rules on a v1 devices cgroup: one write per rule to
    devices.allow or devices.deny, in order."""
    from . import _fs
    for rule in rules:
        _fs.write(os.path.join(path, "devices.allow" if rule[0] else "devices.deny"),
                  rule_text(rule))
