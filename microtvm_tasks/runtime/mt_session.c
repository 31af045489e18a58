/*
 * mt_session.c: the device side of the run protocol (PROTOCOL.md), host_driven projects.
 *
 * One static receive buffer (mt_frame_rx_t, MT_MAX_PAYLOAD + 6 bytes) is used for the
 * request and then reused to build the reply; bulk output data is sent straight from the
 * tensor buffer. Every field is length-checked against the received payload before use,
 * and every offset against the tensor's size, so no input can make us read or write
 * outside a buffer.
 */
#include <string.h>

#include "mt_frame.h"
#include "mt_model.h"
#include "mt_protocol.h"
#include "mt_runtime.h"
#include "mt_text.h"
#include "platform.h"

/* Error messages are MT_PSTR literals: in flash on AVR, where literals would otherwise be
 * copied into the Uno's 2 KiB of RAM. -DMT_TERSE_ERRORS=1 drops them (codes only, which
 * PROTOCOL.md allows: the host names every code) to save that flash too. */
#if !defined(MT_TERSE_ERRORS)
#define MT_TERSE_ERRORS 0
#endif
#if MT_TERSE_ERRORS
#define MT_MSG(s) MT_PSTR("")
#else
#define MT_MSG(s) MT_PSTR(s)
#endif

static mt_frame_rx_t g_rx;
static uint8_t g_hello_ok;

/* msg is an MT_MSG literal (program memory on AVR); detail, if any, is in RAM. */
static int32_t send_error(uint8_t seq, uint16_t code, const char *msg, const char *detail) {
  /* Built on the stack: the message is short and g_rx.body may still hold the request. */
  uint8_t buf[2 + 48 + 12];
  uint16_t n = 2;
  char c;
  mt_put_u16(buf, code);
  while ((c = MT_PSTR_BYTE(msg)) != '\0' && n < 2u + 48u) {
    buf[n++] = (uint8_t)c;
    ++msg;
  }
  if (detail != NULL) {
    while (*detail != '\0' && n < (uint16_t)sizeof(buf)) {
      buf[n++] = (uint8_t)*detail++;
    }
  }
  return mt_frame_send(MT_MSG_ERROR, seq, buf, n, NULL, 0);
}

static int32_t do_hello(uint8_t seq, const uint8_t *p, uint16_t len) {
  uint8_t out[6];
  if (len < 1u) {
    return send_error(seq, MT_ERR_BAD_ARGS, MT_MSG("HELLO needs the host's protocol version"), NULL);
  }
  g_hello_ok = (uint8_t)(p[0] == MT_PROTOCOL_VERSION);
  out[0] = 'M';
  out[1] = 'T';
  out[2] = (uint8_t)MT_PROTOCOL_VERSION;
  out[3] = 0; /* flags, reserved */
  mt_put_u16(out + 4, (uint16_t)MT_MAX_PAYLOAD);
  /* The reply always carries our version, so the host can say what it found. */
  return mt_frame_send((uint8_t)(MT_CMD_HELLO | MT_REPLY_BIT), seq, out, 6, NULL, 0);
}

/* Copy a name, truncated so that `used + 1 + name` fits the payload. Returns bytes added. */
static uint16_t put_name(uint8_t *out, uint16_t used, const char *name) {
  uint16_t room = 0;
  uint16_t n = 0;
  if ((uint32_t)used + 1u < (uint32_t)MT_MAX_PAYLOAD) {
    room = (uint16_t)(MT_MAX_PAYLOAD - used - 1u);
  }
  if (room > 255u) {
    room = 255u;
  }
  if (name != NULL) {
    while (name[n] != '\0' && n < room) {
      out[1u + n] = (uint8_t)name[n];
      ++n;
    }
  }
  out[0] = (uint8_t)n;
  return (uint16_t)(1u + n);
}

static int32_t do_describe(uint8_t seq, uint16_t len) {
  uint8_t *out = mt_frame_payload(&g_rx);
  uint16_t n;
  if (len != 0u) {
    return send_error(seq, MT_ERR_BAD_ARGS, MT_MSG("DESCRIBE takes no arguments"), NULL);
  }
  mt_put_u32(out, mt_model.arena_bytes);
  mt_put_u16(out + 4, (uint16_t)mt_model.num_inputs);
  mt_put_u16(out + 6, (uint16_t)mt_model.num_outputs);
  n = 8;
  n = (uint16_t)(n + put_name(out + n, n, mt_model.name));
  return mt_frame_send((uint8_t)(MT_CMD_DESCRIBE | MT_REPLY_BIT), seq, out, n, NULL, 0);
}

static const mt_tensor_t *find_tensor(uint8_t kind, uint16_t index) {
  if (kind == 0u && index < mt_model.num_inputs) {
    return &mt_model.inputs[index];
  }
  if (kind == 1u && index < mt_model.num_outputs) {
    return &mt_model.outputs[index];
  }
  return NULL;
}

