/*
 * host_driven: serve the microtvm-tasks run protocol on Serial, forever.
 * mt_session_main() returns when the host goes away; the next loop() waits for it again.
 */
#include "src/mt_runtime.h"
#include "src/platform.h"

void setup() { mt_platform_init(); }

void loop() { (void)mt_session_main(); }
