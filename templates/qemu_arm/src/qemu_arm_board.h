/*
 * qemu_arm_board.h: the board constants the firmware needs, as compile definitions
 * written into board.mk from boards.json at generate time (the board is data, not code).
 * The defaults below are the MPS2 values and only exist so a file can be checked alone.
 */
#ifndef QEMU_ARM_BOARD_H_
#define QEMU_ARM_BOARD_H_

#include <stdint.h>

#ifndef MT_BOARD_NAME
#define MT_BOARD_NAME "mps2"
#endif
#ifndef MT_UART0_BASE
#define MT_UART0_BASE 0x40004000u
#endif
/* The NVIC line of UART0's receive interrupt (0 on the MPS2 images QEMU models). */
#ifndef MT_UART0_RX_IRQ
#define MT_UART0_RX_IRQ 0u
#endif
#ifndef MT_TIMER0_BASE
#define MT_TIMER0_BASE 0x40000000u
#endif
#ifndef MT_SYSCLK_HZ
#define MT_SYSCLK_HZ 25000000u
#endif
/* QEMU's -icount shift: each instruction advances virtual time by 2^shift ns. */
#ifndef MT_ICOUNT_SHIFT
#define MT_ICOUNT_SHIFT 7
#endif
#ifndef MT_UART_BAUD
#define MT_UART_BAUD 115200u
#endif

/* Printed over UART0 when the firmware faults or aborts; the host side
 * (microtvm_api_server.py) watches for it and reports the text that follows. */
#define MT_FAULT_MARKER "\r\n*** MT_QEMU_ARM_FAULT "

/* Printed when main() returns: the firmware is done and stops (there is no power-off). */
#define MT_EXIT_MARKER "\r\n*** MT_QEMU_ARM_EXIT code=0x"

/* Report main()'s return value after the exit marker, then stop the core for good. */
void mt_board_exit(int32_t code) __attribute__((noreturn));

/* Print `what` (and the stacked registers when `frame` is not NULL) after the fault
 * marker, then stop the core for good. */
void mt_board_halt(const char *what, const uint32_t *frame, int32_t code) __attribute__((noreturn));

#endif /* QEMU_ARM_BOARD_H_ */
