/*
 * altpatch.h: the C interface of pytest-altpatch native patchers, ABI v1.
 *
 * A native patcher is one or more AArch64 ELF relocatable objects (or A64 assembly
 * sources) plus a manifest; the harness links them into its emulated machine and
 * calls their entries as guest code.  See conformance/native-abi.md.
 *
 * Build:  aarch64-linux-gnu-gcc $(altpatch native cflags) -c my_patcher.c
 *
 * Only what a kernel gets from elsewhere is a service here.  Cache maintenance,
 * barriers, atomics and the rendezvous stay the patcher's own instructions: the
 * machine's fetch model judges them.
 */
#ifndef ALTPATCH_H
#define ALTPATCH_H

#include <stddef.h>
#include <stdint.h>

#define ALTPATCH_ABI_VERSION 1

/* struct altpatch_env.flags */
#define ALTPATCH_ENV_LIVE  1u  /* the region is live kernel text: maintain caches */
#define ALTPATCH_ENV_ALIAS 2u  /* site + alias_offset is a writable alias */

/* Refusal numbers (altpatch_refuse, or the result of an int entry). */
#define ALTPATCH_LENGTH_MISMATCH        1
#define ALTPATCH_CALLBACK_LENGTH        2
#define ALTPATCH_LITERAL_IN_REPLACEMENT 3
#define ALTPATCH_BRANCH_OUT_OF_RANGE    4
#define ALTPATCH_ADR_OUT_OF_RANGE       5
#define ALTPATCH_ADRP_OUT_OF_RANGE      6
#define ALTPATCH_LITERAL_OUT_OF_RANGE   7
#define ALTPATCH_PATCHER_UNSUPPORTED    8
#define ALTPATCH_EXPECTATION_FAILED     9
#define ALTPATCH_CALLBACK_NOT_IN_TEXT   10

/* The environment block: written by the harness before every entry call. */
struct altpatch_env {
    uint32_t abi_version;        /* ALTPATCH_ABI_VERSION */
    uint32_t ncpus;              /* CPUs taking part (online CPUs) */
    uint32_t ncaps;              /* capability numbers of the dialect */
    uint32_t dcache_line;        /* system-wide minimum D-cache line, bytes */
    uint32_t icache_line;        /* system-wide minimum I-cache line, bytes */
    uint32_t flags;              /* ALTPATCH_ENV_LIVE | ALTPATCH_ENV_ALIAS */
    uint32_t boot_cpu;           /* the CPU that patches (0) */
    uint32_t reserved;
    uint64_t text_start;         /* the region's executable text */
    uint64_t text_end;
    uint64_t text_phys;          /* physical address of text_start (for vmap) */
    uint64_t table_start;        /* first .altinstructions entry (read-only) */
    uint64_t table_end;
    uint64_t alias_offset;       /* site + alias_offset is writable (ALTPATCH_ENV_ALIAS) */
    uint64_t kernel_text_start;  /* the base image's executable text */
    uint64_t kernel_text_end;
    uint64_t sync_va;            /* a zeroed, writable word for the rendezvous */
    uint64_t caps[4];            /* bitmap of the capabilities the system has */
    uint64_t boot_caps[4];       /* of those, the boot-CPU-scope ones */
};

extern const struct altpatch_env altpatch_env;

/* One function a livepatch payload replaces. */
struct altpatch_livepatch_func {
    uint64_t old_addr;           /* the old function (base image text) */
    uint64_t new_addr;           /* its replacement; 0: NOP out new_size bytes */
    uint32_t old_size;
    uint32_t new_size;           /* bytes the switch replaces */
    uint32_t expect_len;         /* bytes of expect[] to check (0: none) */
    uint32_t reserved;
    uint8_t expect[16];          /* the old bytes the payload expects */
    uint8_t opaque[16];          /* the patcher's own: kept from apply to revert */
};

/* One payload: written before apply and revert; funcs[].opaque is preserved. */
struct altpatch_livepatch {
    uint32_t abi_version;
    uint32_t nfuncs;
    uint32_t ncpus;
    uint32_t dcache_line;
    uint32_t icache_line;
    uint32_t flags;              /* ALTPATCH_ENV_ALIAS */
    uint64_t text_start;         /* the base image's text */
    uint64_t text_end;
    uint64_t text_phys;
    uint64_t alias_offset;
    uint64_t sync_va;            /* a zeroed, writable word for the rendezvous */
    struct altpatch_livepatch_func funcs[];
};

/* Entry signatures (names are the manifest's). */
typedef void altpatch_stop_machine_entry_t(void);                        /* stop-machine */
typedef int altpatch_every_cpu_entry_t(const struct altpatch_env *env,
                                       unsigned int cpu);                /* every-cpu */
typedef int altpatch_table_entry_t(const void *table_start, const void *table_end); /* table */
typedef int altpatch_env_entry_t(const struct altpatch_env *env);       /* env */
typedef int altpatch_livepatch_entry_t(struct altpatch_livepatch *lp,
                                       unsigned int cpu);                /* livepatch */

/* Services. */
void *altpatch_vmap(uint64_t pa, uint64_t size);
int altpatch_vunmap(void *va);
void altpatch_log(const char *fmt, ...);
void altpatch_bug(const char *file, int line, const char *cond) __attribute__((noreturn));
void altpatch_refuse(unsigned int refusal, uint64_t address) __attribute__((noreturn));
int altpatch_stop_machine(int (*fn)(void *), void *data);
uint64_t altpatch_virt_to_phys(const void *va);
unsigned int altpatch_cpu_id(void);
int altpatch_is_kernel_text(uint64_t va);
void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);

static inline int altpatch_have_cap(unsigned int cap)
{
    return cap < 256 && ((altpatch_env.caps[cap / 64] >> (cap % 64)) & 1);
}

#define ALTPATCH_BUG() altpatch_bug(__FILE__, __LINE__, 0)
#define ALTPATCH_BUG_ON(cond) \
    do { if (cond) altpatch_bug(__FILE__, __LINE__, #cond); } while (0)

#endif /* ALTPATCH_H */
