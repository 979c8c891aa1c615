# gpu/cuda, when a CUDA toolkit is there. MYRIAD_CUDA:
#   AUTO (default) - build gpu/cuda if nvcc is found, else a CPU-only build
#                    (one line says so);
#   ON             - nvcc is required: CI sets this, so the CUDA code cannot
#                    silently drop out of its build;
#   OFF            - CPU-only.
# CMake finds nvcc only on PATH, so also look in the toolkit's standard prefix.
# Sets MYRIAD_WITH_CUDA (ON/OFF), which the rest of the build tests.
set(MYRIAD_WITH_CUDA OFF)
string(TOUPPER "${MYRIAD_CUDA}" myriad_cuda_mode)
if(myriad_cuda_mode STREQUAL "OFF")
  message(NOTICE "Myriad: CPU-only build (MYRIAD_CUDA=OFF): gpu/cuda is not compiled")
  return()
elseif(NOT myriad_cuda_mode MATCHES "^(AUTO|ON)$")
  message(FATAL_ERROR "MYRIAD_CUDA must be AUTO, ON or OFF, not '${MYRIAD_CUDA}'")
endif()

if(NOT CMAKE_CUDA_COMPILER)
  if(DEFINED ENV{CUDACXX} AND NOT "$ENV{CUDACXX}" STREQUAL "")
    set(myriad_nvcc "$ENV{CUDACXX}")
  else()
    find_program(myriad_nvcc nvcc HINTS /usr/local/cuda/bin /usr/local/cuda-13.0/bin /usr/local/cuda-13/bin
                 NO_CACHE)
  endif()
  # An nvcc that does not run (e.g. a wrapper script left on PATH after the
  # toolkit went) counts as none.
  set(myriad_nvcc_runs FALSE)
  if(myriad_nvcc AND EXISTS "${myriad_nvcc}")
    execute_process(COMMAND "${myriad_nvcc}" --version RESULT_VARIABLE myriad_nvcc_rc OUTPUT_QUIET ERROR_QUIET)
    if(myriad_nvcc_rc EQUAL 0)
      set(myriad_nvcc_runs TRUE)
    endif()
  endif()
  if(NOT myriad_nvcc_runs)
    if(myriad_cuda_mode STREQUAL "ON")
      message(FATAL_ERROR "MYRIAD_CUDA=ON but no working nvcc was found (not on PATH, not in /usr/local/cuda/bin, "
                          "CUDACXX unset): install the CUDA 13 toolkit, or configure with -DMYRIAD_CUDA=AUTO for a "
                          "CPU-only build")
    endif()
    message(NOTICE "Myriad: CPU-only build: no CUDA toolkit found (no working nvcc on PATH or in /usr/local/cuda/bin), "
                   "gpu/cuda is not compiled")
    return()
  endif()
  set(CMAKE_CUDA_COMPILER "${myriad_nvcc}" CACHE FILEPATH "" FORCE)
endif()

# Production: Ampere and Hopper. CI may pass one architecture to save time.
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES "80;90" CACHE STRING "")
endif()
enable_language(CUDA)
# CMake 3.25 does not know nvcc 13's C++20 dialect flag, and CUDA targets
# inherit CXX_STANDARD 20, so teach it the flag (.cu files include runtime/
# headers, which are C++20).
set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
list(APPEND CMAKE_CUDA_COMPILE_FEATURES cuda_std_20)
set(CMAKE_CUDA_STANDARD 20)
find_package(CUDAToolkit REQUIRED)
set(MYRIAD_WITH_CUDA ON)
message(STATUS "Myriad: CUDA build with ${CMAKE_CUDA_COMPILER} for architectures ${CMAKE_CUDA_ARCHITECTURES}")
