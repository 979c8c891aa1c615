// Must NOT compile: sim/ uses runtime/ only; it runs a SimExecutor, not a device.
#include "gpu/cpu/kernels.h"
