/*
 * platform_host.c: platform.h for a host process. The transport is the process's
 * stdin/stdout (the Project API server holds the other ends of the pipes); the tick
 * counter is CLOCK_MONOTONIC in nanoseconds, so RUN reports ticks at 1 GHz.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "platform.h"

void mt_platform_init(void) {}

int32_t mt_platform_read(uint8_t *buf, size_t n) {
  for (;;) {
    ssize_t got = read(STDIN_FILENO, buf, n);
    if (got > 0) {
      return (int32_t)got;
    }
    if (got < 0 && errno == EINTR) {
      continue;
    }
    return -1; /* end of file or a real error: the host has gone */
  }
}

int32_t mt_platform_write(const uint8_t *buf, size_t n) {
  size_t done = 0;
  while (done < n) {
    ssize_t put = write(STDOUT_FILENO, buf + done, n - done);
    if (put < 0) {
      if (errno == EINTR) {
        continue;
      }
      return -1;
    }
    done += (size_t)put;
  }
  return (int32_t)n;
}

uint32_t mt_platform_ticks(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint32_t)((uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec);
}

uint32_t mt_platform_tick_hz(void) { return 1000000000u; }

void mt_platform_abort(int32_t code) { exit(code == 0 ? 1 : (int)(code & 0x7F)); }
