# cmake -DDIR=<folder> -DWORD=<identifier> -P forbid_word.cmake
# Fails, naming each file, if the identifier appears in any source under DIR:
# e.g. nodes/ submits requests to the Engine and never builds a StepPlan.
file(GLOB_RECURSE files "${DIR}/*.cpp" "${DIR}/*.h" "${DIR}/*.cc" "${DIR}/*.hpp")
set(found "")
foreach(f ${files})
  file(READ "${f}" text)
  if(text MATCHES "(^|[^A-Za-z0-9_])${WORD}([^A-Za-z0-9_]|$)")
    list(APPEND found "${f}")
  endif()
endforeach()
if(found)
  message(FATAL_ERROR "${WORD} appears in: ${found}")
endif()
list(LENGTH files n)
message(STATUS "${WORD} appears in none of the ${n} sources under ${DIR}")
