"""bpf(2), only what a cgroup v2 device filter needs: load a
BPF_PROG_TYPE_CGROUP_DEVICE program, attach it to a cgroup directory,
list the programs attached there, detach one."""

INCLUDES = """
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <linux/bpf.h>
"""

TYPES = """
static const int HAS_BPF;
static const unsigned int BARERUN_BPF_CGROUP_DEVICE;
static const unsigned int BARERUN_BPF_F_ALLOW_MULTI;
static const unsigned int BARERUN_BPF_PROG_TYPE_CGROUP_DEVICE;
"""

FUNCTIONS = """
int barerun_bpf_load_device_prog(const void *insns, unsigned int count,
                                 char *log, unsigned int log_size);
int barerun_bpf_attach(int cgroup_fd, int prog_fd, unsigned int type, unsigned int flags);
int barerun_bpf_detach(int cgroup_fd, int prog_fd, unsigned int type);
int barerun_bpf_query(int cgroup_fd, unsigned int type, unsigned int *ids,
                      unsigned int *count);
int barerun_bpf_prog_fd(unsigned int id);
/* BPF_OBJ_GET_INFO_BY_FD of a program: its id, type and tag (8 bytes, a
   hash of its instructions) */
int barerun_bpf_prog_info(int prog_fd, unsigned int *id, unsigned int *type,
                          unsigned char *tag);
"""

CUSTOMIZATIONS = """
#ifdef SYS_bpf
static const int HAS_BPF = 1;
#else
static const int HAS_BPF = 0;
#define SYS_bpf 321
#endif
static const unsigned int BARERUN_BPF_CGROUP_DEVICE = BPF_CGROUP_DEVICE;
static const unsigned int BARERUN_BPF_F_ALLOW_MULTI = BPF_F_ALLOW_MULTI;
static const unsigned int BARERUN_BPF_PROG_TYPE_CGROUP_DEVICE = BPF_PROG_TYPE_CGROUP_DEVICE;

static int barerun_bpf(int cmd, union bpf_attr *attr)
{
    return syscall(SYS_bpf, cmd, attr, sizeof(*attr));
}

int barerun_bpf_load_device_prog(const void *insns, unsigned int count,
                                 char *log, unsigned int log_size)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    attr.insns = (unsigned long)insns;
    attr.insn_cnt = count;
    attr.license = (unsigned long)"Apache";
    if (log && log_size) {
        attr.log_buf = (unsigned long)log;
        attr.log_size = log_size;
        attr.log_level = 1;
    }
    return barerun_bpf(BPF_PROG_LOAD, &attr);
}

int barerun_bpf_attach(int cgroup_fd, int prog_fd, unsigned int type, unsigned int flags)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.target_fd = cgroup_fd;
    attr.attach_bpf_fd = prog_fd;
    attr.attach_type = type;
    attr.attach_flags = flags;
    return barerun_bpf(BPF_PROG_ATTACH, &attr);
}

int barerun_bpf_detach(int cgroup_fd, int prog_fd, unsigned int type)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.target_fd = cgroup_fd;
    attr.attach_bpf_fd = prog_fd;
    attr.attach_type = type;
    return barerun_bpf(BPF_PROG_DETACH, &attr);
}

int barerun_bpf_query(int cgroup_fd, unsigned int type, unsigned int *ids,
                      unsigned int *count)
{
    union bpf_attr attr;
    int ret;
    memset(&attr, 0, sizeof(attr));
    attr.query.target_fd = cgroup_fd;
    attr.query.attach_type = type;
    attr.query.prog_ids = (unsigned long)ids;
    attr.query.prog_cnt = *count;
    ret = barerun_bpf(BPF_PROG_QUERY, &attr);
    *count = attr.query.prog_cnt;
    return ret;
}

int barerun_bpf_prog_info(int prog_fd, unsigned int *id, unsigned int *type,
                          unsigned char *tag)
{
    struct bpf_prog_info info;
    union bpf_attr attr;
    int ret;
    memset(&info, 0, sizeof(info));
    memset(&attr, 0, sizeof(attr));
    attr.info.bpf_fd = prog_fd;
    attr.info.info_len = sizeof(info);
    attr.info.info = (unsigned long)&info;
    ret = barerun_bpf(BPF_OBJ_GET_INFO_BY_FD, &attr);
    if (ret == 0) {
        *id = info.id;
        *type = info.type;
        memcpy(tag, info.tag, sizeof(info.tag));
    }
    return ret;
}

int barerun_bpf_prog_fd(unsigned int id)
{
    union bpf_attr attr;
    memset(&attr, 0, sizeof(attr));
    attr.prog_id = id;
    return barerun_bpf(BPF_PROG_GET_FD_BY_ID, &attr);
}
"""
