# Finds every third-party dependency through CMake. A missing one stops
# configuration naming the Debian package that provides it (scripts/setup
# installs them all).
function(myriad_missing what package)
  message(FATAL_ERROR "${what} not found: install the Debian package(s) '${package}' (scripts/setup installs everything)")
endfunction()

find_package(Threads REQUIRED)

find_package(nlohmann_json 3 CONFIG QUIET)
if(NOT nlohmann_json_FOUND)
  myriad_missing("nlohmann-json" "nlohmann-json3-dev")
endif()

find_package(GTest QUIET)
if(NOT GTest_FOUND)
  myriad_missing("GoogleTest" "libgtest-dev")
endif()
include(GoogleTest)

find_path(ONIG_INCLUDE_DIR oniguruma.h)
find_library(ONIG_LIBRARY onig)
if(NOT ONIG_INCLUDE_DIR OR NOT ONIG_LIBRARY)
  myriad_missing("Oniguruma" "libonig-dev")
endif()
add_library(myriad::onig INTERFACE IMPORTED)
target_include_directories(myriad::onig SYSTEM INTERFACE ${ONIG_INCLUDE_DIR})
target_link_libraries(myriad::onig INTERFACE ${ONIG_LIBRARY})

find_path(UTF8PROC_INCLUDE_DIR utf8proc.h)
find_library(UTF8PROC_LIBRARY utf8proc)
if(NOT UTF8PROC_INCLUDE_DIR OR NOT UTF8PROC_LIBRARY)
  myriad_missing("utf8proc" "libutf8proc-dev")
endif()
add_library(myriad::utf8proc INTERFACE IMPORTED)
target_include_directories(myriad::utf8proc SYSTEM INTERFACE ${UTF8PROC_INCLUDE_DIR})
target_link_libraries(myriad::utf8proc INTERFACE ${UTF8PROC_LIBRARY})

# Every binary's command line (header-only; CMake config in /usr/share/cmake).
find_package(CLI11 2 CONFIG QUIET)
if(NOT CLI11_FOUND)
  myriad_missing("CLI11" "libcli11-dev")
endif()

# Logging (runtime/log.h): spdlog, built by Debian against the system {fmt}
# (SPDLOG_FMT_EXTERNAL), so fmt is found first and is a dependency of its own.
find_package(fmt CONFIG QUIET)
if(NOT fmt_FOUND)
  myriad_missing("{fmt}" "libfmt-dev")
endif()
find_package(spdlog CONFIG QUIET)
if(NOT spdlog_FOUND)
  myriad_missing("spdlog" "libspdlog-dev")
endif()

# The adapter store's catalog (runtime/adapter_store.h).
find_package(SQLite3 QUIET)
if(NOT SQLite3_FOUND)
  myriad_missing("SQLite 3" "libsqlite3-dev")
endif()

if(MYRIAD_GPU_ONLY)
  return()
endif()

# CAF 0.17 ships no CMake config and no .pc file.
find_path(CAF_INCLUDE_DIR caf/all.hpp)
find_library(CAF_CORE_LIBRARY caf_core)
find_library(CAF_IO_LIBRARY caf_io)
if(NOT CAF_INCLUDE_DIR OR NOT CAF_CORE_LIBRARY OR NOT CAF_IO_LIBRARY)
  myriad_missing("CAF 0.17 (C++ Actor Framework)" "libcaf-dev")
endif()
add_library(myriad::caf INTERFACE IMPORTED)
target_include_directories(myriad::caf SYSTEM INTERFACE ${CAF_INCLUDE_DIR})
target_link_libraries(myriad::caf INTERFACE ${CAF_IO_LIBRARY} ${CAF_CORE_LIBRARY} Threads::Threads)
# CAF's OpenSSL module (in libcaf-dev): TLS between a cluster's gateway and workers.
find_library(CAF_OPENSSL_LIBRARY caf_openssl)
if(NOT CAF_OPENSSL_LIBRARY)
  myriad_missing("CAF 0.17's OpenSSL module (libcaf_openssl)" "libcaf-dev")
endif()
# OpenSSL itself: myriad-node interposes four libssl calls CAF 0.17 makes
# (nodes/node/openssl_error_queue.cpp).
find_package(OpenSSL QUIET COMPONENTS SSL Crypto)
if(NOT OpenSSL_FOUND)
  myriad_missing("OpenSSL (development files)" "libssl-dev")
endif()
add_library(myriad::caf_openssl INTERFACE IMPORTED)
target_link_libraries(myriad::caf_openssl INTERFACE ${CAF_OPENSSL_LIBRARY} myriad::caf)

find_package(CapnProto CONFIG QUIET)
if(NOT CapnProto_FOUND)
  myriad_missing("Cap'n Proto" "capnproto libcapnp-dev")
endif()

find_package(FlatBuffers CONFIG QUIET)
if(NOT FlatBuffers_FOUND)
  myriad_missing("FlatBuffers" "libflatbuffers-dev flatbuffers-compiler")
endif()

find_package(Boost 1.74 CONFIG QUIET)
if(NOT Boost_FOUND)
  myriad_missing("Boost (Asio, Beast)" "libboost-dev")
endif()

find_package(SQLite3 QUIET)
if(NOT SQLite3_FOUND)
  myriad_missing("SQLite" "libsqlite3-dev")
endif()
