/*
 * mt_text.h: number formatting without printf (newlib's and avr-libc's printf are large,
 * and the float variant is often left out of small builds).
 */
#ifndef MT_TEXT_H_
#define MT_TEXT_H_

#include <stdint.h>

/* String literals that stay in program memory where that is not ordinary memory.
 *
 * On AVR, .rodata is copied into RAM at start-up (the Uno has 2 KiB of it), so the
 * runtime's fixed texts (error messages, the standalone demo's labels) are written
 * MT_PSTR("...") and read one byte at a time with MT_PSTR_BYTE(p): PROGMEM and
 * pgm_read_byte there, a plain literal and a plain read everywhere else. A pointer from
 * MT_PSTR must only be read with MT_PSTR_BYTE (on AVR it is a flash address). */
#if defined(__AVR__)
#include <avr/pgmspace.h>
#define MT_PSTR(s) PSTR(s)
#define MT_PSTR_BYTE(p) ((char)pgm_read_byte(p))
#else
#define MT_PSTR(s) (s)
#define MT_PSTR_BYTE(p) (*(p))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Each writes a NUL-terminated decimal into buf and returns its length (without NUL).
 * buf needs 12 bytes for the integer forms and 20 for the float form. */
uint8_t mt_fmt_u32(char *buf, uint32_t v);
uint8_t mt_fmt_i32(char *buf, int32_t v);
/* Six digits after the point for 1e-3 <= |v| < 1e6, otherwise d.dddddde+XX. */
uint8_t mt_fmt_f32(char *buf, float v);

#ifdef __cplusplus
}
#endif

#endif /* MT_TEXT_H_ */
