# The two commands of the README, and a few more for developers.
#
#   make run    install what is missing, build, run the main job
#   make test   the same set-up, then every test
#   make asan   build in build-asan with ASan+UBSan (clang) and run the tests
#   make tsan   build in build-tsan with TSan (clang) and run the tests
#   make valgrind  run the test suites under valgrind
#   make bench  build and run the benchmarks in tests/bench
#   make fuzz   libFuzzer on the wire decoder for FUZZ_SECONDS (60) seconds
#   make format / make format-check   clang-format the tree / check it
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
SOURCES = $(shell git ls-files '*.c' '*.h' 2>/dev/null || \
            find . -path ./build\* -prune -o \( -name '*.c' -o -name '*.h' \) -print)

FUZZ_SECONDS ?= 60

.PHONY: run test deps build asan tsan valgrind bench fuzz format format-check clean

run: build
	sh docs/examples/run_demo.sh $(BUILD)/cli/ratchet

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

deps:
	@sh cmake/install-deps.sh

build: deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS)
	cmake --build $(BUILD) -j $(JOBS)

asan: deps
	CC=clang cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug \
	  -DRATCHET_SANITIZE=address,undefined $(CMAKE_FLAGS)
	cmake --build build-asan -j $(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) -LE nosan

tsan: deps
	CC=clang cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=Debug \
	  -DRATCHET_SANITIZE=thread $(CMAKE_FLAGS)
	cmake --build build-tsan -j $(JOBS)
	cd build-tsan && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --output-on-failure -j $(JOBS) -L threads

valgrind: build
	cd $(BUILD) && ctest --output-on-failure -L valgrind -T memcheck \
	  --overwrite MemoryCheckCommandOptions="--leak-check=full --error-exitcode=1 --errors-for-leak-kinds=definite,possible"

bench: build
	$(BUILD)/tests/bench/bench-resilience
	$(BUILD)/tests/bench/aws-backoff-sim
	$(BUILD)/tests/bench/bench-cache
	$(BUILD)/tests/bench/bench-ipc
	$(BUILD)/tests/bench/bench-store
	$(BUILD)/tests/bench/bench-runtime
	$(BUILD)/tests/bench/bench-orch

fuzz: deps
	CC=clang cmake -S . -B build-fuzz -DRATCHET_FUZZ=ON \
	  -DRATCHET_SANITIZE=address,undefined $(CMAKE_FLAGS)
	cmake --build build-fuzz -j $(JOBS) --target fuzz-frame
	mkdir -p build-fuzz/corpus-frame
	build-fuzz/tests/fuzz/fuzz-frame -max_total_time=$(FUZZ_SECONDS) \
	  -timeout=10 -artifact_prefix=build-fuzz/ \
	  build-fuzz/corpus-frame tests/fuzz/corpus/frame

format:
	clang-format -i $(SOURCES)

format-check:
	clang-format --dry-run --Werror $(SOURCES)

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz build-clang
