/*
 * mt_text.h: number formatting without printf (newlib's and avr-libc's printf are large,
 * and the float variant is often left out of small builds).
 */
#ifndef MT_TEXT_H_
#define MT_TEXT_H_

#include <stdint.h>

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
