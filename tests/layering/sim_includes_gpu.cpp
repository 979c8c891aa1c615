// Must NOT compile: sim/ uses runtime/ only; it runs a SimExecutor, not a
// device. Compiled with myriad_sim's usage requirements (today an INTERFACE
// library over runtime/; the same once sim/ has sources), so linking gpu/
// into sim/ fails this case. The control compiles it with gpu/ linked.
#include "gpu/devices.h"
