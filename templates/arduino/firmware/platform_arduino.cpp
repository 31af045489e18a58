/*
 * platform_arduino.cpp: the runtime's platform hooks (platform.h) on an Arduino core.
 *
 * The wire is `Serial` (the board's USB serial port, or its UART0 under qemu-system-avr).
 * The clock is micros() on every core except AVR, where Timer1 counts F_CPU/8 and an
 * overflow interrupt extends it to 32 bits: micros() on AVR only has 4 us resolution,
 * and qemu-system-avr does not emulate Timer0, which micros() depends on.
 * Written for microtvm-tasks; C++ only because Serial is a C++ object.
 */
#include <Arduino.h>

#include "platform.h"

#if defined(__AVR__)
#include <avr/interrupt.h>
#include <avr/io.h>
#endif

#ifndef MT_SERIAL_BAUD
#define MT_SERIAL_BAUD 115200
#endif

#if defined(__AVR__)
static volatile uint16_t mt_timer1_overflows;

ISR(TIMER1_OVF_vect) { mt_timer1_overflows = (uint16_t)(mt_timer1_overflows + 1u); }

static uint16_t mt_timer1_overflows_now(void) {
  uint8_t sreg = SREG;
  uint16_t v;
  cli();
  v = mt_timer1_overflows;
  SREG = sreg;
  return v;
}

static void mt_timer1_start(void) {
  uint8_t sreg = SREG;
  cli();
  TCCR1A = 0;             /* normal mode: count 0..0xFFFF and wrap */
  TCCR1B = _BV(CS11);     /* clk/8 */
  TCNT1 = 0;
  TIMSK1 = _BV(TOIE1);
  mt_timer1_overflows = 0;
  SREG = sreg;
}
#endif

extern "C" {

void mt_platform_init(void) {
  Serial.begin(MT_SERIAL_BAUD);
  /* Boards with native USB serial (Leonardo, Nano 33 BLE, Teensy, ...) have no port until
   * the host opens it; on UART boards `Serial` is always true. */
  while (!Serial) {
  }
#if defined(__AVR__)
  mt_timer1_start();
#endif
}

int32_t mt_platform_read(uint8_t *buf, size_t n) {
  size_t got = 0;
  if (n == 0u) {
    return 0;
  }
  while (Serial.available() <= 0) {
  }
  while (got < n && Serial.available() > 0) {
    int c = Serial.read();
    if (c < 0) {
      break;
    }
    buf[got++] = (uint8_t)c;
  }
  return (int32_t)got;
}

int32_t mt_platform_write(const uint8_t *buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    size_t w = Serial.write(buf + done, n - done);
    if (w == 0u) {
      return -1;
    }
    done += w;
  }
  return (int32_t)n;
}

uint32_t mt_platform_ticks(void) {
#if defined(__AVR__)
  /* Overflow count, counter, overflow count again: equal counts mean no overflow was
   * counted in between, so the pair is consistent. The TOV1 flag is not used: the
   * hardware clears it by writing 1, qemu-system-avr by writing 0, and a pending
   * flag cannot be read the same way on both. (Called with interrupts enabled: the
   * overflow interrupt runs within a few cycles of the wrap.) */
  uint16_t hi;
  uint16_t lo;
  do {
    hi = mt_timer1_overflows_now();
    lo = TCNT1;
  } while (hi != mt_timer1_overflows_now());
  return ((uint32_t)hi << 16) | lo;
#else
  return (uint32_t)micros();
#endif
}

uint32_t mt_platform_tick_hz(void) {
#if defined(__AVR__)
  return (uint32_t)(F_CPU / 8UL);
#else
  return 1000000UL;
#endif
}

void mt_platform_abort(int32_t code) {
  (void)code;
  Serial.flush();
  noInterrupts();
  for (;;) {
  }
}

}  /* extern "C" */
