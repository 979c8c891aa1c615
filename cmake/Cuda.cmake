# gpu/cuda. CMake finds nvcc only on PATH, so look in the toolkit's standard
# prefix too. With MYRIAD_CUDA=ON (the default) a missing nvcc is an error:
# CI must fail rather than silently skip the CUDA code.
if(NOT CMAKE_CUDA_COMPILER AND NOT DEFINED ENV{CUDACXX})
  find_program(MYRIAD_NVCC nvcc HINTS /usr/local/cuda/bin /usr/local/cuda-13.0/bin /usr/local/cuda-13/bin)
  if(NOT MYRIAD_NVCC)
    message(FATAL_ERROR "nvcc not found on PATH or in /usr/local/cuda/bin: install the CUDA 13 toolkit, "
                        "or configure with -DMYRIAD_CUDA=OFF to build without gpu/cuda")
  endif()
  set(CMAKE_CUDA_COMPILER ${MYRIAD_NVCC} CACHE FILEPATH "" FORCE)
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
