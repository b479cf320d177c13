# Makefile for the quantization toolkit. One plain Makefile; settings in config.mk.
#
#   make              build libcommon, the CPU kernels, every tool (CUDA objects when nvcc exists)
#   make check        build and run every test that needs no GPU: headers compile alone,
#                     the layer rule (check-layers), the shell-test lint (check-lint),
#                     unit tests (also under QK_DEBUG_MEMORY=1), CLI tests, man pages
#   make demo         synthesize a small model and run the pipeline on it
#   make deps         install the Debian packages the build needs (as root)
#   make bench        build the benchmarks in tests/bench (run them by hand)
#   make check-docs   every tool has a man page with the sections in order
#   make install      install tools and man pages under $(PREFIX)
#
#   DEVELOPER=1       -Werror on top of the warnings
#   SANITIZE=1        build (into build-san/) and test with ASan+UBSan
#   make fuzz         build the libFuzzer targets of tests/fuzz (clang) into build-fuzz/
#   make fuzz-run SECONDS=N   run each fuzz target N seconds on its corpus
#                     (check runs each on 450 inputs, fixed seed; skipped without clang's fuzzer runtime)
#   CUDA=0            never build the CUDA objects, even where nvcc exists
#
#   make check-cuda-emu   the CUDA backend's logic against the CPU on an emulator of
#                     CUDA (no GPU, no nvcc needed; part of check; doc/cuda.md)
#   make check-cuda-emu-tools   qgptq, qfp8, qsmooth, qverify with --device cuda on the
#                     emulator against --device cpu (about a minute)
#   make cuda-check   on a machine with a GPU: build and run every CUDA test (scripts/cuda-check.sh)
#   make cuda-bench   on a machine with a GPU: the benchmarks, with ratios (scripts/cuda-bench.sh)

include config.mk

ifeq ($(FUZZ),1)
# the fuzz build (make fuzz): clang, libFuzzer's coverage, ASan and UBSan
CC       = $(FUZZ_CC)
BUILD   ?= build-fuzz
SANFLAGS = -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT      = -O1 -g
CUDA     = 0
WARN    += -Wno-pass-failed
# a 64 KiB read buffer: ASan maps and clears every allocation over 128 KiB
# afresh, which made each input of the stream targets cost milliseconds;
# smaller buffers also take the refill paths more often
CPPFLAGS += -DQC_SRC_BUF='((size_t)1 << 16)'
# zstd windows up to 16 MiB: the full 2 GiB a frame header may ask for
# (qc_io.c) is allocated before any data arrives, past -malloc_limit_mb
CPPFLAGS += -DQC_ZSTD_WINDOW_LOG_MAX=24
else ifeq ($(SANITIZE),1)
BUILD   ?= build-san
SANFLAGS = -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
OPT      = -O1 -g
else
BUILD   ?= build
SANFLAGS =
endif
ifeq ($(DEVELOPER),1)
WARN += -Werror
endif
ifeq ($(CUDA),0)
NVCC :=
endif
# evaluated once: the toolkit with a static runtime, or nothing (config.mk)
CUDA_TOOLKIT := $(if $(NVCC),$(CUDA_HOME_FOUND))
ifeq ($(CUDA_TOOLKIT),)
NVCC :=
endif

# libcommon is in layers, one folder each (libcommon/README.md); headers are
# included by name, so every layer's folder is on the include path
LAYERS   := base io tok format model quant eval pack recipe
CPPFLAGS += $(LAYERS:%=-Ilibcommon/%) -Ikernels -Itools $(BLAS_CFLAGS) -DQC_VERSION=\"$(VERSION)\"
CFLAGS   += $(CSTD) $(OPT) -g $(WARN) $(SANFLAGS) -MMD -MP -fPIC
LDFLAGS  += $(SANFLAGS)