static int32_t do_describe_tensor(uint8_t seq, const uint8_t *p, uint16_t len) {
  uint8_t kind;
  uint16_t index;
  const mt_tensor_t *t;
  uint8_t *out;
  uint16_t n;
  uint8_t d;
  uint8_t ndim;
  if (len != 3u) {
    return send_error(seq, MT_ERR_BAD_ARGS, MT_MSG("DESCRIBE_TENSOR needs kind(u8) index(u16)"), NULL);
  }
  kind = p[0];
  index = mt_get_u16(p + 1);
  t = find_tensor(kind, index);
  if (t == NULL) {
    return send_error(seq, MT_ERR_INDEX, MT_MSG("no such tensor"), NULL);
  }
  out = mt_frame_payload(&g_rx); /* the request was fully read above */
  ndim = t->ndim > MT_MAX_DIMS ? (uint8_t)MT_MAX_DIMS : t->ndim;
  out[0] = kind;
  mt_put_u16(out + 1, index);
  out[3] = t->dtype;
  out[4] = ndim;
  n = 5;
  for (d = 0; d < ndim; ++d) {
    mt_put_u32(out + n, (uint32_t)t->shape[d]);
    n = (uint16_t)(n + 4u);
  }
  mt_put_u32(out + n, t->scale_bits);
  mt_put_u32(out + n + 4, (uint32_t)t->zero_point);
  mt_put_u32(out + n + 8, t->nbytes);
  n = (uint16_t)(n + 12u);
  n = (uint16_t)(n + put_name(out + n, n, t->name));
  return mt_frame_send((uint8_t)(MT_CMD_DESCRIBE_TENSOR | MT_REPLY_BIT), seq, out, n, NULL, 0);
}

static int32_t do_set_input(uint8_t seq, const uint8_t *p, uint16_t len) {
  uint16_t index;
  uint32_t offset;
  uint16_t count;
  const mt_tensor_t *t;
  uint8_t out[8];
  if (len < 6u) {
    return send_error(seq, MT_ERR_BAD_ARGS, MT_MSG("SET_INPUT needs index(u16) offset(u32) data"), NULL);
  }
  index = mt_get_u16(p);
  offset = mt_get_u32(p + 2);
  count = (uint16_t)(len - 6u);
  t = find_tensor(0, index);
  if (t == NULL) {
    return send_error(seq, MT_ERR_INDEX, MT_MSG("no such input"), NULL);
  }
  if (offset > t->nbytes || (uint32_t)count > t->nbytes - offset) {
    return send_error(seq, MT_ERR_RANGE, MT_MSG("SET_INPUT past the end of input"), NULL);
  }
  if (count > 0u) {
    memcpy(t->data + offset, p + 6, count);
  }
  mt_put_u16(out, index);
  mt_put_u32(out + 2, offset);
  mt_put_u16(out + 6, count);
  return mt_frame_send((uint8_t)(MT_CMD_SET_INPUT | MT_REPLY_BIT), seq, out, 8, NULL, 0);
}

static int32_t do_run(uint8_t seq, const uint8_t *p, uint16_t len) {
  uint32_t n;
  uint32_t i;
  uint32_t lo = 0;
  uint32_t hi = 0;
  uint8_t out[16];
  char num[12];
  if (len != 4u) {
    return send_error(seq, MT_ERR_BAD_ARGS, MT_MSG("RUN needs count(u32)"), NULL);
  }
  n = mt_get_u32(p);
  if (n == 0u) {
    return send_error(seq, MT_ERR_BAD_ARGS, MT_MSG("RUN count must be >= 1"), NULL);
  }
  for (i = 0; i < n; ++i) {
    uint32_t t0 = mt_platform_ticks();
    int32_t status = mt_model.run();
    uint32_t dt = mt_platform_ticks() - t0; /* unsigned: correct across one wrap */
    if (status != 0) {
      mt_fmt_i32(num, status);
      return send_error(seq, MT_ERR_RUN, MT_MSG("model run() returned "), num);
    }
    /* 64-bit sum kept as two halves so a long RUN n never wraps */
    lo += dt;
    if (lo < dt) {
      ++hi;
    }
  }
  mt_put_u32(out, n);
  mt_put_u32(out + 4, lo);
  mt_put_u32(out + 8, hi);
  mt_put_u32(out + 12, mt_platform_tick_hz());
  return mt_frame_send((uint8_t)(MT_CMD_RUN | MT_REPLY_BIT), seq, out, 16, NULL, 0);
}

