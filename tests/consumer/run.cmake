# Run by ctest as `cmake -P run.cmake` with BUILD_DIR, PROJECT_DIR, WORK_DIR,
# C_COMPILER and GENERATOR set. Fails with a message naming the step.
cmake_minimum_required(VERSION 3.20)

function(step name)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "packaging test: ${name} failed (${rc}):\n${out}\n${err}")
  endif()
  set(STEP_OUT "${out}" PARENT_SCOPE)
endfunction()

set(prefix ${WORK_DIR}/prefix)
file(REMOVE_RECURSE ${WORK_DIR})
file(MAKE_DIRECTORY ${WORK_DIR})

step("install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix})
foreach(f include/ratchet/resilience.h include/ratchet/version.h
          share/doc/ratchet/README.md)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "packaging test: ${f} was not installed")
  endif()
endforeach()
file(GLOB pcs ${prefix}/lib*/pkgconfig/ratchet-resilience.pc)
file(GLOB cfg ${prefix}/lib*/cmake/ratchet/ratchetConfigVersion.cmake)
if(NOT pcs OR NOT cfg)
  message(FATAL_ERROR "packaging test: .pc file or version file missing")
endif()
list(GET pcs 0 pc)
get_filename_component(pcdir ${pc} DIRECTORY)
get_filename_component(libdir ${pcdir} DIRECTORY)

# 1. CMake consumer: find_package with the component.
step("configure consumer" ${CMAKE_COMMAND} -S ${PROJECT_DIR}
     -B ${WORK_DIR}/cmake-build -G ${GENERATOR}
     -DCMAKE_C_COMPILER=${C_COMPILER} -DCMAKE_PREFIX_PATH=${prefix})
step("build consumer" ${CMAKE_COMMAND} --build ${WORK_DIR}/cmake-build)
set(exe ${WORK_DIR}/cmake-build/consumer)
step("run consumer" ${exe})
if(NOT STEP_OUT MATCHES "consumer ok")
  message(FATAL_ERROR "packaging test: consumer printed: ${STEP_OUT}")
endif()

# 2. A component that does not exist must make REQUIRED fail.
execute_process(COMMAND ${CMAKE_COMMAND} -S ${PROJECT_DIR}
  -B ${WORK_DIR}/cmake-bad -G ${GENERATOR} -DCMAKE_C_COMPILER=${C_COMPILER}
  -DCMAKE_PREFIX_PATH=${prefix} -DCONSUMER_COMPONENT=no_such_library
  RESULT_VARIABLE rc OUTPUT_QUIET ERROR_VARIABLE err)
if(rc EQUAL 0 OR NOT err MATCHES "no_such_library")
  message(FATAL_ERROR "packaging test: a missing component was not refused")
endif()

# 3. pkg-config consumer.
set(ENV{PKG_CONFIG_PATH} ${pcdir})
step("pkg-config" pkg-config --cflags --libs ratchet-resilience)
string(STRIP "${STEP_OUT}" pcflags)
separate_arguments(pcflags UNIX_COMMAND "${pcflags}")
step("pkg-config build" ${C_COMPILER} -std=c11 -Wall -Werror
     ${PROJECT_DIR}/main.c ${pcflags} -Wl,-rpath,${libdir}
     -o ${WORK_DIR}/pc-consumer)
step("run pkg-config consumer" ${WORK_DIR}/pc-consumer)

# 4. Neither consumer, nor the library, pulls in libuv, protobuf-c or LMDB.
foreach(bin ${exe} ${WORK_DIR}/pc-consumer)
  step("ldd" ldd ${bin})
  if(STEP_OUT MATCHES "libuv|protobuf|lmdb|xxhash|cmocka")
    message(FATAL_ERROR "packaging test: ${bin} links more than it should:\n${STEP_OUT}")
  endif()
  if(NOT STEP_OUT MATCHES "libratchet-resilience\\.so\\.0 => ${libdir}")
    message(FATAL_ERROR "packaging test: ${bin} does not use the installed library:\n${STEP_OUT}")
  endif()
endforeach()
message(STATUS "packaging test passed")
