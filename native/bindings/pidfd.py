"""pidfd_open, pidfd_send_signal, pidfd_getfd."""

INCLUDES = """
#include <signal.h>
#include <unistd.h>
#include <sys/syscall.h>
"""

TYPES = """
static const int HAS_PIDFD;
"""

FUNCTIONS = """
int barerun_pidfd_open(int pid, unsigned int flags);
int barerun_pidfd_send_signal(int pidfd, int sig, unsigned int flags);
int barerun_pidfd_getfd(int pidfd, int targetfd, unsigned int flags);
"""

CUSTOMIZATIONS = """
#ifdef SYS_pidfd_open
static const int HAS_PIDFD = 1;
#else
static const int HAS_PIDFD = 0;
#define SYS_pidfd_open 434
#define SYS_pidfd_send_signal 424
#define SYS_pidfd_getfd 438
#endif

int barerun_pidfd_open(int pid, unsigned int flags)
{
    return syscall(SYS_pidfd_open, pid, flags);
}

int barerun_pidfd_send_signal(int pidfd, int sig, unsigned int flags)
{
    return syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, flags);
}

int barerun_pidfd_getfd(int pidfd, int targetfd, unsigned int flags)
{
    return syscall(SYS_pidfd_getfd, pidfd, targetfd, flags);
}
"""
