// Must NOT compile: runtime/ may use nothing internal. The header exists:
// the control compiles this file with actors/ linked.
#include "actors/ping_actor.h"
