/*
 * An alternatives patcher in C for pytest-altpatch (ABI v1).
 *
 * Built plain, it follows the Linux 4.9 rules: branches and ADRP that leave the
 * replacement are re-targeted, literal forms are refused, callbacks (capability ==
 * NCAPS) always run, and every patched site is cleaned to PoU and invalidated by VA.
 *
 * Built with -DALTPATCH_XEN, the Xen 4.17 rules: branches only (ADRP and literals
 * copied), text written through a vmap alias, each site cleaned to PoC between
 * DSB SY by the CPU's own line size, one IC IALLUIS at the end; plus livepatch
 * apply/revert (a B to the new function, or NOPs, saved words kept in opaque).
 */
#include <altpatch.h>

struct alt_instr {
    int32_t orig_offset;
    int32_t repl_offset;
    uint16_t cap;
    uint8_t orig_len;
    uint8_t repl_len;
};

typedef void alt_cb_t(const struct alt_instr *alt, const uint32_t *origptr,
                      uint32_t *updptr, int nr_inst);

/* Linux 4.9 numbers ARM64_WORKAROUND_CLEAN_CACHE 0: DC CVAU is not enough there. */
#define CAP_CLEAN_CACHE 0

static const uint32_t *orig_ptr(const struct alt_instr *alt)
{
    return (const uint32_t *)((const char *)&alt->orig_offset + alt->orig_offset);
}

static const uint32_t *repl_ptr(const struct alt_instr *alt)
{
    return (const uint32_t *)((const char *)&alt->repl_offset + alt->repl_offset);
}

static int64_t sext(uint64_t value, int bits)
{
    return (int64_t)(value << (64 - bits)) >> (64 - bits);
}

/* Immediate branch classes: (mask, value, field shift, field width). */
struct branch_class { uint32_t mask, value; int shift, width; };
static const struct branch_class branches[] = {
    { 0x7C000000u, 0x14000000u, 0, 26 },   /* B, BL */
    { 0xFF000000u, 0x54000000u, 5, 19 },   /* B.cond, BC.cond */
    { 0x7E000000u, 0x34000000u, 5, 19 },   /* CBZ, CBNZ */
    { 0x7E000000u, 0x36000000u, 5, 14 },   /* TBZ, TBNZ */
};

static int is_literal(uint32_t insn)
{
    return (insn & 0x9F000000u) == 0x10000000u     /* ADR */
        || (insn & 0x3F000000u) == 0x18000000u;    /* LDR/LDRSW/PRFM (literal), not SIMD&FP */
}

/* The word as it must read at the site; -1 (as a refusal) through *refusal. */
static uint32_t relocate(const struct alt_instr *alt, uint32_t insn, uint64_t repl_pc,
                         uint64_t site_pc, int *refusal)
{
    uint64_t start = (uint64_t)repl_ptr(alt), end = start + alt->repl_len;
    unsigned int i;

    for (i = 0; i < sizeof(branches) / sizeof(branches[0]); i++) {
        const struct branch_class *c = &branches[i];
        uint32_t field = ((1u << c->width) - 1) << c->shift;
        uint64_t target;
        int64_t offset;

        if ((insn & c->mask) != c->value)
            continue;
        target = repl_pc + 4 * sext((insn & field) >> c->shift, c->width);
        /* Inside [start, end] (end inclusive) the copy is already right. */
        if (target >= start && target <= end)
            return insn;
        offset = (int64_t)(target - site_pc) / 4;
        return (insn & ~field) | (((uint32_t)offset << c->shift) & field);
    }
#ifndef ALTPATCH_XEN
    if ((insn & 0x9F000000u) == 0x90000000u) {             /* ADRP: by 4 KiB pages */
        int64_t imm = sext(((insn >> 5) & 0x7FFFFu) << 2 | ((insn >> 29) & 3), 21);
        uint64_t page = (repl_pc & ~0xFFFull) + (uint64_t)(imm << 12);
        int64_t delta = (int64_t)(page - (site_pc & ~0xFFFull)) >> 12;
        insn &= ~((0x7FFFFu << 5) | (3u << 29));
        return insn | (((uint32_t)delta & 3) << 29) | ((((uint32_t)delta >> 2) & 0x7FFFFu) << 5);
    }
    if (is_literal(insn))
        *refusal = ALTPATCH_LITERAL_IN_REPLACEMENT;
#else
    (void)is_literal;
    (void)refusal;
#endif
    return insn;
}

#ifdef ALTPATCH_XEN
static uint64_t own_dcache_line(void)
{
    uint64_t ctr;

    __asm__ volatile("mrs %0, ctr_el0" : "=r"(ctr));
    return 4ull << ((ctr >> 16) & 0xf);
}

