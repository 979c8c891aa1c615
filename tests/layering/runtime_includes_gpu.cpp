// Must NOT compile: runtime/ may use nothing internal (ARCHITECTURE.md).
#include "gpu/cpu/kernels.h"
