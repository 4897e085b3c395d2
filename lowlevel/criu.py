"""Finding a CRIU binary that works on this kernel, and its version.

Debian 12's criu 3.17 fails on current kernels, and CRIU 4.1 cannot dump an
established TCP socket on kernel 6.18; 4.2.1 can (see DESIGN.md).  barerun
prefers the one its set-up builds into /usr/local/sbin; BARERUN_CRIU
overrides both.
"""

import os
import re
import shutil
import subprocess

from ._trace import trace

CANDIDATES = ("/usr/local/sbin/criu", "/usr/local/bin/criu")
MIN_VERSION = (4, 2, 1)
# searched when PATH is unset (an empty PATH searches nothing)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def _vstr(v):
    return ".".join(map(str, v))


def _probe(path):
    """(version tuple or None, why not) of a would-be criu binary."""
    try:
        p = subprocess.run([path, "--version"], capture_output=True, text=True,
                           timeout=10)
    except subprocess.TimeoutExpired:
        return None, "`--version` timed out"
    except OSError as exc:
        return None, exc.strerror or str(exc)
    m = re.search(r"Version:\s*(\d+(?:\.\d+)*)", p.stdout)
    if not m:
        return None, "not a criu (no version)"
    return tuple(int(x) for x in m.group(1).split(".")), None


def version(path):
    """(major, minor[, sub]) of a criu binary, or None."""
    return _probe(path)[0]


def find_criu(explicit=None):
    """The path of a CRIU >= MIN_VERSION: ``explicit``, $BARERUN_CRIU,
    barerun's own build, then PATH.  Raises FileNotFoundError naming what
    was tried and why each was refused."""
    tried = []
    env = os.environ.get("BARERUN_CRIU")
    search = os.environ.get("PATH", DEFAULT_PATH)
    path_hit = shutil.which("criu", path=search) if search else None
    for cand in (explicit, env, *CANDIDATES, path_hit):
        if not cand or cand in (t for t, _ in tried):
            continue
        v, why = _probe(cand)
        if v and v >= MIN_VERSION:
            trace("criu.found", path=cand, version=_vstr(v))
            return cand
        tried.append((cand, why or f"version {_vstr(v)} is too old"))
    did = "; ".join(f"{c} ({why})" for c, why in tried) or "nothing"
    raise FileNotFoundError(
        f"no CRIU >= {_vstr(MIN_VERSION)} found (tried {did}); "
        "build one with scripts/build-criu.sh")


def check(path=None):
    """Run `criu check`; returns (ok, output)."""
    path = path or find_criu()
    trace("exec", argv=[path, "check"])
    try:
        p = subprocess.run([path, "check"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        return False, f"{path} check: timed out after 60 s"
    except OSError as exc:
        return False, f"{path} check: {exc.strerror or exc}"
    out = (p.stdout + p.stderr).strip()
    return p.returncode == 0 and "Looks good" in out, out