static void flush_site(const struct altpatch_env *env, uint64_t start, uint64_t end)
{
    uint64_t line = own_dcache_line(), va;

    (void)env;
    __asm__ volatile("dsb sy" ::: "memory");
    for (va = start & ~(line - 1); va < end; va += line)
        __asm__ volatile("dc civac, %0" : : "r"(va) : "memory");
    __asm__ volatile("dsb sy" ::: "memory");
}

static void finish_maintenance(void)
{
    __asm__ volatile("ic ialluis\n\tdsb ish\n\tisb" ::: "memory");
}
#else
static void finish_maintenance(void)
{
}

static void flush_site(const struct altpatch_env *env, uint64_t start, uint64_t end)
{
    uint64_t dline = env->dcache_line, iline = env->icache_line, va;
    int civac = altpatch_have_cap(CAP_CLEAN_CACHE);

    for (va = start & ~(dline - 1); va < end; va += dline) {
        if (civac)
            __asm__ volatile("dc civac, %0" : : "r"(va) : "memory");
        else
            __asm__ volatile("dc cvau, %0" : : "r"(va) : "memory");
    }
    __asm__ volatile("dsb ish" ::: "memory");
    for (va = start & ~(iline - 1); va < end; va += iline)
        __asm__ volatile("ic ivau, %0" : : "r"(va) : "memory");
    __asm__ volatile("dsb ish\n\tisb" ::: "memory");
}
#endif

static int patch_region(const struct altpatch_env *env, int maintain)
{
    const struct alt_instr *alt = (const struct alt_instr *)env->table_start;
    const struct alt_instr *end = (const struct alt_instr *)env->table_end;
    uint64_t offset = (env->flags & ALTPATCH_ENV_ALIAS) ? env->alias_offset : 0;
    void *alias = 0;
    int result = 0;

    if (maintain && (env->flags & ALTPATCH_ENV_LIVE) && !(env->flags & ALTPATCH_ENV_ALIAS)) {
        /* Read-only text: write through a fresh writable alias of it (Xen's vmap). */
        alias = altpatch_vmap(env->text_phys, env->text_end - env->text_start);
        if (!alias)
            return ALTPATCH_PATCHER_UNSUPPORTED;
        offset = (uint64_t)alias - env->text_start;
    }
    for (; alt < end && !result; alt++) {
        const uint32_t *orig = orig_ptr(alt), *repl = repl_ptr(alt);
        uint32_t *update = (uint32_t *)((uint64_t)orig + offset);
        int nr_inst = alt->orig_len / 4, i;

        if (alt->cap > env->ncaps)
            continue;                       /* never applies */
        if (alt->cap == env->ncaps) {       /* a callback: always */
            if (alt->repl_len != 0) {
                result = ALTPATCH_CALLBACK_LENGTH;
                break;
            }
            ((alt_cb_t *)(uintptr_t)repl)(alt, orig, update, nr_inst);
        } else {
            if (!altpatch_have_cap(alt->cap))
                continue;
            if (alt->repl_len != alt->orig_len) {
                result = ALTPATCH_LENGTH_MISMATCH;
                break;
            }
            for (i = 0; i < nr_inst && !result; i++) {
                uint32_t insn = relocate(alt, repl[i], (uint64_t)&repl[i],
                                         (uint64_t)&orig[i], &result);
                if (!result)
                    update[i] = insn;
            }
        }
        if (maintain && !result)
            flush_site(env, (uint64_t)orig, (uint64_t)orig + alt->orig_len);
    }
    if (maintain && !result)
        finish_maintenance();
    if (alias)
        altpatch_vunmap(alias);
    return result;
}

int c_patch_all(const struct altpatch_env *env, unsigned int cpu)
{
    volatile uint32_t *sync = (volatile uint32_t *)env->sync_va;
    int result;

    if (cpu != env->boot_cpu) {
        /* We may be patching code a fancier wait would run: spin on a plain flag. */
        while (!__atomic_load_n(sync, __ATOMIC_ACQUIRE))
            ;
        __asm__ volatile("isb" ::: "memory");
        return 0;
    }
    result = patch_region(env, 1);
    __atomic_store_n(sync, 1, __ATOMIC_RELEASE);
    return result;
}

int c_patch_region(const struct altpatch_env *env)
{
#ifdef ALTPATCH_XEN
    /* A payload is patched in place (not live yet), with Xen's maintenance. */
    return patch_region(env, 1);
#else
    /* A module's text is not live yet: its loader does the cache maintenance. */
    return patch_region(env, 0);
#endif
}

