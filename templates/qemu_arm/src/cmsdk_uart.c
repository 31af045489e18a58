/*
 * cmsdk_uart.c: the CMSDK APB UART register map and a polled driver.
 *
 * Registers (offsets from the UART's base, 32-bit wide):
 *   0x00 DATA      bits 7:0, read = received byte, write = byte to send
 *   0x04 STATE     bit 0 TX buffer full, bit 1 RX buffer full,
 *                  bit 2 TX overrun, bit 3 RX overrun (write 1 to clear)
 *   0x08 CTRL      bit 0 TX enable, bit 1 RX enable, bits 2..5 interrupt enables
 *   0x0C INTSTATUS interrupt status / write 1 to clear
 *   0x10 BAUDDIV   pclk / baud, at least 16
 */
#include "cmsdk_uart.h"

#define UART_REG(base, off) (*(volatile uint32_t *)((base) + (off)))
#define UART_DATA 0x00u
#define UART_STATE 0x04u
#define UART_CTRL 0x08u
#define UART_INTSTATUS 0x0Cu
#define UART_BAUDDIV 0x10u

#define STATE_TX_FULL (1u << 0)
#define STATE_RX_FULL (1u << 1)
#define STATE_OVERRUNS (3u << 2)
#define CTRL_TX_EN (1u << 0)
#define CTRL_RX_EN (1u << 1)
#define CTRL_RX_INT_EN (1u << 3)
#define INTSTATUS_RX (1u << 1)

/* The NVIC's set-enable, clear-enable and clear-pending registers for IRQs 0..31. */
#define NVIC_ISER0 (*(volatile uint32_t *)0xE000E100u)
#define NVIC_ICER0 (*(volatile uint32_t *)0xE000E180u)
#define NVIC_ICPR0 (*(volatile uint32_t *)0xE000E280u)

void cmsdk_uart_init(uintptr_t base, uint32_t pclk_hz, uint32_t baud) {
  uint32_t div = (baud == 0u) ? 16u : pclk_hz / baud;
  if (div < 16u) {
    div = 16u;
  }
  UART_REG(base, UART_CTRL) = 0u;
  UART_REG(base, UART_BAUDDIV) = div;
  UART_REG(base, UART_STATE) = STATE_OVERRUNS;   /* clear stale overrun flags */
  UART_REG(base, UART_INTSTATUS) = 0xFu;
  UART_REG(base, UART_CTRL) = CTRL_TX_EN | CTRL_RX_EN;
  /* Read the (empty) data register once. On hardware this is harmless; under QEMU it is
   * what makes the model look for input again (enabling the receiver alone does not), so
   * bytes the host sent before this point are delivered now instead of after an unrelated
   * event. A byte that has already arrived is left alone. */
  if ((UART_REG(base, UART_STATE) & STATE_RX_FULL) == 0u) {
    (void)UART_REG(base, UART_DATA);
  }
}

int cmsdk_uart_rx_ready(uintptr_t base) {
  return (UART_REG(base, UART_STATE) & STATE_RX_FULL) != 0u;
}

int cmsdk_uart_wait_rx(uintptr_t base, uint32_t rx_irq) {
  const uint32_t bit = 1u << (rx_irq & 31u);
  uint32_t primask;
  if (cmsdk_uart_rx_ready(base)) {
    return 0;
  }
  /* Sleep until the receive interrupt is pending instead of polling: a polling core keeps
   * QEMU's CPU thread busy (one host core of two, here) and takes QEMU's global lock on
   * every poll, which is what the thread delivering the host's bytes, one per main-loop
   * iteration, needs. With PRIMASK set the interrupt wakes WFI but is never taken, so no
   * handler runs and nothing changes for the code that is timed. */
  __asm__ volatile("mrs %0, primask" : "=r"(primask));
  __asm__ volatile("cpsid i" ::: "memory");
  UART_REG(base, UART_CTRL) |= CTRL_RX_INT_EN;
  UART_REG(base, UART_INTSTATUS) = INTSTATUS_RX; /* drop a stale request (the line goes low) */
  NVIC_ICPR0 = bit;
  NVIC_ISER0 = bit;
  /* A byte arriving after the check below sets the request, so WFI returns at once. */
  while (!cmsdk_uart_rx_ready(base)) {
    __asm__ volatile("wfi" ::: "memory");
  }
  NVIC_ICER0 = bit;
  UART_REG(base, UART_CTRL) &= ~CTRL_RX_INT_EN;
  UART_REG(base, UART_INTSTATUS) = INTSTATUS_RX;
  NVIC_ICPR0 = bit;
  __asm__ volatile("msr primask, %0" ::"r"(primask) : "memory");
  return 1;
}

uint8_t cmsdk_uart_getc(uintptr_t base) {
  while (!cmsdk_uart_rx_ready(base)) {
    /* Back off between polls. Under QEMU each poll of a device register takes the global
     * lock; polling back to back can starve the thread that delivers the received bytes. */
    volatile uint32_t spin;
    for (spin = 0u; spin < 200u; ++spin) {
    }
  }
  return (uint8_t)(UART_REG(base, UART_DATA) & 0xFFu);
}

void cmsdk_uart_putc(uintptr_t base, uint8_t c) {
  while ((UART_REG(base, UART_STATE) & STATE_TX_FULL) != 0u) {
  }
  UART_REG(base, UART_DATA) = c;
}

void cmsdk_uart_puts(uintptr_t base, const char *s) {
  while (*s != '\0') {
    cmsdk_uart_putc(base, (uint8_t)*s++);
  }
}

void cmsdk_uart_puthex(uintptr_t base, uint32_t value) {
  static const char digits[] = "0123456789abcdef";
  int shift;
  for (shift = 28; shift >= 0; shift -= 4) {
    cmsdk_uart_putc(base, (uint8_t)digits[(value >> (unsigned)shift) & 0xFu]);
  }
}
