/*
 * cmsdk_uart.h: polled driver for the ARM CMSDK APB UART, the UART of the MPS2 FPGA
 * images (and of QEMU's mps2 machines). No interrupt handler: the firmware only talks while
 * it waits for the host, so a timed inference stays free of handlers; waiting for a byte
 * sleeps until the receive interrupt is pending without taking it (cmsdk_uart_wait_rx).
 */
#ifndef CMSDK_UART_H_
#define CMSDK_UART_H_

#include <stddef.h>
#include <stdint.h>

/* Enable the transmitter and receiver at `baud` given the peripheral clock. */
void cmsdk_uart_init(uintptr_t base, uint32_t pclk_hz, uint32_t baud);

/* Non-zero when a received byte is waiting in the data register. */
int cmsdk_uart_rx_ready(uintptr_t base);

/* Return once a received byte is waiting, sleeping (WFI) until the UART's receive interrupt,
 * IRQ `rx_irq` of the NVIC, is pending; the interrupt itself is never taken. Returns 1 when
 * it slept (time passed that no instruction count accounts for), 0 when a byte was there. */
int cmsdk_uart_wait_rx(uintptr_t base, uint32_t rx_irq);

/* Block until a byte arrives (polling), then return it. */
uint8_t cmsdk_uart_getc(uintptr_t base);

/* Block until the transmit buffer has room, then send `c`. */
void cmsdk_uart_putc(uintptr_t base, uint8_t c);

/* Send a NUL-terminated string (used for boot and fault messages). */
void cmsdk_uart_puts(uintptr_t base, const char *s);

/* Send `value` as 8 hex digits (fault reports must not depend on printf). */
void cmsdk_uart_puthex(uintptr_t base, uint32_t value);

#endif /* CMSDK_UART_H_ */