#ifdef ALTPATCH_XEN
#define NOP 0xD503201Fu

static int wait_for_master(struct altpatch_livepatch *lp, unsigned int cpu)
{
    volatile uint32_t *sync = (volatile uint32_t *)lp->sync_va;

    if (cpu == 0)
        return 0;
    while (!__atomic_load_n(sync, __ATOMIC_ACQUIRE))
        ;
    __asm__ volatile("isb" ::: "memory");
    return 1;
}

/* Write words[f][0..n) over each old function through a vmap alias, then maintain. */
static int switch_functions(struct altpatch_livepatch *lp, uint32_t words[][4], int counts[])
{
    uint64_t line = lp->dcache_line, offset = lp->alias_offset;
    void *alias = 0;
    uint32_t f;
    int i;

    if (!(lp->flags & ALTPATCH_ENV_ALIAS)) {
        alias = altpatch_vmap(lp->text_phys, lp->text_end - lp->text_start);
        if (!alias)
            return ALTPATCH_PATCHER_UNSUPPORTED;
        offset = (uint64_t)alias - lp->text_start;
    }
    for (f = 0; f < lp->nfuncs; f++)
        for (i = 0; i < counts[f]; i++)
            ((volatile uint32_t *)(lp->funcs[f].old_addr + offset))[i] = words[f][i];
    for (f = 0; f < lp->nfuncs; f++) {
        uint64_t va, end = lp->funcs[f].old_addr + 4 * counts[f];

        for (va = lp->funcs[f].old_addr & ~(line - 1); va < end; va += line)
            __asm__ volatile("dc civac, %0" : : "r"(va) : "memory");
    }
    __asm__ volatile("dsb ish\n\tic ialluis\n\tdsb ish\n\tisb" ::: "memory");
    if (alias)
        altpatch_vunmap(alias);
    return 0;
}

int c_livepatch_apply(struct altpatch_livepatch *lp, unsigned int cpu)
{
    static uint32_t words[64][4];
    static int counts[64];
    uint32_t f;
    int result;

    if (wait_for_master(lp, cpu))
        return 0;
    if (lp->nfuncs > 64)
        return ALTPATCH_PATCHER_UNSUPPORTED;
    /* Every check before any write: nothing is half applied. */
    for (f = 0; f < lp->nfuncs; f++) {
        struct altpatch_livepatch_func *fn = &lp->funcs[f];
        const uint8_t *old = (const uint8_t *)fn->old_addr;
        uint32_t k;

        for (k = 0; k < fn->expect_len; k++)
            if (old[k] != fn->expect[k])
                return ALTPATCH_EXPECTATION_FAILED;
        if (fn->new_addr) {
            int64_t delta = (int64_t)(fn->new_addr - fn->old_addr);

            if (delta < -(1ll << 27) || delta >= (1ll << 27))
                return ALTPATCH_BRANCH_OUT_OF_RANGE;
            words[f][0] = 0x14000000u | ((uint32_t)(delta >> 2) & 0x03FFFFFFu);
            counts[f] = 1;
        } else {
            if (fn->new_size % 4 || fn->new_size > fn->old_size || fn->new_size > 16)
                return ALTPATCH_PATCHER_UNSUPPORTED;
            counts[f] = (int)(fn->new_size / 4);
            for (k = 0; k < (uint32_t)counts[f]; k++)
                words[f][k] = NOP;
        }
        memcpy(fn->opaque, old, 4 * (size_t)counts[f]);   /* saved for revert */
    }
    result = switch_functions(lp, words, counts);
    __atomic_store_n((volatile uint32_t *)lp->sync_va, 1, __ATOMIC_RELEASE);
    return result;
}

int c_livepatch_revert(struct altpatch_livepatch *lp, unsigned int cpu)
{
    static uint32_t words[64][4];
    static int counts[64];
    uint32_t f;
    int result;

    if (wait_for_master(lp, cpu))
        return 0;
    if (lp->nfuncs > 64)
        return ALTPATCH_PATCHER_UNSUPPORTED;
    for (f = 0; f < lp->nfuncs; f++) {
        struct altpatch_livepatch_func *fn = &lp->funcs[f];

        counts[f] = fn->new_addr ? 1 : (int)(fn->new_size / 4);
        memcpy(words[f], fn->opaque, 4 * (size_t)counts[f]);
    }
    result = switch_functions(lp, words, counts);
    __atomic_store_n((volatile uint32_t *)lp->sync_va, 1, __ATOMIC_RELEASE);
    return result;
}
#endif
