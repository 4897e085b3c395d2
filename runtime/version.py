"""barerun's version (one place: the package, the CLI and checkpoint descriptors)."""

VERSION = "0.1.0"
