"""clone3/clone, unshare, setns."""

INCLUDES = """
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <errno.h>
#include <linux/sched.h>
"""

TYPES = """
static const long long CLONE_NEWNS;
static const long long CLONE_NEWUTS;
static const long long CLONE_NEWIPC;
static const long long CLONE_NEWNET;
static const long long CLONE_NEWPID;
static const long long CLONE_NEWUSER;
static const long long CLONE_NEWCGROUP;
static const long long CLONE_NEWTIME;
static const long long CLONE_PIDFD;
static const long long CLONE_PARENT;
static const long long CLONE_INTO_CGROUP;
static const long long CLONE_VFORK;
static const long long CLONE_VM;

static const int HAS_CLONE3;
static const int HAS_CLONE_INTO_CGROUP;
"""

FUNCTIONS = """
int unshare(int flags);
int setns(int fd, int nstype);

/* Spawn a child that only runs C: it execve()s path (argv, envp) or
   _exit(127)s.  The pidfd of the child goes to *pidfd when CLONE_PIDFD is
   in flags, and cgroup_fd is used when CLONE_INTO_CGROUP is set.  With
   use_clone3 == 0 the legacy clone() is used instead (no cgroup).  Returns
   the child's pid or -1 with errno set. */
long barerun_spawn(unsigned long long flags, int cgroup_fd, int *pidfd,
                   int use_clone3, const char *path, char *const argv[],
                   char *const envp[]);

/* os.fork(), made with clone3 so the child can start inside a cgroup v2
   directory (CLONE_INTO_CGROUP, cgroup_fd >= 0) and, with CLONE_PARENT in
   flags (the only flag taken), as a sibling of the caller (its parent's
   child): the same bookkeeping as os.fork (PyOS_BeforeFork /
   PyOS_AfterFork_Child / _Parent, with the GIL held), so Python runs
   normally in the child.  With bare != 0 that bookkeeping is left out:
   only for a process with one thread that has already been through it
   (a forked child), where no lock can be held by another thread and the
   child's state is the caller's, consistent as it is; it saves ~0.4 ms of
   at-fork handlers.  Falls back to clone(2) without a cgroup when clone3
   is refused; *used_cgroup tells which. */
long barerun_fork(int cgroup_fd, unsigned long long flags, int bare, int *used_cgroup);
"""

CUSTOMIZATIONS = """
#ifndef CLONE_NEWTIME
#define CLONE_NEWTIME 0x00000080
#endif
#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifdef SYS_clone3
static const int HAS_CLONE3 = 1;
#else
static const int HAS_CLONE3 = 0;
#define SYS_clone3 435
#endif
static const int HAS_CLONE_INTO_CGROUP = 1;

struct barerun_clone_args {
    unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal,
                       stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

/* not in the limited API cffi compiles against, but exported by CPython */
void PyOS_BeforeFork(void);
void PyOS_AfterFork_Parent(void);
void PyOS_AfterFork_Child(void);

long barerun_fork(int cgroup_fd, unsigned long long flags, int bare, int *used_cgroup)
{
    struct barerun_clone_args ca;
    long pid;
    int saved;
    PyGILState_STATE gil = PyGILState_Ensure();
    memset(&ca, 0, sizeof(ca));
    flags &= CLONE_PARENT;
    ca.exit_signal = SIGCHLD;
    ca.flags = flags;
    if (cgroup_fd >= 0) {
        ca.flags |= CLONE_INTO_CGROUP;
        ca.cgroup = (unsigned long long)cgroup_fd;
    }
    if (!bare)
        PyOS_BeforeFork();
    pid = syscall(SYS_clone3, &ca, sizeof(ca));
    *used_cgroup = cgroup_fd >= 0;
    if (pid < 0 && (errno == ENOSYS || errno == E2BIG || errno == EINVAL)) {
        /* fork() as a raw clone: no stack given, the child goes on with a
           copy of this one, as after fork (which cannot take CLONE_PARENT) */
        pid = syscall(SYS_clone, (unsigned long)flags | SIGCHLD, 0, 0, 0, 0);
        *used_cgroup = 0;
    }
    saved = errno;
    if (bare)
        ;
    else if (pid == 0)
        PyOS_AfterFork_Child();
    else
        PyOS_AfterFork_Parent();
    PyGILState_Release(gil);
    errno = saved;
    return pid;
}

static char barerun_spawn_stack[64 * 1024] __attribute__((aligned(16)));

struct barerun_spawn_req {
    const char *path;
    char *const *argv;
    char *const *envp;
};

static int barerun_spawn_child(void *arg)
{
    struct barerun_spawn_req *r = arg;
    execve(r->path, r->argv, r->envp);
    _exit(127);
}

long barerun_spawn(unsigned long long flags, int cgroup_fd, int *pidfd,
                   int use_clone3, const char *path, char *const argv[],
                   char *const envp[])
{
    struct barerun_spawn_req req = { path, argv, envp };
    if (use_clone3) {
        struct barerun_clone_args ca;
        long pid;
        memset(&ca, 0, sizeof(ca));
        ca.flags = flags;
        ca.pidfd = (unsigned long long)(unsigned long)pidfd;
        ca.exit_signal = SIGCHLD;
        ca.cgroup = cgroup_fd < 0 ? 0 : (unsigned long long)cgroup_fd;
        pid = syscall(SYS_clone3, &ca, sizeof(ca));
        if (pid == 0) {
            /* only C from here on: the child shares nothing with Python */
            execve(path, argv, envp);
            _exit(127);
        }
        return pid;
    }
    /* legacy clone(): the pidfd is written to *pidfd (parent_tid slot) */
    return clone(barerun_spawn_child,
                 barerun_spawn_stack + sizeof(barerun_spawn_stack),
                 (int)(flags & ~CLONE_INTO_CGROUP) | SIGCHLD | CLONE_VFORK | CLONE_VM,
                 &req, pidfd);
}
"""
