# Warnings are errors in project code (third-party headers come in as SYSTEM).
function(myriad_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Werror -Wno-error=deprecated-declarations>
    $<$<COMPILE_LANGUAGE:CUDA>:-Werror=all-warnings -Xcompiler=-Wall,-Wextra,-Werror>)
  # With -fsanitize=address at -O2, GCC 12 reports -Wmaybe-uninitialized false
  # positives inside libstdc++ (<regex>'s std::function states): keep the
  # warning visible there but not fatal. Normal builds keep it an error.
  if(MYRIAD_SANITIZE)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Wno-error=maybe-uninitialized>)
  endif()
endfunction()

# A project library built from every source under the given folders, with
# <folder>/include as its only include root.
function(myriad_library name folder)
  file(GLOB_RECURSE srcs CONFIGURE_DEPENDS
       ${CMAKE_CURRENT_SOURCE_DIR}/src/*.cpp ${CMAKE_CURRENT_SOURCE_DIR}/src/*.cc)
  if(NOT srcs)  # a layer with headers only (so far)
    add_library(${name} INTERFACE)
    target_include_directories(${name} INTERFACE ${CMAKE_CURRENT_SOURCE_DIR}/include)
    return()
  endif()
  add_library(${name} STATIC ${srcs})
  target_include_directories(${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include)
  myriad_warnings(${name})
  # Files named *_avx2.cpp hold the AVX2/FMA variants, chosen at run time.
  file(GLOB_RECURSE avx2 CONFIGURE_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/src/*_avx2.cpp)
  if(avx2)
    set_source_files_properties(${avx2} PROPERTIES COMPILE_OPTIONS "-mavx2;-mfma;-mf16c")
  endif()
endfunction()
