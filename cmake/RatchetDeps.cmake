# ratchet_find_deps(COMPONENT...): finds the system libraries the given ratchet
# components need, as the imported targets PkgConfig::RATCHET_<NAME>. Used by
# the build itself and, installed beside ratchetConfig.cmake, by consumers:
# a program that asks only for `resilience` needs none of them.
#
#   ipc      libprotobuf-c, libuv
#   caching  libxxhash, lmdb
#   runtime  (ipc's and caching's), jansson (JSON lines: events, dead letters),
#            libmicrohttpd (the /metrics endpoint)
macro(ratchet_find_deps)
  set(_ratchet_deps "")
  foreach(_c ${ARGN})
    if(_c STREQUAL "ipc" OR _c STREQUAL "runtime" OR _c STREQUAL "cli")
      list(APPEND _ratchet_deps "RATCHET_PROTOBUF_C=libprotobuf-c"
           "RATCHET_UV=libuv")
    endif()
    if(_c STREQUAL "caching" OR _c STREQUAL "runtime" OR _c STREQUAL "cli")
      list(APPEND _ratchet_deps "RATCHET_XXHASH=libxxhash" "RATCHET_LMDB=lmdb")
    endif()
    if(_c STREQUAL "runtime" OR _c STREQUAL "cli")
      list(APPEND _ratchet_deps "RATCHET_JANSSON=jansson"
           "RATCHET_MHD=libmicrohttpd")
    endif()
  endforeach()
  list(REMOVE_DUPLICATES _ratchet_deps)
  if(_ratchet_deps)
    find_package(PkgConfig REQUIRED)
  endif()
  foreach(_d ${_ratchet_deps})
    string(REPLACE "=" ";" _pair "${_d}")
    list(GET _pair 0 _prefix)
    list(GET _pair 1 _module)
    if(NOT TARGET PkgConfig::${_prefix})
      pkg_check_modules(${_prefix} REQUIRED IMPORTED_TARGET GLOBAL ${_module})
    endif()
  endforeach()
  unset(_c)
  unset(_d)
  unset(_pair)
  unset(_prefix)
  unset(_module)
  unset(_ratchet_deps)
endmacro()
