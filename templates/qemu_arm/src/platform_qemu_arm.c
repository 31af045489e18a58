/*
 * platform_qemu_arm.c: the platform.h hooks for the MPS2 boards under QEMU.
 *
 * Wire: UART0 (CMSDK APB UART), no interrupt handler. QEMU connects it to a loopback TCP
 * socket. A read that finds no byte waiting sleeps in WFI until the receive interrupt is
 * pending (cmsdk_uart_wait_rx), so an idle firmware leaves QEMU's CPU thread asleep.
 *
 * Clock: CMSDK APB timer 0, a 32-bit down-counter on the 25 MHz system clock, free running
 * with no interrupt. QEMU runs with `-icount shift=S`, so guest virtual time is exactly
 * (instructions executed) * 2^S ns and the timer moves 2^S / 40 counts per instruction
 * (3.2 for S = 7). Because that is more than one count per instruction, the instruction
 * count since the timer started is the timer count divided by 3.2, rounded: QEMU's timer
 * is within one count of the exact value, which is less than half an instruction. The
 * ticks reported are therefore guest instructions. `mt_platform_tick_hz` reports the board's
 * system clock (25 MHz on MPS2), i.e. time is given as if every instruction took one cycle
 * of the real board: a lower bound on its time, and a figure that means something to a
 * firmware engineer (QEMU's own virtual clock, 1e9 / 2^S instructions per second, is an
 * artefact of the shift). Two runs of the same code report the same figure however long the host
 * took to send the input, because the count never depends on where in a timer period a
 * measurement starts. That holds while the core runs: while it sleeps in WFI, QEMU's virtual
 * clock follows the host's, by any number of nanoseconds, and the timer's phase against the
 * instruction grid changes. So after every sleep the count is re-based (`rebase_after_sleep`):
 * ticks go on from the figure of that moment, computed from the counts since, and a run
 * (which never sleeps) again gets the same figure every time. SysTick is not used: its 24 bits would wrap every 5.2 M instructions
 * at this rate and an overflow interrupt would add a varying handful of instructions
 * to the measurement.
 */
#include <stdint.h>

#include "cmsdk_uart.h"
#include "platform.h"
#include "qemu_arm_board.h"

#define TIMER_REG(off) (*(volatile uint32_t *)((uintptr_t)MT_TIMER0_BASE + (off)))
#define TIMER_CTRL 0x00u
#define TIMER_VALUE 0x04u
#define TIMER_RELOAD 0x08u
#define TIMER_INTCLEAR 0x0Cu
#define TIMER_CTRL_ENABLE (1u << 0)

/* Timer counts per instruction = 2^S ns / (1e9 / sysclk) ns = 2^S * sysclk / 1e9.
 * Instructions = counts * 1e9 / (2^S * sysclk); with sysclk = 25 MHz that is
 * counts * 40 / 2^S. Kept as a fraction NUM / DEN. */
#define MT_NS_PER_TIMER_COUNT (1000000000u / MT_SYSCLK_HZ)
#define MT_TICK_NUM ((uint64_t)MT_NS_PER_TIMER_COUNT)
#define MT_TICK_DEN ((uint64_t)1u << MT_ICOUNT_SHIFT)

static uint32_t g_last_count; /* timer counts elapsed at the previous reading (mod 2^32) */
static uint64_t g_wraps;      /* how many times that 32-bit count has wrapped */
static uint64_t g_base_counts; /* timer counts at the last re-base (after a sleep) */
static uint64_t g_base_ticks;  /* ticks reported at that moment */

/* Timer counts since the timer started, 64-bit. */
static uint64_t timer_counts(void) {
  /* The timer counts down from 0xFFFFFFFF. */
  uint32_t count = 0xFFFFFFFFu - TIMER_REG(TIMER_VALUE);
  if (count < g_last_count) {
    ++g_wraps; /* at most one wrap between readings: every 1.3 G instructions for S = 7 */
  }
  g_last_count = count;
  return (g_wraps << 32) | count;
}

/* Instructions in `counts` timer counts, rounded to the nearest; see the top of the file. */
static uint64_t counts_to_ticks(uint64_t counts) {
  return (counts * MT_TICK_NUM + MT_TICK_DEN / 2u) / MT_TICK_DEN;
}

/* After WFI: go on counting from here, on the timer's new phase (see the top of the file). */
static void rebase_after_sleep(void) {
  uint64_t now = timer_counts();
  g_base_ticks += counts_to_ticks(now - g_base_counts);
  g_base_counts = now;
}

void mt_platform_init(void) {
  cmsdk_uart_init((uintptr_t)MT_UART0_BASE, MT_SYSCLK_HZ, MT_UART_BAUD);
  TIMER_REG(TIMER_CTRL) = 0u;
  TIMER_REG(TIMER_INTCLEAR) = 1u;
  TIMER_REG(TIMER_RELOAD) = 0xFFFFFFFFu;
  TIMER_REG(TIMER_VALUE) = 0xFFFFFFFFu;
  TIMER_REG(TIMER_CTRL) = TIMER_CTRL_ENABLE;
  g_last_count = 0u;
  g_wraps = 0u;
  g_base_counts = 0u;
  g_base_ticks = 0u;
}

int32_t mt_platform_read(uint8_t *buf, size_t n) {
  const uintptr_t uart = (uintptr_t)MT_UART0_BASE;
  size_t got = 0u;
  if (n == 0u) {
    return 0;
  }
  if (cmsdk_uart_wait_rx(uart, MT_UART0_RX_IRQ)) {
    rebase_after_sleep();
  }
  buf[got++] = cmsdk_uart_getc(uart);
  while (got < n && cmsdk_uart_rx_ready(uart)) {
    buf[got++] = cmsdk_uart_getc(uart);
  }
  return (int32_t)got;
}

int32_t mt_platform_write(const uint8_t *buf, size_t n) {
  const uintptr_t uart = (uintptr_t)MT_UART0_BASE;
  size_t i;
  for (i = 0u; i < n; ++i) {
    cmsdk_uart_putc(uart, buf[i]);
  }
  return (int32_t)n;
}

uint32_t mt_platform_ticks(void) {
  return (uint32_t)(g_base_ticks + counts_to_ticks(timer_counts() - g_base_counts));
}

/* One tick per instruction, at one instruction per cycle of the board's clock. */
uint32_t mt_platform_tick_hz(void) { return (uint32_t)MT_SYSCLK_HZ; }

void mt_platform_abort(int32_t code) { mt_board_halt("abort", 0, code); }
