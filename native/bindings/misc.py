"""Small syscalls Python's os module does not offer: setdomainname,
fstatfs (the filesystem type of an fd: procfs magic links)."""

INCLUDES = """
#include <unistd.h>
#include <sys/vfs.h>
"""

TYPES = """
struct statfs { long f_type; ...; };
"""

FUNCTIONS = """
int sethostname(const char *name, size_t len);
int setdomainname(const char *name, size_t len);
int fstatfs(int fd, struct statfs *buf);
"""

CUSTOMIZATIONS = ""
