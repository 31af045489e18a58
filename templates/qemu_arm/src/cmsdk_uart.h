/*
 * cmsdk_uart.h: polled driver for the ARM CMSDK APB UART, the UART of the MPS2 FPGA
 * images (and of QEMU's mps2 machines). No interrupts: the firmware only talks while it
 * waits for the host, so polling is simpler and keeps the instruction count of a timed
 * inference free of interrupt handlers.
 */
#ifndef CMSDK_UART_H_
#define CMSDK_UART_H_

#include <stddef.h>
#include <stdint.h>

/* Enable the transmitter and receiver at `baud` given the peripheral clock. */
void cmsdk_uart_init(uintptr_t base, uint32_t pclk_hz, uint32_t baud);

/* Non-zero when a received byte is waiting in the data register. */
int cmsdk_uart_rx_ready(uintptr_t base);

/* Block until a byte arrives, then return it. */
uint8_t cmsdk_uart_getc(uintptr_t base);

/* Block until the transmit buffer has room, then send `c`. */
void cmsdk_uart_putc(uintptr_t base, uint8_t c);

/* Send a NUL-terminated string (used for boot and fault messages). */
void cmsdk_uart_puts(uintptr_t base, const char *s);

/* Send `value` as 8 hex digits (fault reports must not depend on printf). */
void cmsdk_uart_puthex(uintptr_t base, uint32_t value);

#endif /* CMSDK_UART_H_ */
