"""mount, umount2, pivot_root, mount_setattr, openat2."""

INCLUDES = """
#include <fcntl.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <linux/openat2.h>
"""

TYPES = """
static const unsigned long MS_RDONLY;
static const unsigned long MS_NOSUID;
static const unsigned long MS_NODEV;
static const unsigned long MS_NOEXEC;
static const unsigned long MS_SYNCHRONOUS;
static const unsigned long MS_REMOUNT;
static const unsigned long MS_MANDLOCK;
static const unsigned long MS_DIRSYNC;
static const unsigned long MS_NOSYMFOLLOW;
static const unsigned long MS_NOATIME;
static const unsigned long MS_NODIRATIME;
static const unsigned long MS_BIND;
static const unsigned long MS_MOVE;
static const unsigned long MS_REC;
static const unsigned long MS_SILENT;
static const unsigned long MS_UNBINDABLE;
static const unsigned long MS_PRIVATE;
static const unsigned long MS_SLAVE;
static const unsigned long MS_SHARED;
static const unsigned long MS_RELATIME;
static const unsigned long MS_STRICTATIME;
static const unsigned long MS_LAZYTIME;

static const int MNT_FORCE;
static const int MNT_DETACH;
static const int MNT_EXPIRE;
static const int UMOUNT_NOFOLLOW;

static const unsigned long long RESOLVE_NO_XDEV;
static const unsigned long long RESOLVE_NO_MAGICLINKS;
static const unsigned long long RESOLVE_NO_SYMLINKS;
static const unsigned long long RESOLVE_BENEATH;
static const unsigned long long RESOLVE_IN_ROOT;

static const unsigned int AT_RECURSIVE;
static const unsigned long long MOUNT_ATTR_RDONLY;
static const unsigned long long MOUNT_ATTR_NOSUID;
static const unsigned long long MOUNT_ATTR_NODEV;
static const unsigned long long MOUNT_ATTR_NOEXEC;

static const int HAS_OPENAT2;
static const int HAS_MOUNT_SETATTR;
"""

FUNCTIONS = """
int mount(const char *source, const char *target, const char *fstype,
          unsigned long flags, const void *data);
int umount2(const char *target, int flags);
int barerun_pivot_root(const char *new_root, const char *put_old);
int barerun_openat2(int dirfd, const char *path, int flags, int mode,
                    unsigned long long resolve);
int barerun_mount_setattr(int dirfd, const char *path, unsigned int flags,
                          unsigned long long attr_set,
                          unsigned long long attr_clr,
                          unsigned long long propagation);
"""

CUSTOMIZATIONS = """
#ifndef MS_NOSYMFOLLOW
#define MS_NOSYMFOLLOW 256
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x1
#define MOUNT_ATTR_NOSUID 0x2
#define MOUNT_ATTR_NODEV 0x4
#define MOUNT_ATTR_NOEXEC 0x8
#endif
#ifdef SYS_openat2
static const int HAS_OPENAT2 = 1;
#else
static const int HAS_OPENAT2 = 0;
#define SYS_openat2 437
#endif
#ifdef SYS_mount_setattr
static const int HAS_MOUNT_SETATTR = 1;
#else
static const int HAS_MOUNT_SETATTR = 0;
#define SYS_mount_setattr 442
#endif

int barerun_pivot_root(const char *new_root, const char *put_old)
{
    return syscall(SYS_pivot_root, new_root, put_old);
}

int barerun_openat2(int dirfd, const char *path, int flags, int mode,
                    unsigned long long resolve)
{
    struct open_how how = { 0 };
    how.flags = (unsigned long long)(unsigned int)flags;
    how.mode = (flags & (O_CREAT | O_TMPFILE)) ? (unsigned long long)mode : 0;
    how.resolve = resolve;
    return syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
}

struct barerun_mount_attr {
    unsigned long long attr_set, attr_clr, propagation, userns_fd;
};

int barerun_mount_setattr(int dirfd, const char *path, unsigned int flags,
                          unsigned long long attr_set,
                          unsigned long long attr_clr,
                          unsigned long long propagation)
{
    struct barerun_mount_attr a = { attr_set, attr_clr, propagation, 0 };
    return syscall(SYS_mount_setattr, dirfd, path, flags, &a, sizeof(a));
}
"""
