/*
 * The xen-4.17 shim of pytest-altpatch: Xen's hypervisor API, as used by
 * xen/arch/arm/alternative.c and xen/arch/arm/arm64/insn.c, mapped onto the
 * altpatch ABI (altpatch.h).  Written for pytest-altpatch from the API's names and
 * signatures; every <xen/...> and <asm/...> header of this shim includes this one.
 */
#ifndef ALTPATCH_XEN_H
#define ALTPATCH_XEN_H

#include <altpatch.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint16_t u16;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int8_t s8;
typedef int16_t s16;
typedef int32_t s32;
typedef int64_t s64;
typedef uint64_t paddr_t;
typedef uint64_t register_t;

#define __init
#define __initdata
#define __read_mostly
#define unlikely(x) __builtin_expect(!!(x), 0)
#define likely(x) __builtin_expect(!!(x), 1)
#define barrier() __asm__ __volatile__("" ::: "memory")

/* Diagnostics. */
#define XENLOG_ERR "<E>"
#define XENLOG_WARNING "<W>"
#define XENLOG_INFO "<I>"
#define XENLOG_DEBUG "<D>"
#define printk(...) altpatch_log(__VA_ARGS__)
#define BUG() altpatch_bug(__FILE__, __LINE__, 0)
#define BUG_ON(cond) do { if (unlikely(cond)) altpatch_bug(__FILE__, __LINE__, #cond); } while (0)
#define ASSERT(cond) do { if (0 && (cond)) { } } while (0)

/* Errors, sizes, bits. */
#define EINVAL 22
#define SZ_2M (2UL << 20)
#define SZ_128M (128UL << 20)
#define _AC(x, sfx) (x##sfx)
#define BIT(pos, sfx) (_AC(1, sfx) << (pos))

/* Boot state: alternatives are applied during boot. */
enum { SYS_STATE_early_boot, SYS_STATE_boot, SYS_STATE_smp_boot, SYS_STATE_active };
#define system_state SYS_STATE_boot

/* Image bounds (bound by the shim's manifest to the case image's text). */
extern char _start[], _end[];

/* Pages and frames. */
#define PAGE_SHIFT 12
#define PAGE_SIZE (1UL << PAGE_SHIFT)
typedef struct { unsigned long mfn; } mfn_t;
static inline mfn_t _mfn(unsigned long mfn) { mfn_t m = { mfn }; return m; }
static inline unsigned long mfn_x(mfn_t m) { return m.mfn; }
static inline unsigned int get_order_from_bytes(paddr_t size)
{
    unsigned int order = 0;
    size = (size - 1) >> PAGE_SHIFT;
    for (; size; size >>= 1)
        order++;
    return order;
}
#define __virt_to_mfn(va) (altpatch_virt_to_phys((const void *)(va)) >> PAGE_SHIFT)
#define virt_to_mfn(va) __virt_to_mfn(va)

/* vmap. */
enum vmap_region { VMAP_DEFAULT, VMAP_XEN, VMAP_REGION_NR };
#define PAGE_HYPERVISOR 0
static inline void *__vmap(const mfn_t *mfn, unsigned int granularity, unsigned int nr,
                           unsigned int align, unsigned int flags, enum vmap_region type)
{
    (void)align; (void)flags; (void)type;
    return altpatch_vmap((uint64_t)mfn_x(*mfn) << PAGE_SHIFT,
                         ((uint64_t)granularity * nr) << PAGE_SHIFT);
}
static inline void vunmap(const void *va) { altpatch_vunmap((void *)va); }

/* CPUs and stop_machine. */
#define NR_CPUS 256
#define smp_processor_id() altpatch_cpu_id()
static inline int stop_machine_run(int (*fn)(void *), void *data, unsigned int cpu)
{
    (void)cpu;
    return altpatch_stop_machine(fn, data);
}
static inline bool is_active_kernel_text(unsigned long addr)
{
    return altpatch_is_kernel_text(addr);
}

/* Barriers and atomics: real instructions. */
#define isb() __asm__ __volatile__("isb" ::: "memory")
#define dsb(scope) __asm__ __volatile__("dsb " #scope ::: "memory")
#define dmb(scope) __asm__ __volatile__("dmb " #scope ::: "memory")
#define cpu_relax() barrier()
#define read_atomic(p) __atomic_load_n((p), __ATOMIC_RELAXED)
#define write_atomic(p, x) __atomic_store_n((p), (x), __ATOMIC_RELAXED)

/* Byte order (little-endian only). */
#define le32_to_cpu(x) ((u32)(x))
#define cpu_to_le32(x) ((u32)(x))

/*
 * Capabilities: Xen 4.17 numbers 18 (ARM_NCAPS); a case may add its own after them,
 * as if Xen were built with them, so ARM_NCAPS is the environment's count.  Callback
 * entries are marked ARM_CB_PATCH == ARM_NCAPS.
 */
#define ARM_NCAPS (altpatch_env.ncaps)
#define ARM_CB_PATCH ARM_NCAPS
static inline bool cpus_have_cap(unsigned int num)
{
    return num < ARM_NCAPS && altpatch_have_cap(num);
}

