/*
 * main.c: firmware entry for the qemu_arm template. The project type picks the runtime
 * entry point at compile time (board.mk defines MT_PROJECT_TYPE_STANDALONE for
 * aot_standalone_demo); everything else is the runtime's job.
 */
#include "mt_runtime.h"
#include "platform.h"

int main(void) {
  mt_platform_init();
#if defined(MT_PROJECT_TYPE_STANDALONE) && MT_PROJECT_TYPE_STANDALONE
  return (int)mt_standalone_main();
#else
  return (int)mt_session_main();
#endif
}
