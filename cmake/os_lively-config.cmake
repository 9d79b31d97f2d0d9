# CMake package for the os-lively C library, installed by
# `cargo cinstall` into <prefix>/share/cmake/os_lively/ (Cargo.toml,
# [package.metadata.capi.install.data]): <prefix>/share/cmake/<name>/ is
# where find_package(os_lively CONFIG) looks under each prefix it searches
# (CMAKE_PREFIX_PATH, /usr/local, /usr).
#
#   find_package(os_lively CONFIG REQUIRED)
#   target_link_libraries(app PRIVATE os_lively::os_lively)   # libos_lively.so.0
#   target_link_libraries(app PRIVATE os_lively::static)      # libos_lively.a
#
# Both carry the include directory (os_lively.h, os_lively.hpp). The
# library is found next to this file's prefix: lib/, lib64/ or
# lib/<multiarch>/ (cargo cinstall --libdir), whichever holds it.
cmake_minimum_required(VERSION 3.16)

get_filename_component(_os_lively_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
set(_os_lively_libdirs "${_os_lively_prefix}/lib" "${_os_lively_prefix}/lib64")
if(CMAKE_LIBRARY_ARCHITECTURE)
  list(APPEND _os_lively_libdirs "${_os_lively_prefix}/lib/${CMAKE_LIBRARY_ARCHITECTURE}")
endif()

find_path(OS_LIVELY_INCLUDE_DIR os_lively.h
  PATHS "${_os_lively_prefix}/include" NO_DEFAULT_PATH)
find_library(OS_LIVELY_LIBRARY NAMES os_lively
  PATHS ${_os_lively_libdirs} NO_DEFAULT_PATH)
find_library(OS_LIVELY_STATIC_LIBRARY NAMES libos_lively.a
  PATHS ${_os_lively_libdirs} NO_DEFAULT_PATH)

if(NOT OS_LIVELY_INCLUDE_DIR OR NOT OS_LIVELY_LIBRARY)
  set(os_lively_FOUND FALSE)
  set(os_lively_NOT_FOUND_MESSAGE
    "os_lively: no os_lively.h or libos_lively under ${_os_lively_prefix} (re-run cargo cinstall?)")
  return()
endif()

find_package(Threads REQUIRED)

if(NOT TARGET os_lively::os_lively)
  add_library(os_lively::os_lively SHARED IMPORTED)
  set_target_properties(os_lively::os_lively PROPERTIES
    IMPORTED_LOCATION "${OS_LIVELY_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${OS_LIVELY_INCLUDE_DIR}")
endif()

if(OS_LIVELY_STATIC_LIBRARY AND NOT TARGET os_lively::static)
  add_library(os_lively::static STATIC IMPORTED)
  # What Rust's standard library needs from the system (as Libs.private
  # in os-lively.pc).
  set_target_properties(os_lively::static PROPERTIES
    IMPORTED_LOCATION "${OS_LIVELY_STATIC_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${OS_LIVELY_INCLUDE_DIR}"
    INTERFACE_LINK_LIBRARIES "Threads::Threads;${CMAKE_DL_LIBS};m")
endif()

set(os_lively_FOUND TRUE)
