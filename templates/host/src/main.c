/*
 * main.c of a host project. MT_STANDALONE (set by generate_project for
 * project_type=aot_standalone_demo) picks the standalone demo; otherwise the program
 * serves the run protocol on stdin/stdout until the host closes the pipe.
 */
#include <signal.h>

#include "mt_runtime.h"
#include "platform.h"

int main(void) {
  /* A host that closes the pipe must end the program quietly, not kill it mid-write. */
  signal(SIGPIPE, SIG_IGN);
  mt_platform_init();
#if defined(MT_STANDALONE) && MT_STANDALONE
  return mt_standalone_main() == 0 ? 0 : 1;
#else
  return mt_session_main() == 0 ? 0 : 1;
#endif
}
