// Must NOT compile: gpu/ may use runtime/ only.
#include "actors/ping_actor.h"
