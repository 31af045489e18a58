/*
 * aot_standalone_demo: run the model once on the input baked in at generate time, print
 * the outputs and the elapsed ticks on Serial, then idle.
 */
#include "src/mt_runtime.h"
#include "src/platform.h"

void setup() {
  mt_platform_init();
  (void)mt_standalone_main();
}

void loop() {}