static int32_t do_get_output(uint8_t seq, const uint8_t *p, uint16_t len) {
  uint16_t index;
  uint32_t offset;
  uint16_t count;
  const mt_tensor_t *t;
  if (len != 8u) {
    return send_error(seq, MT_ERR_BAD_ARGS, MT_MSG("GET_OUTPUT needs index(u16) offset(u32) length(u16)"), NULL);
  }
  index = mt_get_u16(p);
  offset = mt_get_u32(p + 2);
  count = mt_get_u16(p + 6);
  t = find_tensor(1, index);
  if (t == NULL) {
    return send_error(seq, MT_ERR_INDEX, MT_MSG("no such output"), NULL);
  }
  if (count > (uint16_t)MT_MAX_PAYLOAD) {
    return send_error(seq, MT_ERR_RANGE, MT_MSG("GET_OUTPUT length over the max payload"), NULL);
  }
  if (offset > t->nbytes || (uint32_t)count > t->nbytes - offset) {
    return send_error(seq, MT_ERR_RANGE, MT_MSG("GET_OUTPUT past the end of output"), NULL);
  }
  return mt_frame_send((uint8_t)(MT_CMD_GET_OUTPUT | MT_REPLY_BIT), seq, t->data + offset, count, NULL, 0);
}

/* at most this many operators per PROFILE reply, so the reply buffer stays small on the stack */
#define MT_PROFILE_CHUNK 16u

static int32_t do_profile(uint8_t seq, const uint8_t *p, uint16_t len) {
  uint8_t out[6u + 4u * MT_PROFILE_CHUNK];
  uint16_t first;
  uint16_t count;
  uint16_t i;
  const uint16_t num = (uint16_t)(mt_model.num_ops > 0xFFFFu ? 0xFFFFu : mt_model.num_ops);
  if (len != 2u) {
    return send_error(seq, MT_ERR_BAD_ARGS, MT_MSG("PROFILE needs first(u16)"), NULL);
  }
  first = mt_get_u16(p);
  if (first > num) {
    return send_error(seq, MT_ERR_RANGE, MT_MSG("PROFILE first past the last operator"), NULL);
  }
  count = (uint16_t)(num - first);
  if (count > (uint16_t)((MT_MAX_PAYLOAD - 6u) / 4u)) {
    count = (uint16_t)((MT_MAX_PAYLOAD - 6u) / 4u);
  }
  if (count > MT_PROFILE_CHUNK) {
    count = MT_PROFILE_CHUNK;
  }
  mt_put_u16(out, num);
  mt_put_u16(out + 2, first);
  mt_put_u16(out + 4, count);
  for (i = 0; i < count; ++i) {
    mt_put_u32(out + 6u + 4u * i, mt_model.op_ticks[first + i]);
  }
  return mt_frame_send((uint8_t)(MT_CMD_PROFILE | MT_REPLY_BIT), seq, out, (uint16_t)(6u + 4u * count), NULL,
                       0);
}

static int32_t dispatch(void) {
  uint8_t type = mt_frame_type(&g_rx);
  uint8_t seq = mt_frame_seq(&g_rx);
  uint16_t len = mt_frame_len(&g_rx); /* checked against the bytes received by mt_frame.c */
  const uint8_t *p = mt_frame_payload(&g_rx);
  if (type == MT_CMD_HELLO) {
    return do_hello(seq, p, len);
  }
  if (!g_hello_ok) {
    return send_error(seq, MT_ERR_NO_HELLO, MT_MSG("send HELLO with protocol version 1 first"), NULL);
  }
  switch (type) {
    case MT_CMD_DESCRIBE:
      return do_describe(seq, len);
    case MT_CMD_DESCRIBE_TENSOR:
      return do_describe_tensor(seq, p, len);
    case MT_CMD_SET_INPUT:
      return do_set_input(seq, p, len);
    case MT_CMD_RUN:
      return do_run(seq, p, len);
    case MT_CMD_GET_OUTPUT:
      return do_get_output(seq, p, len);
    case MT_CMD_PROFILE:
      return do_profile(seq, p, len);
    default:
      return send_error(seq, MT_ERR_UNKNOWN_CMD, MT_MSG("unknown command"), NULL);
  }
}

int32_t mt_session_main(void) {
  uint8_t in[32];
  mt_frame_rx_reset(&g_rx);
  g_hello_ok = 0;
  for (;;) {
    int32_t got = mt_platform_read(in, sizeof(in));
    int32_t i;
    if (got < 0) {
      return 0; /* the host closed the transport */
    }
    if (got > (int32_t)sizeof(in)) {
      got = (int32_t)sizeof(in); /* a misbehaving platform hook must not make us overrun */
    }
    for (i = 0; i < got; ++i) {
      int8_t r = mt_frame_rx_feed(&g_rx, in[i]);
      int32_t status = 0;
      if (r == MT_RX_FRAME) {
        status = dispatch();
      } else if (r == MT_RX_BAD) {
        status = send_error(0, MT_ERR_FRAME, MT_MSG("bad frame (CRC or length)"), NULL);
      } else if (r == MT_RX_OVERFLOW) {
        status = send_error(0, MT_ERR_TOO_LONG, MT_MSG("frame longer than the max payload"), NULL);
      }
      if (status < 0) {
        return -1; /* cannot write: the transport is gone */
      }
    }
  }
}