LIB_SRC   := $(sort $(foreach l,$(LAYERS),$(wildcard libcommon/$(l)/*.c)) $(wildcard kernels/*.c kernels/cpu/*.c))
LIB_OBJ   := $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/corpus.o
LIB       := $(BUILD)/libcommon.a

# the libraries without CUDA's: the emulator tests link these
EMU_LIBS  := $(LIBS)
NVCCFLAGS  = -O2 -std=c++17 $(CUDA_ARCH) $(LAYERS:%=-Ilibcommon/%) -Ikernels \
             -Xcompiler -fPIC,-Wall,-Wextra,-Wno-unused-parameter -MMD -MP -MF $(@:.o=.d)
ifeq ($(DEVELOPER),1)
NVCCFLAGS += -Xcompiler -Werror
endif
# the CUDA emulator test is part of check where a C++ compiler exists (not
# under the sanitizers, which do not follow its stack switches)
ifneq ($(SANITIZE),1)
ifneq ($(shell command -v $(CXX) 2>/dev/null),)
CHECK_CUDA_EMU := check-cuda-emu
endif
endif

ifneq ($(NVCC),)
CUDA_SRC  := $(sort $(wildcard kernels/cuda/*.cu))
CUDA_OBJ  := $(CUDA_SRC:%.cu=$(BUILD)/%.o)
ifneq ($(CUDA_SRC),)
CPPFLAGS  += -DQC_HAVE_CUDA=1
# the CUDA runtime is static and cuBLAS/cuSOLVER are opened at the first CUDA
# context (kernels/cuda/qk_cuda.h): a tool loads none of them to run on the
# CPU; the run path is where they are found. The CUDA objects are C++.
LIBS      += -L$(CUDA_TOOLKIT)/lib64 -Wl,-rpath,$(CUDA_TOOLKIT)/lib64 -lcudart_static -ldl -lrt -lstdc++
endif
endif

TOOL_SRC  := $(sort $(wildcard tools/q*.c))
TOOLS     := $(TOOL_SRC:tools/%.c=$(BUILD)/bin/%)
TOOL_UTIL := $(filter-out $(TOOL_SRC),$(wildcard tools/*.c))
TOOL_UOBJ := $(TOOL_UTIL:%.c=$(BUILD)/%.o)
UNIT_SRC  := $(sort $(wildcard tests/unit/test_*.c))
UNITS     := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
UNIT_UTIL := $(filter-out $(UNIT_SRC),$(wildcard tests/unit/*.c))
UNIT_UOBJ := $(UNIT_UTIL:%.c=$(BUILD)/%.o)
BENCH_SRC := $(sort $(wildcard tests/bench/bench_*.c))
BENCHES   := $(BENCH_SRC:tests/bench/%.c=$(BUILD)/bench/%)
BENCH_UTIL := $(filter-out $(BENCH_SRC),$(wildcard tests/bench/*.c))
BENCH_UOBJ := $(BENCH_UTIL:%.c=$(BUILD)/%.o)
DEPS_OK   := $(BUILD)/.deps-ok

.PHONY: all check check-headers check-layers check-lint check-unit check-cli demo deps bench check-docs install clean
.PHONY: check-cuda-emu check-cuda-emu-tools cuda-tests cuda-check cuda-bench
all: $(TOOLS)

# ---- dependencies: installed by the project itself (scripts/deps.sh) ----
deps:
	@sh scripts/deps.sh install
$(DEPS_OK): scripts/deps.sh
	@mkdir -p $(@D)
	@sh scripts/deps.sh ensure
	@touch $@

# ---- library, kernels, tools ----
$(BUILD)/%.o: %.c config.mk Makefile | $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

# the bundled public-domain text, compiled in (qsynth trains its tokenizer on it)
$(BUILD)/gen/corpus.c: calib/public-domain.txt scripts/embed.sh
	@mkdir -p $(@D)
	sh scripts/embed.sh qc_builtin_corpus calib/public-domain.txt >$@.tmp && mv $@.tmp $@

$(BUILD)/gen/corpus.o: $(BUILD)/gen/corpus.c config.mk Makefile
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.cu config.mk Makefile | $(DEPS_OK)
	@mkdir -p $(@D)
	$(NVCC) $(NVCCFLAGS) -c -o $@ $<

$(LIB): $(LIB_OBJ) $(CUDA_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/bin/%: $(BUILD)/tools/%.o $(TOOL_UOBJ) $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(TOOL_UOBJ) $(LIB) $(LIBS)

# libyaml: only what parses recipes (libcommon/recipe) links it
YAML_LIBS = -lyaml
$(BUILD)/bin/qrecipe $(BUILD)/tests/test_recipe: LIBS += $(YAML_LIBS)

# ---- tests ----
$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(UNIT_UOBJ) $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(UNIT_UOBJ) $(LIB) $(LIBS) -lcmocka

$(BUILD)/bench/%: $(BUILD)/tests/bench/%.o $(BENCH_UOBJ) $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(BENCH_UOBJ) $(LIB) $(LIBS)

check: check-headers check-layers check-lint check-unit check-cli check-docs $(CHECK_CUDA_EMU) check-fuzz $(BENCHES)

# every header compiles on its own (git's hdr-check)
HEADERS := $(sort $(foreach l,$(LAYERS),$(wildcard libcommon/$(l)/*.h)) $(wildcard kernels/*.h tools/*.h))
check-headers: | $(DEPS_OK)
	@for h in $(HEADERS); do \
		printf '#include "%s"\n' "$${h##*/}" | \
		$(CC) $(CPPFLAGS) $(CSTD) $(WARN) -Werror -fsyntax-only -x c - || exit 1; \
	done; echo "check-headers: ok ($(words $(HEADERS)) headers)"

# no layer of libcommon includes a layer above it (libcommon/README.md)
check-layers:
	@sh scripts/check-layers.sh

# no loop in the shell tests loses its failures in an && list (scripts/lint-tests.sh)
check-lint:
	@sh scripts/lint-tests.sh

# the tests of code that drives the kernels run a second time with device
# memory guarded: a host access to it outside a kernel call faults (kernels.h)
KMEM_UNITS := $(filter %/test_kernels %/test_model %/test_decode %/test_tasks %/test_walk %/test_metrics %/test_verify %/test_fp8 %/test_smooth %/test_ctq %/test_qrun %/test_gptq %/test_awq,$(UNITS))

check-unit: $(UNITS)
	@QC_SHARED_DATA=$(QC_TEST_VECTORS) sh tests/run-unit.sh $(UNITS)
	@QK_DEBUG_MEMORY=1 QC_SHARED_DATA=$(QC_TEST_VECTORS) sh tests/run-unit.sh $(KMEM_UNITS)

# the fault-injection shim of t1630 (LD_PRELOAD; never sanitized: it sits
# in front of the sanitizer's own interceptors)
FAULT_SHIM := $(BUILD)/tests/libqfault.so
$(FAULT_SHIM): tests/fault/qfault.c config.mk Makefile
	@mkdir -p $(@D)
	$(CC) -shared -fPIC -O1 -g $(WARN) -o $@ $< -ldl

check-cli: $(TOOLS) $(FAULT_SHIM)
	@QBIN=$(abspath $(BUILD)/bin) QC_SHARED_DATA=$(QC_TEST_VECTORS) QC_SANITIZE=$(SANITIZE) \
	  prove --timer -j2 tests/cli/t*.sh

check-docs:
	@sh scripts/check-docs.sh $(TOOL_SRC)

bench: $(BENCHES) $(TOOLS)

demo: $(TOOLS)
	@QBIN=$(abspath $(BUILD)/bin) DEMO_DIR=$(abspath $(BUILD)/demo) sh scripts/demo.sh

install: $(TOOLS)
	mkdir -p $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANPREFIX)/man1 $(DESTDIR)$(MANPREFIX)/man5
	cp -f $(TOOLS) $(DESTDIR)$(PREFIX)/bin/
	cp -f man/*.1 $(DESTDIR)$(MANPREFIX)/man1/
	cp -f man/*.5 $(DESTDIR)$(MANPREFIX)/man5/

clean:
	rm -rf build build-san build-fuzz

# ---- fuzzing (tests/fuzz/README) ----
FUZZ_SRC  := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZERS   := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)
SECONDS   ?= 60
.PHONY: fuzz fuzz-targets fuzz-run check-fuzz

# the targets and the library are built by a make of their own with FUZZ=1
# (clang objects in build-fuzz/, whatever BUILD the caller gave), when
# clang's libFuzzer runtime exists
fuzz:
	@if sh tests/fuzz/run.sh probe; then $(MAKE) --no-print-directory FUZZ=1 BUILD=build-fuzz fuzz-targets; \
	else echo "fuzz: skipped: $(FUZZ_CC) with libFuzzer (clang, libclang-rt-dev) not found"; fi

fuzz-targets: $(FUZZERS)

$(BUILD)/fuzz/%: $(BUILD)/tests/fuzz/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $< $(LIB) $(LIBS)
$(BUILD)/fuzz/fuzz_recipe: LIBS += $(YAML_LIBS)

fuzz-run: fuzz $(TOOLS)
	@QBIN=$(abspath build/bin) sh tests/fuzz/run.sh run $(SECONDS) build-fuzz/fuzz

# a smoke test: every target a few seconds on its corpus (and the corpus is
# replayed, so every regression input runs)
check-fuzz: fuzz $(TOOLS)
	@QBIN=$(abspath $(BUILD)/bin) sh tests/fuzz/run.sh check 3 build-fuzz/fuzz

# ---- CUDA: tests and benchmarks (tests/cuda), the emulator (doc/cuda.md) ----
CUDA_TEST_SRC := $(sort $(wildcard tests/cuda/*.c))
CUDA_TESTS    := $(CUDA_TEST_SRC:tests/cuda/%.c=$(BUILD)/cuda/%)

$(BUILD)/cuda/%: $(BUILD)/tests/cuda/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $< $(LIB) $(LIBS)

cuda-tests: $(CUDA_TESTS)

cuda-check:
	@sh scripts/cuda-check.sh

cuda-bench:
	@sh scripts/cuda-bench.sh

# The emulator: kernels/cuda compiled by the host C++ compiler against
# tests/cuda/emu, with the CPU library's objects in an archive of their own
# (the library may hold the real CUDA objects) and a dispatch that has the
# CUDA table. Run twice: as is, and with every blocked loop cut small.
EMU_DIR      := $(BUILD)/emu
EMU_OBJ      := $(patsubst kernels/cuda/%.cu,$(EMU_DIR)/%.o,$(sort $(wildcard kernels/cuda/*.cu)))
EMU_CXXFLAGS  = -std=c++17 -O1 -g -Wall -Wextra -Wno-unused-parameter -ffp-contract=off \
                -U_FORTIFY_SOURCE -DQK_CUDA_EMU -MMD -MP

$(EMU_DIR)/%.o: kernels/cuda/%.cu config.mk Makefile | $(DEPS_OK)
	@mkdir -p $(@D)
	$(CXX) -x c++ $(EMU_CXXFLAGS) $(LAYERS:%=-Ilibcommon/%) -Ikernels -Itests/cuda/emu -c -o $@ $<

$(EMU_DIR)/cuda_emu.o: tests/cuda/emu/cuda_emu.cc config.mk Makefile
	@mkdir -p $(@D)
	$(CXX) $(EMU_CXXFLAGS) -Itests/cuda/emu -c -o $@ $<

$(EMU_DIR)/qk_dispatch.o: kernels/qk_dispatch.c config.mk Makefile | $(DEPS_OK)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -DQC_HAVE_CUDA=1 -c -o $@ $<

$(EMU_DIR)/libcpu.a: $(filter-out $(BUILD)/kernels/qk_dispatch.o,$(LIB_OBJ))
	@rm -f $@
	ar rcs $@ $^

$(EMU_DIR)/test_cuda: $(BUILD)/tests/cuda/test_cuda.o $(EMU_DIR)/qk_dispatch.o $(EMU_OBJ) \
                      $(EMU_DIR)/cuda_emu.o $(EMU_DIR)/libcpu.a
	$(CXX) $(LDFLAGS) -o $@ $^ $(EMU_LIBS)

check-cuda-emu: $(EMU_DIR)/test_cuda
	@sh tests/cuda/emu/run.sh $(EMU_DIR)

# the tools with --device cuda on the emulator against --device cpu
EMU_TOOLS := qsynth qcalib qgptq qfp8 qsmooth qverify

$(EMU_DIR)/bin/%: $(BUILD)/tools/%.o $(TOOL_UOBJ) $(EMU_DIR)/qk_dispatch.o $(EMU_OBJ) \
                  $(EMU_DIR)/cuda_emu.o $(EMU_DIR)/libcpu.a
	@mkdir -p $(@D)
	$(CXX) $(LDFLAGS) -o $@ $^ $(EMU_LIBS)

check-cuda-emu-tools: $(EMU_TOOLS:%=$(EMU_DIR)/bin/%)
	@sh tests/cuda/emu/tools.sh $(EMU_DIR)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
.SECONDARY:
