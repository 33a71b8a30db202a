// libFuzzer's driver, called from each harness's top-level code: SwiftPM gives every executable its own `main`
// (the module's entry point), so libFuzzer's `main` is not the one that runs; the harness hands over to the driver.
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*UserCb)(const uint8_t *Data, size_t Size));
