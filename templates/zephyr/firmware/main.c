/*
 * main.c: the Zephyr application's entry point for microtvm-tasks projects.
 *
 * host_driven: serve the run protocol on the console UART for ever (mt_session_main()
 * returns when the host goes away; the next iteration waits for the next host).
 * aot_standalone_demo: run the model once on the baked-in input, print the outputs and
 * the elapsed ticks, then sleep.
 */
#include <zephyr/kernel.h>

#include "mt_runtime.h"
#include "platform.h"

int main(void) {
  mt_platform_init();
#if defined(MT_PROJECT_AOT_STANDALONE_DEMO)
  (void)mt_standalone_main();
  for (;;) {
    k_sleep(K_FOREVER);
  }
#else
  for (;;) {
    (void)mt_session_main();
  }
#endif
  return 0;
}
