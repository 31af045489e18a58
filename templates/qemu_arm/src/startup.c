/*
 * startup.c: reset handler, vector table and fault handlers for the MPS2 Cortex-M boards.
 *
 * The linker script (generated per board from boards.json) places `.vectors` at the base
 * of the code memory, where the core fetches its initial stack pointer and reset vector.
 * QEMU loads every ELF segment at its load address, so .data's initial image sits in
 * code memory and is copied to RAM here, exactly as on a board with flash.
 */
#include <stdint.h>

#include "cmsdk_uart.h"
#include "qemu_arm_board.h"

/* Symbols defined by the linker script. */
extern uint32_t __data_load__;
extern uint32_t __data_start__;
extern uint32_t __data_end__;
extern uint32_t __bss_start__;
extern uint32_t __bss_end__;
extern uint32_t __stack_top__;

int main(void);
void mt_reset_handler(void) __attribute__((noreturn));
void mt_fault_handler(void);
void mt_fault_report(const uint32_t *frame);
void mt_unexpected_handler(void);

/* System Control Block registers used here. */
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)
#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SCB_CFSR (*(volatile uint32_t *)0xE000ED28u)
#define SCB_HFSR (*(volatile uint32_t *)0xE000ED2Cu)
#define SCB_MMFAR (*(volatile uint32_t *)0xE000ED34u)
#define SCB_BFAR (*(volatile uint32_t *)0xE000ED38u)

void mt_reset_handler(void) {
  const uint32_t *src;
  uint32_t *dst;

#if defined(__ARM_FP)
  /* Grant full access to coprocessors 10 and 11 (the FPU) before any code that may
   * use a floating-point register runs. */
  SCB_CPACR |= (0xFu << 20);
  __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif

  src = &__data_load__;
  for (dst = &__data_start__; dst < &__data_end__;) {
    *dst++ = *src++;
  }
  for (dst = &__bss_start__; dst < &__bss_end__;) {
    *dst++ = 0u;
  }

  mt_board_exit((int32_t)main());
}

void mt_board_exit(int32_t code) {
  const uintptr_t uart = (uintptr_t)MT_UART0_BASE;
  __asm__ volatile("cpsid i" ::: "memory");
  cmsdk_uart_puts(uart, MT_EXIT_MARKER);
  cmsdk_uart_puthex(uart, (uint32_t)code);
  cmsdk_uart_puts(uart, " ***\r\n");
  for (;;) {
    __asm__ volatile("wfi");
  }
}

void mt_board_halt(const char *what, const uint32_t *frame, int32_t code) {
  const uintptr_t uart = (uintptr_t)MT_UART0_BASE;
  /* Interrupts off: nothing may run after a fault report. */
  __asm__ volatile("cpsid i" ::: "memory");
  cmsdk_uart_init(uart, MT_SYSCLK_HZ, MT_UART_BAUD);
  cmsdk_uart_puts(uart, MT_FAULT_MARKER);
  cmsdk_uart_puts(uart, what);
  cmsdk_uart_puts(uart, " code=0x");
  cmsdk_uart_puthex(uart, (uint32_t)code);
  cmsdk_uart_puts(uart, " ipsr=0x");
  {
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    cmsdk_uart_puthex(uart, ipsr);
  }
  if (frame != 0) {
    static const char *const names[8] = {"r0", "r1", "r2", "r3", "r12", "lr", "pc", "xpsr"};
    int i;
    for (i = 0; i < 8; ++i) {
      cmsdk_uart_puts(uart, " ");
      cmsdk_uart_puts(uart, names[i]);
      cmsdk_uart_puts(uart, "=0x");
      cmsdk_uart_puthex(uart, frame[i]);
    }
    cmsdk_uart_puts(uart, " cfsr=0x");
    cmsdk_uart_puthex(uart, SCB_CFSR);
    cmsdk_uart_puts(uart, " hfsr=0x");
    cmsdk_uart_puthex(uart, SCB_HFSR);
    cmsdk_uart_puts(uart, " mmfar=0x");
    cmsdk_uart_puthex(uart, SCB_MMFAR);
    cmsdk_uart_puts(uart, " bfar=0x");
    cmsdk_uart_puthex(uart, SCB_BFAR);
  }
  cmsdk_uart_puts(uart, " ***\r\n");
  for (;;) {
    /* Sleep for good; under QEMU -icount this costs the host no CPU. */
    __asm__ volatile("wfi");
  }
}

/* HardFault (and the configurable faults, which escalate to it while disabled): find the
 * exception frame on whichever stack was in use and report it. */
__attribute__((naked)) void mt_fault_handler(void) {
  __asm__ volatile(
      "tst lr, #4\n\t"
      "ite eq\n\t"
      "mrseq r0, msp\n\t"
      "mrsne r0, psp\n\t"
      "b mt_fault_report\n\t");
}

void mt_fault_report(const uint32_t *frame) {
  mt_board_halt("HardFault", frame, (int32_t)(SCB_ICSR & 0x1FFu));
}

void mt_unexpected_handler(void) {
  mt_board_halt("unexpected exception", 0, (int32_t)(SCB_ICSR & 0x1FFu));
}

typedef void (*mt_vector_t)(void);

#define MT_NUM_IRQ 32

/* 16 system exception entries followed by the board's 32 external interrupts. */
__attribute__((section(".vectors"), used)) const mt_vector_t mt_vector_table[16 + MT_NUM_IRQ] = {
    [0] = (mt_vector_t)(uintptr_t)&__stack_top__,
    [1] = mt_reset_handler,
    [2] = mt_unexpected_handler,  /* NMI */
    [3] = mt_fault_handler,       /* HardFault */
    [4] = mt_fault_handler,       /* MemManage */
    [5] = mt_fault_handler,       /* BusFault */
    [6] = mt_fault_handler,       /* UsageFault */
    [11] = mt_unexpected_handler, /* SVCall */
    [12] = mt_unexpected_handler, /* DebugMonitor */
    [14] = mt_unexpected_handler, /* PendSV */
    [15] = mt_unexpected_handler, /* SysTick */
    /* External interrupts: none is enabled; one arriving anyway is reported. */
#define MT_IRQ4 mt_unexpected_handler, mt_unexpected_handler, mt_unexpected_handler, mt_unexpected_handler
    [16] = MT_IRQ4, MT_IRQ4, MT_IRQ4, MT_IRQ4, MT_IRQ4, MT_IRQ4, MT_IRQ4, MT_IRQ4,
#undef MT_IRQ4
};
