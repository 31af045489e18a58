/* mt_text.c: see mt_text.h. */
#include "mt_text.h"

uint8_t mt_fmt_u32(char *buf, uint32_t v) {
  char tmp[10];
  uint8_t n = 0;
  uint8_t i;
  do {
    tmp[n] = (char)('0' + (char)(v % 10u));
    n = (uint8_t)(n + 1u);
    v /= 10u;
  } while (v != 0u);
  for (i = 0; i < n; ++i) {
    buf[i] = tmp[n - 1u - i];
  }
  buf[n] = '\0';
  return n;
}

uint8_t mt_fmt_i32(char *buf, int32_t v) {
  if (v < 0) {
    buf[0] = '-';
    /* negate in unsigned arithmetic so INT32_MIN is fine */
    return (uint8_t)(1u + mt_fmt_u32(buf + 1, (uint32_t)0u - (uint32_t)v));
  }
  return mt_fmt_u32(buf, (uint32_t)v);
}

/* Write `v` (< 10^width) zero-padded to `width` digits. */
static uint8_t fmt_padded(char *buf, uint32_t v, uint8_t width) {
  uint8_t i;
  for (i = width; i > 0u; --i) {
    buf[i - 1u] = (char)('0' + (char)(v % 10u));
    v /= 10u;
  }
  buf[width] = '\0';
  return width;
}

uint8_t mt_fmt_f32(char *buf, float v) {
  uint8_t n = 0;
  float a;
  if (v != v) {
    buf[0] = 'n'; buf[1] = 'a'; buf[2] = 'n'; buf[3] = '\0';
    return 3;
  }
  if (v < 0.0f) {
    buf[n++] = '-';
    a = -v;
  } else {
    a = v;
  }
  if (a > 3.4028235e38f) {
    buf[n++] = 'i'; buf[n++] = 'n'; buf[n++] = 'f'; buf[n] = '\0';
    return n;
  }
  if (a == 0.0f || (a >= 1e-3f && a < 1e6f)) {
    uint32_t ip = (uint32_t)a;
    uint32_t frac = (uint32_t)((a - (float)ip) * 1e6f + 0.5f);
    if (frac >= 1000000u) {
      ip += 1u;
      frac -= 1000000u;
    }
    n = (uint8_t)(n + mt_fmt_u32(buf + n, ip));
    buf[n++] = '.';
    n = (uint8_t)(n + fmt_padded(buf + n, frac, 6));
    return n;
  } else {
    int16_t e = 0;
    uint32_t digits;
    while (a >= 10.0f) { a /= 10.0f; ++e; }
    while (a < 1.0f) { a *= 10.0f; --e; }
    digits = (uint32_t)(a * 1e6f + 0.5f);
    if (digits >= 10000000u) {
      digits /= 10u;
      ++e;
    }
    buf[n++] = (char)('0' + (char)(digits / 1000000u));
    buf[n++] = '.';
    n = (uint8_t)(n + fmt_padded(buf + n, digits % 1000000u, 6));
    buf[n++] = 'e';
    if (e < 0) {
      buf[n++] = '-';
      e = (int16_t)-e;
    } else {
      buf[n++] = '+';
    }
    n = (uint8_t)(n + fmt_padded(buf + n, (uint32_t)e, 2));
    return n;
  }
}
