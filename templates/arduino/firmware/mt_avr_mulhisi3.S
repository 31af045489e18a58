/*
 * mt_avr_mulhisi3.S: libgcc's 16 x 16 -> 32-bit widening multiplies for AVR, without the
 * "skip over ret" instruction pair.
 *
 * avr-gcc calls __mulhisi3 / __usmulhisi3 for every (int32_t)int16 * (int32_t)int16, i.e.
 * every int8 x int8 multiply-accumulate of the model's kernels. libgcc ends them with
 * `sbrs r27, 7` followed by `ret`; qemu-system-avr (7.2 and others) mistranslates a skip
 * instruction whose skipped instruction is a return, and then loops forever or returns a
 * wrong product. These definitions compute the same values with a branch instead, so the
 * emulated Uno and a real one run identical, correct code. They take precedence over the
 * libgcc archive members because this object is linked before libgcc.
 *
 * libgcc's private calling convention (kept exactly): A = r27:r26, B = r19:r18,
 * result C = r25:r24:r23:r22; only the result registers, r0 (__tmp_reg__) and SREG change.
 * __umulhisi3 (C = (unsigned)A * (unsigned)B) still comes from libgcc.
 */
#if defined(__AVR__)

#if defined(__AVR_HAVE_JMP_CALL__)
#define MT_CALL call
#define MT_JMP jmp
#else
#define MT_CALL rcall
#define MT_JMP rjmp
#endif

    .text

    /* C = (int32_t)(int16_t)A * (int32_t)(int16_t)B */
    .global __mulhisi3
    .type __mulhisi3, @function
__mulhisi3:
    MT_CALL __umulhisi3
    tst     r19             /* B negative: the unsigned product counted B + 65536 */
    brpl    1f
    sub     r24, r26
    sbc     r25, r27
1:
    MT_JMP  __usmulhisi3_tail
    .size __mulhisi3, . - __mulhisi3

    /* C = (int32_t)(int16_t)A * (uint32_t)(uint16_t)B */
    .global __usmulhisi3
    .type __usmulhisi3, @function
__usmulhisi3:
    MT_CALL __umulhisi3
    /* falls through */
    .size __usmulhisi3, . - __usmulhisi3

    .global __usmulhisi3_tail
    .type __usmulhisi3_tail, @function
__usmulhisi3_tail:
    tst     r27             /* A negative: subtract B << 16 */
    brpl    2f
    sub     r24, r18
    sbc     r25, r19
2:
    ret
    .size __usmulhisi3_tail, . - __usmulhisi3_tail

#endif /* __AVR__ */