/* The D-cache line the boot CPU reads from its own CTR_EL0 (DminLine, words). */
static inline size_t altpatch_xen_dcache_line(void)
{
    register_t ctr;
    __asm__ __volatile__("mrs %0, ctr_el0" : "=r"(ctr));
    return (size_t)4 << ((ctr >> 16) & 0xf);
}
#define dcache_line_bytes altpatch_xen_dcache_line()

/* Clean and invalidate to PoC every line of [p, p+size), between two DSB SY. */
static inline int clean_and_invalidate_dcache_va_range(const void *p, unsigned long size)
{
    size_t line = dcache_line_bytes;
    uintptr_t va = (uintptr_t)p & ~(uintptr_t)(line - 1);
    uintptr_t end = (uintptr_t)p + size;

    if (!size)
        return 0;
    dsb(sy);
    for (; va < end; va += line)
        __asm__ __volatile__("dc civac, %0" : : "r"(va) : "memory");
    dsb(sy);
    return 0;
}

/* IC IALLUIS, DSB ISH, ISB. */
static inline void invalidate_icache(void)
{
    __asm__ __volatile__("ic ialluis" ::: "memory");
    dsb(ish);
    isb();
}

/* The alternatives table entry (12 bytes). */
struct alt_instr {
    s32 orig_offset;
    s32 repl_offset;
    u16 cpufeature;
    u8 orig_len;
    u8 repl_len;
};
#define ARCH_PATCH_INSN_SIZE 4
#define __ALT_PTR(a, f) ((void *)&(a)->f + (a)->f)
#define ALT_ORIG_PTR(a) __ALT_PTR(a, orig_offset)
#define ALT_REPL_PTR(a) __ALT_PTR(a, repl_offset)
typedef void (*alternative_cb_t)(const struct alt_instr *alt, const uint32_t *origptr,
                                 uint32_t *updptr, int nr_inst);
int apply_alternatives(const struct alt_instr *start, const struct alt_instr *end);
void apply_alternatives_all(void);

/* A64 instruction helpers (xen/arch/arm/arm64/insn.c implements them). */
#define AARCH64_INSN_SIZE 4
#define AARCH64_BREAK_FAULT 0xd4202000u /* BRK #0x100 */
enum aarch64_insn_imm_type {
    AARCH64_INSN_IMM_ADR, AARCH64_INSN_IMM_26, AARCH64_INSN_IMM_19, AARCH64_INSN_IMM_16,
    AARCH64_INSN_IMM_14, AARCH64_INSN_IMM_12, AARCH64_INSN_IMM_9, AARCH64_INSN_IMM_7,
    AARCH64_INSN_IMM_6, AARCH64_INSN_IMM_S, AARCH64_INSN_IMM_R, AARCH64_INSN_IMM_MAX
};
enum aarch64_insn_branch_type {
    AARCH64_INSN_BRANCH_NOLINK, AARCH64_INSN_BRANCH_LINK, AARCH64_INSN_BRANCH_RETURN,
    AARCH64_INSN_BRANCH_COMP_ZERO, AARCH64_INSN_BRANCH_COMP_NONZERO
};
enum aarch64_insn_hint_op { AARCH64_INSN_HINT_NOP = 0x0 << 5 };

/* Encoding classes (mask, value) from the Arm ARM's A64 encoding tables. */
#define ALTPATCH_XEN_INSN(name, mask, value) \
    static inline bool aarch64_insn_is_##name(u32 insn) { return (insn & (mask)) == (value); } \
    static inline u32 aarch64_insn_get_##name##_value(void) { return (value); }
ALTPATCH_XEN_INSN(b, 0xFC000000u, 0x14000000u)
ALTPATCH_XEN_INSN(bl, 0xFC000000u, 0x94000000u)
ALTPATCH_XEN_INSN(cbz, 0x7F000000u, 0x34000000u)
ALTPATCH_XEN_INSN(cbnz, 0x7F000000u, 0x35000000u)
ALTPATCH_XEN_INSN(tbz, 0x7F000000u, 0x36000000u)
ALTPATCH_XEN_INSN(tbnz, 0x7F000000u, 0x37000000u)
ALTPATCH_XEN_INSN(bcond, 0xFF000010u, 0x54000000u)
ALTPATCH_XEN_INSN(hint, 0xFFFFF01Fu, 0xD503201Fu)
#undef ALTPATCH_XEN_INSN

bool aarch64_insn_is_branch_imm(u32 insn);
u64 aarch64_insn_decode_immediate(enum aarch64_insn_imm_type type, u32 insn);
u32 aarch64_insn_encode_immediate(enum aarch64_insn_imm_type type, u32 insn, u64 imm);
u32 aarch64_insn_gen_branch_imm(unsigned long pc, unsigned long addr,
                                enum aarch64_insn_branch_type type);
u32 aarch64_insn_gen_hint(enum aarch64_insn_hint_op op);
u32 aarch64_insn_gen_nop(void);
s32 aarch64_get_branch_offset(u32 insn);
u32 aarch64_set_branch_offset(u32 insn, s32 offset);

static inline bool insn_is_branch_imm(u32 insn) { return aarch64_insn_is_branch_imm(insn); }
static inline s32 insn_get_branch_offset(u32 insn) { return aarch64_get_branch_offset(insn); }
static inline u32 insn_set_branch_offset(u32 insn, s32 offset)
{
    return aarch64_set_branch_offset(insn, offset);
}

#endif /* ALTPATCH_XEN_H */
