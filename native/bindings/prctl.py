"""prctl calls python-prctl lacks: ambient capabilities."""

INCLUDES = """
#include <sys/prctl.h>
"""

TYPES = """
static const int PR_CAP_AMBIENT;
static const int PR_CAP_AMBIENT_IS_SET;
static const int PR_CAP_AMBIENT_RAISE;
static const int PR_CAP_AMBIENT_LOWER;
static const int PR_CAP_AMBIENT_CLEAR_ALL;
"""

FUNCTIONS = """
int barerun_prctl(int option, unsigned long a2, unsigned long a3,
                  unsigned long a4, unsigned long a5);
"""

CUSTOMIZATIONS = """
int barerun_prctl(int option, unsigned long a2, unsigned long a3,
                  unsigned long a4, unsigned long a5)
{
    return prctl(option, a2, a3, a4, a5);
}
"""
