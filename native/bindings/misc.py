"""Small syscalls Python's os module does not offer: setdomainname."""

INCLUDES = """
#include <unistd.h>
"""

TYPES = ""

FUNCTIONS = """
int sethostname(const char *name, size_t len);
int setdomainname(const char *name, size_t len);
"""

CUSTOMIZATIONS = ""
