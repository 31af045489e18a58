/*
 * mt_frame.h: framing of the run protocol (see PROTOCOL.md).
 *
 * On the wire a frame is  FLAG  escaped(body)  FLAG  where
 *   body = type(1) seq(1) len(2, little endian) payload(len) crc(2, little endian)
 * and crc is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF) over type..payload.
 * FLAG (0x7E) and ESC (0x7D) inside the body are sent as ESC, byte ^ 0x20.
 * Every FLAG ends the bytes before it; anything between two FLAGs that is not a
 * well-formed frame (boot chatter, noise, a truncated frame) is reported and dropped.
 */
#ifndef MT_FRAME_H_
#define MT_FRAME_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Largest payload a frame may carry, in either direction. The receive buffer is static
 * (MT_MAX_PAYLOAD + 6 bytes), so small boards override it with -DMT_MAX_PAYLOAD=64 (the
 * minimum: a DESCRIBE_TENSOR reply of a 6-d tensor needs 42 bytes plus the name). */
#ifndef MT_MAX_PAYLOAD
#define MT_MAX_PAYLOAD 256
#endif

#if (MT_MAX_PAYLOAD) < 64 || (MT_MAX_PAYLOAD) > 4096
#error "MT_MAX_PAYLOAD must be between 64 and 4096"
#endif

#define MT_FRAME_FLAG 0x7Eu
#define MT_FRAME_ESC 0x7Du
#define MT_FRAME_XOR 0x20u
#define MT_FRAME_HEADER 4u
#define MT_FRAME_CRC 2u
#define MT_FRAME_BODY_MAX ((uint16_t)(MT_FRAME_HEADER + (MT_MAX_PAYLOAD) + MT_FRAME_CRC))

/* Result of feeding one byte to the receiver. */
#define MT_RX_NONE 0       /* nothing complete yet */
#define MT_RX_FRAME 1      /* a valid frame is in rx->body */
#define MT_RX_BAD (-1)     /* bytes between two FLAGs were not a valid frame (CRC, length) */
#define MT_RX_OVERFLOW (-2) /* a frame longer than MT_FRAME_BODY_MAX was dropped */

typedef struct {
  uint8_t body[MT_FRAME_BODY_MAX];
  uint16_t len;       /* bytes of body collected so far */
  uint8_t escaped;    /* last byte was ESC */
  uint8_t overflow;   /* current frame exceeded body[]; drop until next FLAG */
} mt_frame_rx_t;

/* CRC-16/CCITT-FALSE, continued from `crc` (start with 0xFFFF). */
uint16_t mt_crc16(uint16_t crc, const uint8_t *data, size_t n);

void mt_frame_rx_reset(mt_frame_rx_t *rx);

/* Feed one received byte; returns one of MT_RX_*. After MT_RX_FRAME the frame is in
 * rx->body (see the accessors below) until the next call. */
int8_t mt_frame_rx_feed(mt_frame_rx_t *rx, uint8_t byte);

static inline uint8_t mt_frame_type(const mt_frame_rx_t *rx) { return rx->body[0]; }
static inline uint8_t mt_frame_seq(const mt_frame_rx_t *rx) { return rx->body[1]; }
static inline uint16_t mt_frame_len(const mt_frame_rx_t *rx) {
  return (uint16_t)(rx->body[2] | ((uint16_t)rx->body[3] << 8));
}
static inline uint8_t *mt_frame_payload(mt_frame_rx_t *rx) { return rx->body + MT_FRAME_HEADER; }

/* Send one frame whose payload is the concatenation of `a` (na bytes) and `b` (nb bytes)
 * (either may be NULL/0), so a reply header and bulk data need no common buffer.
 * na + nb must be <= MT_MAX_PAYLOAD. Returns 0, or a negative value if the write failed. */
int32_t mt_frame_send(uint8_t type, uint8_t seq, const uint8_t *a, uint16_t na, const uint8_t *b,
                      uint16_t nb);

/* Little-endian helpers (explicit widths: AVR has 16-bit int). */
static inline void mt_put_u16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v & 0xFFu);
  p[1] = (uint8_t)(v >> 8);
}
static inline void mt_put_u32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v & 0xFFu);
  p[1] = (uint8_t)((v >> 8) & 0xFFu);
  p[2] = (uint8_t)((v >> 16) & 0xFFu);
  p[3] = (uint8_t)((v >> 24) & 0xFFu);
}
static inline uint16_t mt_get_u16(const uint8_t *p) { return (uint16_t)(p[0] | ((uint16_t)p[1] << 8)); }
static inline uint32_t mt_get_u32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

#ifdef __cplusplus
}
#endif

#endif /* MT_FRAME_H_ */
