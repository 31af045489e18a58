/*
 * platform.h: the hooks a template implements so the runtime can run on its board.
 *
 * The runtime (mt_session.c and friends) owns the run protocol; the template owns
 * the wire and the clock. Every template (host, qemu_arm, zephyr, arduino) provides
 * exactly these functions in one C file of its own (e.g. src/platform_<name>.c).
 * C99, no malloc.
 */
#ifndef MT_PLATFORM_H_
#define MT_PLATFORM_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bring up the UART (or stdio) and the tick source. Called once, first. */
void mt_platform_init(void);

/* Block until at least one byte is available, then read up to `n` bytes into `buf`.
 * Returns the number of bytes read (>= 1), or a negative value when the transport
 * is gone for good (the session loop then exits). */
int32_t mt_platform_read(uint8_t *buf, size_t n);

/* Write all `n` bytes of `buf`. Returns `n`, or a negative value on failure. */
int32_t mt_platform_write(const uint8_t *buf, size_t n);

/* A free-running tick counter and its frequency in Hz. Ticks may wrap at 2^32;
 * the runtime measures differences with unsigned arithmetic. */
uint32_t mt_platform_ticks(void);
uint32_t mt_platform_tick_hz(void);

/* Called when the runtime cannot go on (assertion, corrupt state). Must not return. */
void mt_platform_abort(int32_t code);

#ifdef __cplusplus
}
#endif

#endif /* MT_PLATFORM_H_ */
