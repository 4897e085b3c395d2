"""libseccomp: build a seccomp BPF filter from rules and load it.

The only binding that links a library (LIBRARIES, collected by build.py):
Debian's libseccomp-dev.  libseccomp functions return -errno on failure
(not -1 with errno set).  SCMP_ACT_ERRNO(x) and SCMP_ACT_TRACE(x) are
function-like macros: wrapped as barerun_scmp_act_errno/_trace.
"""

LIBRARIES = ["seccomp"]

INCLUDES = """
#include <seccomp.h>
"""

TYPES = """
typedef void *scmp_filter_ctx;
typedef uint64_t scmp_datum_t;

enum scmp_compare {
    SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ,
    SCMP_CMP_GE, SCMP_CMP_GT, SCMP_CMP_MASKED_EQ, ...
};

enum scmp_filter_attr {
    SCMP_FLTATR_ACT_DEFAULT, SCMP_FLTATR_ACT_BADARCH, SCMP_FLTATR_CTL_NNP,
    SCMP_FLTATR_CTL_TSYNC, SCMP_FLTATR_CTL_LOG, SCMP_FLTATR_CTL_SSB,
    SCMP_FLTATR_API_SYSRAWRC, ...
};

struct scmp_arg_cmp {
    unsigned int arg;
    enum scmp_compare op;
    scmp_datum_t datum_a;
    scmp_datum_t datum_b;
};

struct scmp_version {
    unsigned int major;
    unsigned int minor;
    unsigned int micro;
};

#define SCMP_ACT_KILL_PROCESS ...
#define SCMP_ACT_KILL_THREAD ...
#define SCMP_ACT_TRAP ...
#define SCMP_ACT_LOG ...
#define SCMP_ACT_ALLOW ...
#define SCMP_ACT_NOTIFY ...
#define __NR_SCMP_ERROR ...
"""

FUNCTIONS = """
const struct scmp_version *seccomp_version(void);
unsigned int seccomp_api_get(void);
scmp_filter_ctx seccomp_init(uint32_t def_action);
void seccomp_release(scmp_filter_ctx ctx);
uint32_t seccomp_arch_resolve_name(const char *arch_name);
uint32_t seccomp_arch_native(void);
int seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch_token);
int seccomp_arch_exist(const scmp_filter_ctx ctx, uint32_t arch_token);
int seccomp_attr_set(scmp_filter_ctx ctx, enum scmp_filter_attr attr, uint32_t value);
int seccomp_attr_get(const scmp_filter_ctx ctx, enum scmp_filter_attr attr, uint32_t *value);
int seccomp_syscall_resolve_name(const char *name);
int seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
                           unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);
int seccomp_load(const scmp_filter_ctx ctx);
uint32_t barerun_scmp_act_errno(uint16_t err);
uint32_t barerun_scmp_act_trace(uint16_t msg);
"""

CUSTOMIZATIONS = """
uint32_t barerun_scmp_act_errno(uint16_t err)
{
    return SCMP_ACT_ERRNO(err);
}

uint32_t barerun_scmp_act_trace(uint16_t msg)
{
    return SCMP_ACT_TRACE(msg);
}
"""
