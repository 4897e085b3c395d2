"""Test bundles: the busybox rootfs and `barerun spec` defaults of
runtime/bundle.py, re-exported for tests to adjust."""

from runtime.bundle import BUSYBOX, default_spec, make_rootfs, write_bundle  # noqa: F401
from runtime.spec_default import DEFAULT as DEFAULT_SPEC  # noqa: F401

DEFAULT_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
