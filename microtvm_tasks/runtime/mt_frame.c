/*
 * mt_frame.c: byte-stuffed, CRC-checked frames (see mt_frame.h and PROTOCOL.md).
 *
 * The receiver is a byte-at-a-time state machine over one static buffer: it never
 * writes past body[MT_FRAME_BODY_MAX - 1] whatever arrives, and it validates the
 * declared length against the bytes actually received before anyone reads the payload.
 */
#include "mt_frame.h"

#include "platform.h"

uint16_t mt_crc16(uint16_t crc, const uint8_t *data, size_t n) {
  size_t i;
  uint8_t bit;
  for (i = 0; i < n; ++i) {
    crc = (uint16_t)(crc ^ ((uint16_t)data[i] << 8));
    for (bit = 0; bit < 8u; ++bit) {
      if (crc & 0x8000u) {
        crc = (uint16_t)((crc << 1) ^ 0x1021u);
      } else {
        crc = (uint16_t)(crc << 1);
      }
    }
  }
  return crc;
}

void mt_frame_rx_reset(mt_frame_rx_t *rx) {
  rx->len = 0;
  rx->escaped = 0;
  rx->overflow = 0;
}

static int8_t finish_frame(mt_frame_rx_t *rx) {
  uint16_t len = rx->len;
  uint8_t overflow = rx->overflow;
  uint16_t declared;
  uint16_t crc;
  uint8_t escaped = rx->escaped;
  mt_frame_rx_reset(rx);
  if (overflow) {
    return MT_RX_OVERFLOW;
  }
  if (len == 0u && !escaped) {
    return MT_RX_NONE; /* back-to-back FLAGs: idle line */
  }
  if (escaped || len < (uint16_t)(MT_FRAME_HEADER + MT_FRAME_CRC)) {
    return MT_RX_BAD;
  }
  declared = mt_get_u16(rx->body + 2);
  if (declared != (uint16_t)(len - MT_FRAME_HEADER - MT_FRAME_CRC)) {
    return MT_RX_BAD;
  }
  crc = mt_crc16(0xFFFFu, rx->body, (size_t)(len - MT_FRAME_CRC));
  if (crc != mt_get_u16(rx->body + len - MT_FRAME_CRC)) {
    return MT_RX_BAD;
  }
  return MT_RX_FRAME;
}

int8_t mt_frame_rx_feed(mt_frame_rx_t *rx, uint8_t byte) {
  if (byte == MT_FRAME_FLAG) {
    return finish_frame(rx);
  }
  if (rx->overflow) {
    return MT_RX_NONE;
  }
  if (byte == MT_FRAME_ESC && !rx->escaped) {
    rx->escaped = 1;
    return MT_RX_NONE;
  }
  if (rx->escaped) {
    byte = (uint8_t)(byte ^ MT_FRAME_XOR);
    rx->escaped = 0;
  }
  if (rx->len >= MT_FRAME_BODY_MAX) {
    rx->overflow = 1;
    return MT_RX_NONE;
  }
  rx->body[rx->len] = byte;
  rx->len = (uint16_t)(rx->len + 1u);
  return MT_RX_NONE;
}

/* Escaped bytes are staged here so the platform sees a few writes per frame, not one
 * per byte (a syscall each on the host). */
#define MT_TX_STAGE 32u

typedef struct {
  uint8_t buf[MT_TX_STAGE];
  uint8_t n;
  int32_t status;
} tx_state_t;

static void tx_flush(tx_state_t *tx) {
  if (tx->n > 0u && tx->status == 0) {
    if (mt_platform_write(tx->buf, tx->n) < 0) {
      tx->status = -1;
    }
  }
  tx->n = 0;
}

static void tx_raw(tx_state_t *tx, uint8_t byte) {
  if (tx->n >= MT_TX_STAGE) {
    tx_flush(tx);
  }
  tx->buf[tx->n] = byte;
  tx->n = (uint8_t)(tx->n + 1u);
}

static void tx_bytes(tx_state_t *tx, const uint8_t *p, uint16_t n) {
  uint16_t i;
  for (i = 0; i < n; ++i) {
    uint8_t b = p[i];
    if (b == MT_FRAME_FLAG || b == MT_FRAME_ESC) {
      tx_raw(tx, MT_FRAME_ESC);
      tx_raw(tx, (uint8_t)(b ^ MT_FRAME_XOR));
    } else {
      tx_raw(tx, b);
    }
  }
}

int32_t mt_frame_send(uint8_t type, uint8_t seq, const uint8_t *a, uint16_t na, const uint8_t *b,
                      uint16_t nb) {
  tx_state_t tx;
  uint8_t header[MT_FRAME_HEADER];
  uint8_t trailer[MT_FRAME_CRC];
  uint16_t crc;
  uint16_t total;
  if (a == NULL) {
    na = 0;
  }
  if (b == NULL) {
    nb = 0;
  }
  if (na > (uint16_t)MT_MAX_PAYLOAD || nb > (uint16_t)(MT_MAX_PAYLOAD - na)) {
    return -2;
  }
  total = (uint16_t)(na + nb);
  tx.n = 0;
  tx.status = 0;
  header[0] = type;
  header[1] = seq;
  mt_put_u16(header + 2, total);
  crc = mt_crc16(0xFFFFu, header, MT_FRAME_HEADER);
  if (na) {
    crc = mt_crc16(crc, a, na);
  }
  if (nb) {
    crc = mt_crc16(crc, b, nb);
  }
  mt_put_u16(trailer, crc);
  tx_raw(&tx, MT_FRAME_FLAG);
  tx_bytes(&tx, header, MT_FRAME_HEADER);
  if (na) {
    tx_bytes(&tx, a, na);
  }
  if (nb) {
    tx_bytes(&tx, b, nb);
  }
  tx_bytes(&tx, trailer, MT_FRAME_CRC);
  tx_raw(&tx, MT_FRAME_FLAG);
  tx_flush(&tx);
  return tx.status;
}
