/*
 * platform_zephyr.c: the runtime's platform hooks (platform.h) on Zephyr.
 *
 * The wire is the board's console UART (devicetree `zephyr,console`; prj.conf turns the
 * console, printk and logging off so nothing else writes to it). Received bytes are taken
 * by the UART interrupt into a ring buffer, so bytes arriving while the model runs or a
 * reply is being sent are kept, not dropped; a semaphore wakes the reader. Bytes are sent
 * with the polling API. The clock is the kernel's hardware cycle counter.
 * Written for microtvm-tasks against Zephyr >= 3.4 (<zephyr/...> headers, int main).
 */
#include <zephyr/device.h>
#include <zephyr/drivers/uart.h>
#include <zephyr/kernel.h>
#include <zephyr/sys/reboot.h>
#include <zephyr/sys/ring_buffer.h>

#include "mt_frame.h"
#include "platform.h"

/* Room for two whole (escaped) frames: the host never has more than one request in flight. */
#define MT_RX_RING_BYTES (4u * (MT_FRAME_BODY_MAX) + 64u)

static const struct device *const mt_uart = DEVICE_DT_GET(DT_CHOSEN(zephyr_console));
RING_BUF_DECLARE(mt_rx_ring, MT_RX_RING_BYTES);
static K_SEM_DEFINE(mt_rx_sem, 0, 1);
static volatile uint32_t mt_rx_dropped;

static void mt_uart_isr(const struct device *dev, void *user_data) {
  uint8_t chunk[16];
  ARG_UNUSED(user_data);
  while (uart_irq_update(dev) && uart_irq_is_pending(dev)) {
    if (!uart_irq_rx_ready(dev)) {
      continue;
    }
    for (;;) {
      int got = uart_fifo_read(dev, chunk, sizeof(chunk));
      uint32_t put;
      if (got <= 0) {
        break;
      }
      put = ring_buf_put(&mt_rx_ring, chunk, (uint32_t)got);
      if (put < (uint32_t)got) {
        mt_rx_dropped += (uint32_t)got - put; /* the frame CRC reports it to the host */
      }
      k_sem_give(&mt_rx_sem);
    }
  }
}

void mt_platform_init(void) {
  if (!device_is_ready(mt_uart)) {
    mt_platform_abort(-1);
  }
  uart_irq_callback_user_data_set(mt_uart, mt_uart_isr, NULL);
  uart_irq_rx_enable(mt_uart);
}

int32_t mt_platform_read(uint8_t *buf, size_t n) {
  for (;;) {
    uint32_t got = ring_buf_get(&mt_rx_ring, buf, (uint32_t)n);
    if (got > 0u) {
      return (int32_t)got;
    }
    (void)k_sem_take(&mt_rx_sem, K_FOREVER);
  }
}

int32_t mt_platform_write(const uint8_t *buf, size_t n) {
  size_t i;
  for (i = 0; i < n; ++i) {
    uart_poll_out(mt_uart, buf[i]);
  }
  return (int32_t)n;
}

uint32_t mt_platform_ticks(void) { return k_cycle_get_32(); }

uint32_t mt_platform_tick_hz(void) { return (uint32_t)sys_clock_hw_cycles_per_sec(); }

void mt_platform_abort(int32_t code) {
  ARG_UNUSED(code);
  sys_reboot(SYS_REBOOT_COLD);
  for (;;) {
    k_cpu_idle();
  }
}
