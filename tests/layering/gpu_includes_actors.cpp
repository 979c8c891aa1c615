// Must NOT compile: gpu/ may use runtime/ only. The header exists: the
// control compiles this file with actors/ (and its CAF and schema) linked.
#include "actors/ping_actor.h"
