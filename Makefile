# Builds the C core and the C-level tests without Python.  pip builds the
# same sources through setup.py; this Makefile is for embedders, C tests
# and sanitizer runs:  make  |  make check  |  make SAN=address,undefined
CC ?= cc
BUILD ?= build/c
SAN ?=
CFLAGS_BASE = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -O2 -fPIC \
	-fvisibility=hidden -Iinclude
ifneq ($(SAN),)
CFLAGS_BASE += -fsanitize=$(SAN) -fno-sanitize-recover=all \
	-fno-omit-frame-pointer -O1
LDFLAGS_SAN = -fsanitize=$(SAN)
endif

LIB_SRCS = $(wildcard csrc/*.c)
LIB_OBJS = $(LIB_SRCS:csrc/%.c=$(BUILD)/obj/%.o)
LIB = $(BUILD)/libsmtpstate.so
CTEST_SRCS = $(wildcard tests/c/test_*.c)
CTESTS = $(CTEST_SRCS:tests/c/%.c=$(BUILD)/tests/%)
# unit_*.c test internal (hidden) functions, so they link the objects.
UNIT_SRCS = $(wildcard tests/c/unit_*.c)
UNITS = $(UNIT_SRCS:tests/c/%.c=$(BUILD)/tests/%)

# shim_*.c are preloaded into the driver by tests; never sanitized, so
# they load after a sanitizer's runtime.
SHIM_SRCS = $(wildcard tests/c/shim_*.c)
SHIMS = $(SHIM_SRCS:tests/c/%.c=$(BUILD)/tests/%.so)

EXAMPLE_SRCS = $(wildcard examples/*.c)
EXAMPLES = $(EXAMPLE_SRCS:examples/%.c=$(BUILD)/%)

TOOL_SRCS = $(wildcard benchmarks/*.c)
TOOLS = $(TOOL_SRCS:benchmarks/%.c=$(BUILD)/%)

.PHONY: all check clean
all: $(LIB) $(CTESTS) $(UNITS) $(SHIMS) $(EXAMPLES) $(TOOLS)

$(BUILD)/obj/%.o: csrc/%.c $(wildcard include/*.h csrc/*.h)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -DSMTPSTATE_BUILDING_LIBRARY -c $< -o $@

$(LIB): $(LIB_OBJS)
	$(CC) -shared $(LDFLAGS_SAN) -o $@ $^ -lpthread -ldl

$(BUILD)/tests/%: tests/c/%.c $(LIB) tests/c/ctest.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -Itests/c $< -o $@ $(LDFLAGS_SAN) \
		-L$(BUILD) -lsmtpstate -Wl,-rpath,'$$ORIGIN/..' -lpthread

$(BUILD)/%: examples/%.c $(LIB)
	$(CC) $(CFLAGS_BASE) $< -o $@ $(LDFLAGS_SAN) -L$(BUILD) -lsmtpstate \
		-Wl,-rpath,'$$ORIGIN'

$(BUILD)/%: benchmarks/%.c
	$(CC) $(CFLAGS_BASE) $< -o $@ $(LDFLAGS_SAN)

# benchmarks/scale-*.c drive the engine through smtp.h: they link it.
$(BUILD)/scale-%: benchmarks/scale-%.c $(LIB)
	$(CC) $(CFLAGS_BASE) $< -o $@ $(LDFLAGS_SAN) -L$(BUILD) -lsmtpstate \
		-Wl,-rpath,'$$ORIGIN'

$(BUILD)/tests/shim_%.so: tests/c/shim_%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -Wall -Wextra -Werror -O2 -fPIC -shared $< -o $@ -ldl

$(BUILD)/tests/unit_%: tests/c/unit_%.c $(LIB_OBJS) tests/c/ctest.h
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_BASE) -Icsrc -Itests/c $< $(LIB_OBJS) -o $@ \
		$(LDFLAGS_SAN) -lpthread -ldl

check: all
	@set -e; for t in $(CTESTS) $(UNITS); do echo "== $$t"; $$t; done

clean:
	rm -rf $(BUILD)

# libFuzzer targets (tests/fuzz/fuzz_*.c), built with clang from the same
# csrc/ sources as the library, instrumented for coverage and sanitized:
# make fuzz  (scripts/fuzz.sh builds and runs them).
FUZZ_CC ?= clang
FUZZ_BUILD ?= build/fuzz
FUZZ_SAN = address,undefined
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g -O1 \
	-fno-omit-frame-pointer -fvisibility=hidden -Iinclude \
	-fno-sanitize-recover=all
FUZZ_SRCS = $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_TARGETS = $(FUZZ_SRCS:tests/fuzz/%.c=$(FUZZ_BUILD)/%)
FUZZ_OBJS = $(LIB_SRCS:csrc/%.c=$(FUZZ_BUILD)/obj/%.o)

.PHONY: fuzz
fuzz: $(FUZZ_OBJS) $(FUZZ_TARGETS)

$(FUZZ_BUILD)/obj/%.o: csrc/%.c $(wildcard include/*.h csrc/*.h)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link,$(FUZZ_SAN) \
		-DSMTPSTATE_BUILDING_LIBRARY -c $< -o $@

$(FUZZ_BUILD)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_OBJS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,$(FUZZ_SAN) -Icsrc $< \
		$(FUZZ_OBJS) -o $@ -lpthread -ldl
