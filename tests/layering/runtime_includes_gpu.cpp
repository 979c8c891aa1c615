// Must NOT compile: runtime/ may use nothing internal (ARCHITECTURE.md), so
// it cannot name a concrete executor. The header exists: the control
// (layering.runtime_includes_gpu.control) compiles this file with gpu/ linked.
#include "gpu/cpu/cpu_executor.h"
