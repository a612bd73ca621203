# Warnings and sanitizers for every ratchet target. Warnings are errors by
# default (RATCHET_WERROR) in both gcc and clang; CI builds with both.
set(RATCHET_WARNINGS
    -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes
    -Wmissing-prototypes -Wformat=2 -Wundef -Wvla -Wcast-qual
    -Wwrite-strings -Wold-style-definition)
if(RATCHET_WERROR)
  list(APPEND RATCHET_WARNINGS -Werror)
endif()

if(RATCHET_SANITIZE)
  set(RATCHET_SANITIZE_FLAGS -fsanitize=${RATCHET_SANITIZE}
      -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_compile_options(${RATCHET_SANITIZE_FLAGS})
  add_link_options(${RATCHET_SANITIZE_FLAGS})
endif()

# ratchet_target_warnings(TARGET): apply the project's warning set.
function(ratchet_target_warnings target)
  target_compile_options(${target} PRIVATE ${RATCHET_WARNINGS})
endfunction()
