// Must NOT compile: runtime/ may use nothing internal.
#include "actors/ping_actor.h"
