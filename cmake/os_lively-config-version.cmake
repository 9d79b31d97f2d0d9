# Version check for find_package(os_lively <version> CONFIG). The version
# is the installed os-lively.pc's (so it never goes stale). Compatible:
# the same major version (the soname's: libos_lively.so.<major>) and at
# least the version asked for; under major 0 too, per the ABI policy in
# os_lively.h (functions and struct fields are only added).
get_filename_component(_os_lively_prefix "${CMAKE_CURRENT_LIST_DIR}/../../.." ABSOLUTE)
set(PACKAGE_VERSION "")
foreach(_dir lib lib64 "lib/${CMAKE_LIBRARY_ARCHITECTURE}")
  set(_pc "${_os_lively_prefix}/${_dir}/pkgconfig/os-lively.pc")
  if(NOT PACKAGE_VERSION AND EXISTS "${_pc}")
    file(STRINGS "${_pc}" _line REGEX "^Version:")
    string(REGEX REPLACE "^Version:[ \t]*" "" PACKAGE_VERSION "${_line}")
  endif()
endforeach()

if(NOT PACKAGE_VERSION)
  set(PACKAGE_VERSION_UNSUITABLE TRUE)
  set(PACKAGE_VERSION "unknown")
elseif(PACKAGE_FIND_VERSION)
  string(REGEX MATCH "^[0-9]+" _major "${PACKAGE_VERSION}")
  if(NOT PACKAGE_FIND_VERSION_MAJOR STREQUAL _major
     OR PACKAGE_VERSION VERSION_LESS PACKAGE_FIND_VERSION)
    set(PACKAGE_VERSION_COMPATIBLE FALSE)
  else()
    set(PACKAGE_VERSION_COMPATIBLE TRUE)
    if(PACKAGE_VERSION VERSION_EQUAL PACKAGE_FIND_VERSION)
      set(PACKAGE_VERSION_EXACT TRUE)
    endif()
  endif()
else()
  set(PACKAGE_VERSION_COMPATIBLE TRUE)
endif()
