/*
 * An alternatives patcher in C for pytest-altpatch (ABI v1), with Linux 4.9 rules:
 * branches and ADRP that leave the replacement are re-targeted, literal forms are
 * refused, callbacks (capability == NCAPS) always run, and every patched site is
 * cleaned to PoU and invalidated by VA before the next.
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
        || (insn & 0x3B000000u) == 0x18000000u;    /* LDR/LDRSW/PRFM (literal) */
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
    if ((insn & 0x9F000000u) == 0x90000000u) {             /* ADRP: by 4 KiB pages */
        int64_t imm = sext(((insn >> 5) & 0x7FFFFu) << 2 | ((insn >> 29) & 3), 21);
        uint64_t page = (repl_pc & ~0xFFFull) + (uint64_t)(imm << 12);
        int64_t delta = (int64_t)(page - (site_pc & ~0xFFFull)) >> 12;
        insn &= ~((0x7FFFFu << 5) | (3u << 29));
        return insn | (((uint32_t)delta & 3) << 29) | ((((uint32_t)delta >> 2) & 0x7FFFFu) << 5);
    }
    if (is_literal(insn))
        *refusal = ALTPATCH_LITERAL_IN_REPLACEMENT;
    return insn;
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

static int patch_region(const struct altpatch_env *env, int maintain)
{
    const struct alt_instr *alt = (const struct alt_instr *)env->table_start;
    const struct alt_instr *end = (const struct alt_instr *)env->table_end;
    uint64_t offset = (env->flags & ALTPATCH_ENV_ALIAS) ? env->alias_offset : 0;

    for (; alt < end; alt++) {
        const uint32_t *orig = orig_ptr(alt), *repl = repl_ptr(alt);
        uint32_t *update = (uint32_t *)((uint64_t)orig + offset);
        int nr_inst = alt->orig_len / 4, i;

        if (alt->cap > env->ncaps)
            continue;                       /* never applies */
        if (alt->cap == env->ncaps) {       /* a callback: always */
            if (alt->repl_len != 0)
                return ALTPATCH_CALLBACK_LENGTH;
            ((alt_cb_t *)(uintptr_t)repl)(alt, orig, update, nr_inst);
        } else {
            if (!altpatch_have_cap(alt->cap))
                continue;
            if (alt->repl_len != alt->orig_len)
                return ALTPATCH_LENGTH_MISMATCH;
            for (i = 0; i < nr_inst; i++) {
                int refusal = 0;
                uint32_t insn = relocate(alt, repl[i], (uint64_t)&repl[i],
                                         (uint64_t)&orig[i], &refusal);
                if (refusal)
                    return refusal;
                update[i] = insn;
            }
        }
        if (maintain)
            flush_site(env, (uint64_t)orig, (uint64_t)orig + alt->orig_len);
    }
    return 0;
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
    /* A module's text is not live yet: its loader does the cache maintenance. */
    return patch_region(env, 0);
}
