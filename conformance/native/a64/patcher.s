// a64_patch_all(const struct altpatch_env *env, unsigned int cpu) -> 0 or a refusal.
//
// Every online CPU calls it.  CPU0 maps a writable alias of the text (vmap), applies
// each .altinstructions entry, cleans every site to PoC, invalidates the I-cache and
// releases the others through the rendezvous word; the others spin on that word with
// a plain acquire load (we may be patching code a fancier wait would run) and ISB
// before they return, so they never run a line they fetched before the patch.
//
// struct altpatch_env offsets (altpatch.h): ncaps 8, text_start 32, text_end 40,
// text_phys 48, table_start 56, table_end 64, sync_va 96, caps 104.
// struct alt_instr: s32 orig_offset, s32 repl_offset, u16 cap, u8 orig_len, u8 repl_len.
    .globl a64_patch_all
a64_patch_all:
    stp x29, x30, [sp, #-96]!
    mov x29, sp
    stp x19, x20, [sp, #16]
    stp x21, x22, [sp, #32]
    stp x23, x24, [sp, #48]
    stp x25, x26, [sp, #64]
    stp x27, x28, [sp, #80]
    mov x19, x0
    cbz w1, patch
    // Waiters: until the patching CPU releases us, then discard what we fetched.
    ldr x0, [x19, #96]
1:  ldar w1, [x0]
    cbz w1, 1b
    isb
    mov w0, #0
    b out

patch:
    ldr x0, [x19, #48]          // vmap(text_phys, text_end - text_start)
    ldr x1, [x19, #32]
    ldr x2, [x19, #40]
    sub x1, x2, x1
    bl altpatch_vmap
    cbz x0, no_alias
    mov x24, x0
    ldr x1, [x19, #32]
    sub x23, x0, x1             // site + x23 = writable alias of the site
    mrs x0, ctr_el0             // this CPU's D-cache line: 4 << DminLine bytes
    ubfx x0, x0, #16, #4
    mov x25, #4
    lsl x25, x25, x0
    ldr w26, [x19, #8]          // NCAPS (callbacks carry exactly NCAPS)
    ldr x21, [x19, #56]
    ldr x22, [x19, #64]

next:
    cmp x21, x22
    b.hs finish
    ldrh w0, [x21, #8]
    ldrb w28, [x21, #10]        // orig_len
    ldrb w2, [x21, #11]         // repl_len
    ldrsw x27, [x21]
    add x27, x27, x21           // origptr
    ldrsw x4, [x21, #4]
    add x4, x4, x21
    add x4, x4, #4              // replptr
    cmp w0, w26
    b.eq callback
    b.hi skip                   // above NCAPS: never applies (INTERPRETING rule 1)
    lsr w1, w0, #6              // is capability w0 on?
    add x3, x19, #104
    ldr x3, [x3, x1, lsl #3]
    lsr x3, x3, x0
    tbz x3, #0, skip
    cmp w28, w2
    b.ne refuse_length
    mov x5, #0                  // byte index in the site
copy:
    cmp x5, x28
    b.hs clean
    ldr w6, [x4, x5]
    add x7, x4, x5              // where the word is (replacement)
    add x8, x27, x5             // where it will run (site)
    and w9, w6, #0x7c000000     // B, BL
    mov w10, #0x14000000
    cmp w9, w10
    b.eq imm26
    and w9, w6, #0xff000000     // B.cond, BC.cond
    mov w10, #0x54000000
    cmp w9, w10
    b.eq imm19
    and w9, w6, #0x7e000000     // CBZ, CBNZ
    mov w10, #0x34000000
    cmp w9, w10
    b.eq imm19
    mov w10, #0x36000000        // TBZ, TBNZ
    cmp w9, w10
    b.eq imm14
store:
    add x9, x8, x23
    str w6, [x9]
    add x5, x5, #4
    b copy

imm26:
    sbfx x11, x6, #0, #26
    add x12, x7, x11, lsl #2    // absolute target
    bl internal
    cbnz w13, store
    sub x11, x12, x8
    asr x11, x11, #2
    bfxil w6, w11, #0, #26     // (BFI with lsb 0 is spelled BFXIL)
    b store
imm19:
    sbfx x11, x6, #5, #19
    add x12, x7, x11, lsl #2
    bl internal
    cbnz w13, store
    sub x11, x12, x8
    asr x11, x11, #2
    bfi w6, w11, #5, #19
    b store
imm14:
    sbfx x11, x6, #5, #14
    add x12, x7, x11, lsl #2
    bl internal
    cbnz w13, store
    sub x11, x12, x8
    asr x11, x11, #2
    bfi w6, w11, #5, #14
    b store

// w13 = 1 when target x12 is inside [replptr, replptr + len] (the end inclusive:
// a branch to just past the replacement lands just past the site once copied).
internal:
    mov w13, #0
    cmp x12, x4
    b.lo 2f
    add x14, x4, x28
    cmp x12, x14
    b.hi 2f
    mov w13, #1
2:  ret

callback:
    cbnz w2, refuse_callback
    mov x0, x21                 // cb(alt, origptr, updptr, nr_inst)
    mov x1, x27
    add x2, x27, x23
    lsr w3, w28, #2
    blr x4

clean:
    dsb sy                      // the site's words reach the point of coherency
    neg x9, x25
    and x9, x27, x9
    add x10, x27, x28
3:  cmp x9, x10
    b.hs 4f
    dc civac, x9
    add x9, x9, x25
    b 3b
4:  dsb sy
skip:
    add x21, x21, #12
    b next

finish:
    ic ialluis                  // nuke the I-cache everywhere, then sync ourselves
    dsb ish
    isb
    mov x0, x24
    bl altpatch_vunmap
    ldr x0, [x19, #96]          // release the waiters
    mov w1, #1
    stlr w1, [x0]
    mov w0, #0
out:
    ldp x27, x28, [sp, #80]
    ldp x25, x26, [sp, #64]
    ldp x23, x24, [sp, #48]
    ldp x21, x22, [sp, #32]
    ldp x19, x20, [sp, #16]
    ldp x29, x30, [sp], #96
    ret

no_alias:
    mov w0, #8                  // ALTPATCH_PATCHER_UNSUPPORTED
    b out
refuse_length:
    mov w0, #1                  // ALTPATCH_LENGTH_MISMATCH
    mov x1, x27
    bl altpatch_refuse
refuse_callback:
    mov w0, #2                  // ALTPATCH_CALLBACK_LENGTH
    mov x1, x27
    bl altpatch_refuse
