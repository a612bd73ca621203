# Installs the export set, ratchetConfig.cmake (with one component per
# library) and its version file, and the documentation.
include(CMakePackageConfigHelpers)
set(RATCHET_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/ratchet)
get_property(RATCHET_COMPONENTS GLOBAL PROPERTY RATCHET_COMPONENTS)

install(EXPORT ratchetTargets NAMESPACE ratchet::
        DESTINATION ${RATCHET_CMAKE_DIR} FILE ratchetTargets.cmake)
configure_package_config_file(
  ${PROJECT_SOURCE_DIR}/cmake/ratchetConfig.cmake.in
  ${PROJECT_BINARY_DIR}/ratchetConfig.cmake
  INSTALL_DESTINATION ${RATCHET_CMAKE_DIR})
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/ratchetConfigVersion.cmake
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES ${PROJECT_BINARY_DIR}/ratchetConfig.cmake
              ${PROJECT_BINARY_DIR}/ratchetConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/RatchetDeps.cmake
        DESTINATION ${RATCHET_CMAKE_DIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${PROJECT_SOURCE_DIR}/README.md
        DESTINATION ${CMAKE_INSTALL_DOCDIR})
