/*
 * barerun's exec stub: the last program a container process runs before
 * its own.  CVE-2019-5736 class: the process that calls execve on the
 * container's program must not have the host's Python interpreter as
 * /proc/self/exe, or a container entry point "#!/proc/self/exe" (or a fake
 * ld-linux in the image) gets that interpreter, and an fd to it that can
 * be reopened for writing.  barerun copies this stub into a sealed memfd
 * (no write, no resize) and the forked Python child execs it through that
 * fd; the stub then execs the container's program.  So /proc/self/exe at
 * the container's execve is an anonymous, read-only, sealed file.
 *
 *     stub REPORT_FD PATH ARGV0 [ARGV1 ...]       (environment: the program's)
 *
 * REPORT_FD is the child's report pipe (or -1): it is made close-on-exec,
 * so the parent reads EOF when execve succeeded, and on failure the stub
 * writes {"exec_errno": N} to it; without one it writes
 * "barerun: exec PATH: <strerror> (errno N)" to stderr.  Exit status 127 for ENOENT,
 * 126 otherwise (as a shell).
 *
 * Freestanding (no libc: -nostdlib -static), a few KB: copying it into a
 * memfd costs microseconds.  x86_64 and aarch64.
 */

typedef unsigned long size_t;
typedef long ssize_t;

#if defined(__x86_64__)
#define NR_write 1
#define NR_fcntl 72
#define NR_execve 59
#define NR_exit_group 231

static long sys3(long n, long a, long b, long c)
{
    long ret;
    __asm__ volatile ("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c)
                      : "rcx", "r11", "memory");
    return ret;
}

__asm__(".text\n.global _start\n_start:\n"
        "  xor %rbp, %rbp\n  mov %rsp, %rdi\n  and $-16, %rsp\n  call stub_main\n  hlt\n");
#elif defined(__aarch64__)
#define NR_write 64
#define NR_fcntl 25
#define NR_execve 221
#define NR_exit_group 94

static long sys3(long n, long a, long b, long c)
{
    register long x8 __asm__("x8") = n;
    register long x0 __asm__("x0") = a;
    register long x1 __asm__("x1") = b;
    register long x2 __asm__("x2") = c;
    __asm__ volatile ("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2) : "memory");
    return x0;
}

__asm__(".text\n.global _start\n_start:\n"
        "  mov x0, sp\n  bl stub_main\n  brk #0\n");
#else
#error "barerun's exec stub supports x86_64 and aarch64"
#endif

#define F_SETFD 2
#define FD_CLOEXEC 1
#define ENOENT 2

static size_t slen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

static char *put(char *p, const char *s)
{
    while (*s)
        *p++ = *s++;
    return p;
}

static char *put_num(char *p, long v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static __attribute__((noreturn)) void leave(int code)
{
    for (;;)
        sys3(NR_exit_group, code, 0, 0);
}

/* the words for the errnos execve gives; the number is printed anyway */
static const char *errno_text(long err)
{
    switch (err) {
    case 1: return "Operation not permitted";
    case 2: return "No such file or directory";
    case 7: return "Argument list too long";
    case 8: return "Exec format error";
    case 12: return "Cannot allocate memory";
    case 13: return "Permission denied";
    case 20: return "Not a directory";
    case 21: return "Is a directory";
    case 26: return "Text file busy";
    case 40: return "Too many levels of symbolic links";
    default: return "error";
    }
}

static long parse_fd(const char *s)
{
    long v = 0;
    if (s[0] == '-' && s[1] == '1' && !s[2])
        return -1;
    if (!*s)
        return -2;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > 1000000)
            return -2;
        v = v * 10 + (*s - '0');
    }
    return v;
}

__attribute__((used)) void stub_main(long *sp)
{
    long argc = sp[0];
    char **argv = (char **)(sp + 1);
    char **envp = argv + argc + 1;
    char buf[512], *p = buf;
    long fd, ret, err;

    if (argc < 4 || (fd = parse_fd(argv[1])) < -1) {
        /* not run by barerun (e.g. "#!/proc/self/exe" in the container) */
        const char msg[] = "barerun exec stub: not a program to run\n";
        sys3(NR_write, 2, (long)msg, sizeof msg - 1);
        leave(126);
    }
    if (fd >= 0)
        sys3(NR_fcntl, fd, F_SETFD, FD_CLOEXEC);
    ret = sys3(NR_execve, (long)argv[2], (long)(argv + 3), (long)envp);
    err = -ret;
    if (fd >= 0) {
        p = put(p, "{\"exec_errno\": ");
        p = put_num(p, err);
        p = put(p, "}\n");
        sys3(NR_write, fd, (long)buf, p - buf);
    } else {
        p = put(p, "barerun: exec ");
        if (slen(argv[2]) < sizeof buf - 64)
            p = put(p, argv[2]);
        p = put(p, ": ");
        p = put(p, errno_text(err));
        p = put(p, " (errno ");
        p = put_num(p, err);
        p = put(p, ")\n");
        sys3(NR_write, 2, (long)buf, p - buf);
    }
    leave(err == ENOENT ? 127 : 126);
}
