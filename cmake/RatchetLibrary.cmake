# ratchet_add_library(NAME SOURCES ... [PUBLIC_DEPS ...] [PRIVATE_DEPS ...]
#                     [PC_REQUIRES_PRIVATE ...] [PC_LIBS_PRIVATE ...]
#                     [DESCRIPTION text])
#
# Builds library ratchet_NAME (alias ratchet::NAME) from the folder's src/,
# with include/ as its public headers, a SOVERSION, the project's warnings,
# install rules in the ratchetTargets export set, and ratchet-NAME.pc.
function(ratchet_add_library name)
  cmake_parse_arguments(ARG "" "DESCRIPTION"
    "SOURCES;PUBLIC_DEPS;PRIVATE_DEPS;PC_REQUIRES;PC_REQUIRES_PRIVATE;PC_LIBS_PRIVATE"
    ${ARGN})
  set(target ratchet_${name})
  add_library(${target} ${ARG_SOURCES})
  add_library(ratchet::${name} ALIAS ${target})
  target_include_directories(${target}
    PUBLIC
      $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
      $<BUILD_INTERFACE:${PROJECT_BINARY_DIR}/include>
      $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>
    PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  target_link_libraries(${target} PUBLIC ${ARG_PUBLIC_DEPS}
                                  PRIVATE ${ARG_PRIVATE_DEPS})
  ratchet_target_warnings(${target})
  set_target_properties(${target} PROPERTIES
    OUTPUT_NAME ratchet-${name}
    EXPORT_NAME ${name}
    VERSION ${PROJECT_VERSION}
    SOVERSION ${PROJECT_VERSION_MAJOR})
  install(TARGETS ${target} EXPORT ratchetTargets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
  install(DIRECTORY include/ DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

  # pkg-config file for Makefile users.
  # The prefix is found relative to the .pc file itself, so the package
  # stays correct when installed with `cmake --install --prefix ELSEWHERE`.
  file(RELATIVE_PATH RATCHET_PC_TO_PREFIX
       /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
  string(REGEX REPLACE "/$" "" RATCHET_PC_TO_PREFIX "${RATCHET_PC_TO_PREFIX}")
  set(RATCHET_PC_NAME ratchet-${name})
  set(RATCHET_PC_DESCRIPTION "${ARG_DESCRIPTION}")
  string(REPLACE ";" " " RATCHET_PC_REQUIRES "${ARG_PC_REQUIRES}")
  string(REPLACE ";" " " RATCHET_PC_REQUIRES_PRIVATE
         "${ARG_PC_REQUIRES_PRIVATE}")
  string(REPLACE ";" " " RATCHET_PC_LIBS_PRIVATE "${ARG_PC_LIBS_PRIVATE}")
  configure_file(${PROJECT_SOURCE_DIR}/cmake/ratchet-lib.pc.in
                 ${PROJECT_BINARY_DIR}/pkgconfig/ratchet-${name}.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/pkgconfig/ratchet-${name}.pc
          DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
  set_property(GLOBAL APPEND PROPERTY RATCHET_COMPONENTS ${name})
endfunction()
