# sam3d - one Makefile for everything (llm.c style).
#
#   make                 all stages, the orchestrator and the tests, into build/
#   make CUDA_ARCH=90    narrow the GPU targets for a quick build (default: 80 86 89 90 + PTX)
#   make install         the executables into $(DESTDIR)$(PREFIX)/bin, the pipeline files into
#                        $(DESTDIR)$(PREFIX)/share/sam3d/pipelines (PREFIX default /usr/local)
#   make test            build, then run every test (GPU tests skip without a GPU)
#   make test-gpu        every test program, verbose, a skip counts as a failure (GPU machine)
#   make test-sanitize   ASan + UBSan build of the unit tests, then run them
#   make fuzz            each fuzz target for FUZZ_SECONDS (libFuzzer, clang)
#   make dev             kernel workshops in kernels/dev (GPU benches)
#   make demo            install missing packages, build, run the example
#   make deps            install the Debian packages the build needs

BUILD      ?= build
CUDA_HOME  ?= /usr/local/cuda
NVCC       ?= $(CUDA_HOME)/bin/nvcc
CC         ?= gcc
# sm_80 (A100) and up: every architecture the kernels support (kernels/README.md); the PTX
# of the last one lets newer GPUs JIT-compile
CUDA_ARCH  ?= 80 86 89 90
PREFIX     ?= /usr/local
DESTDIR    ?=
FUZZ_SECONDS ?= 30

# every listed arch as SASS, plus PTX of the newest so later GPUs can JIT it
GENCODE := $(foreach a,$(CUDA_ARCH),-gencode arch=compute_$(a),code=sm_$(a)) \
           -gencode arch=compute_$(lastword $(CUDA_ARCH)),code=compute_$(lastword $(CUDA_ARCH))

SAN_FLAGS ?=
INCLUDES := -Icommon -Ikernels -Istages -I$(CUDA_HOME)/include
CFLAGS   := -std=c11 -O2 -g -Wall -Wextra -Werror -MMD -MP -D_GNU_SOURCE $(INCLUDES) $(SAN_FLAGS)
# .cu files are not instrumented under SAN_FLAGS: their host code is thin launchers, and
# the sanitizer runs (make test-sanitize) happen where no GPU executes them
NVFLAGS  := -std=c++17 -O3 -g -lineinfo $(GENCODE) -MMD -MP $(INCLUDES) -Xcompiler -Wall,-Wextra,-Werror
LDLIBS   := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcudnn -lcublasLt -lcublas -lcudart \
            -lzmq -lmsgpackc -lpng -ljpeg -lstdc++ -lpthread -lm
LDFLAGS  := $(SAN_FLAGS)

# ---------------------------------------------------------------- sources
COMMON_SRC := $(wildcard common/*.c)
KCPU_SRC   := $(wildcard kernels/cpu/*.c)
KCUDA_SRC  := $(wildcard kernels/cuda/*.cu)
STAGE_DIRS := $(patsubst stages/%/,%,$(dir $(wildcard stages/*/main.c)))
# stages/<dir> without a main.c holds model code (stages/<name>_net, the shared ViT): it goes
# into the library, so every stage and test links it (stages/README.md)
MODEL_DIRS := $(filter-out $(STAGE_DIRS),$(patsubst stages/%/,%,$(sort $(dir $(wildcard stages/*/*.c stages/*/*.cu)))))
MODEL_SRC  := $(foreach d,$(MODEL_DIRS),$(wildcard stages/$(d)/*.c))
MODEL_CU   := $(foreach d,$(MODEL_DIRS),$(wildcard stages/$(d)/*.cu))
LIB_OBJ    := $(COMMON_SRC:%.c=$(BUILD)/%.o) $(KCPU_SRC:%.c=$(BUILD)/%.o) $(KCUDA_SRC:%.cu=$(BUILD)/%.o) \
              $(MODEL_SRC:%.c=$(BUILD)/%.o) $(MODEL_CU:%.cu=$(BUILD)/%.o)
LIB_OBJ    += $(BUILD)/gen/version.o
LIB        := $(BUILD)/libsam3d.a

STAGE_BINS := $(foreach s,$(STAGE_DIRS),$(BUILD)/sam3d-$(subst _,-,$(s)))
ORCH_SRC   := $(wildcard orchestrator/*.c)
ORCH_BIN   := $(BUILD)/sam3d

TEST_SUPPORT_SRC := $(filter-out tests/test_%.c,$(wildcard tests/*.c))
TEST_SUPPORT_OBJ := $(TEST_SUPPORT_SRC:%.c=$(BUILD)/%.o)
TEST_SRC   := $(wildcard tests/test_*.c)
TEST_BINS  := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TOOL_SRC   := $(wildcard tests/tools/*.c)
TOOL_BINS  := $(TOOL_SRC:tests/%.c=$(BUILD)/tests/%)
SO_SRC     := $(wildcard tests/tools/so/*.c)
SO_LIBS    := $(SO_SRC:tests/tools/so/%.c=$(BUILD)/tests/tools/lib%.so)
FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS  := $(FUZZ_SRC:tests/fuzz/%.c=$(BUILD)/fuzz/%)

.PHONY: all test test-gpu test-sanitize fuzz demo deps clean install uninstall
.SECONDARY:
all: $(STAGE_BINS) $(if $(ORCH_SRC),$(ORCH_BIN)) $(TEST_BINS) $(TOOL_BINS) $(SO_LIBS)

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/%.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -c $< -o $@

# Hopper's warpgroup MMA (wgmma) exists only as sm_90a code: this file is built for that
# target alone, whatever CUDA_ARCH says; its launcher runs it on compute capability 9.0 only
$(BUILD)/kernels/cuda/attention_wg.o: kernels/cuda/attention_wg.cu
	@mkdir -p $(@D)
	$(NVCC) $(filter-out -gencode arch=%,$(NVFLAGS)) -gencode arch=compute_90a,code=sm_90a -c $< -o $@

# the version string (common/version.h): rewritten only when `git describe` changes, so
# a rebuild relinks only when the tree's description does
GIT_DESCRIBE := $(shell git describe --always --dirty 2>/dev/null || echo unknown)
$(BUILD)/gen/version.c: FORCE
	@mkdir -p $(@D)
	@printf '#include "version.h"\nconst char *s3d_version(void)\n{\n    return S3D_VERSION " (git %s)";\n}\n' \
	    '$(GIT_DESCRIBE)' >$@.tmp
	@if cmp -s $@.tmp $@; then rm -f $@.tmp; else mv $@.tmp $@; fi

$(BUILD)/gen/version.o: $(BUILD)/gen/version.c
	$(CC) $(CFLAGS) -c $< -o $@

.PHONY: FORCE
FORCE:

$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

# one executable per stage directory: stages/ss_flow -> build/sam3d-ss-flow
define STAGE_RULE
$(BUILD)/sam3d-$(subst _,-,$(1)): $(patsubst %.c,$(BUILD)/%.o,$(wildcard stages/$(1)/*.c)) \
        $(patsubst %.cu,$(BUILD)/%.o,$(wildcard stages/$(1)/*.cu)) $(LIB)
	$$(CC) $$(LDFLAGS) $$^ $$(LDLIBS) -o $$@
endef
$(foreach s,$(STAGE_DIRS),$(eval $(call STAGE_RULE,$(s))))

$(ORCH_BIN): $(ORCH_SRC:%.c=$(BUILD)/%.o) $(LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(TEST_SUPPORT_OBJ) $(LIB)
	$(CC) $(LDFLAGS) $(filter-out $(LIB),$^) $(LIB) $(LDLIBS) -o $@

# tests/test_<stage>.c also links the other files of the stage's own directory (a stage whose
# small model code sits beside its main.c, e.g. gs_decode)
define STAGE_TEST_RULE
$(BUILD)/tests/test_$(1): $(patsubst %.c,$(BUILD)/%.o,$(filter-out stages/$(1)/main.c,$(wildcard stages/$(1)/*.c))) \
        $(patsubst %.cu,$(BUILD)/%.o,$(wildcard stages/$(1)/*.cu))
endef
$(foreach s,$(STAGE_DIRS),$(if $(wildcard tests/test_$(s).c),$(eval $(call STAGE_TEST_RULE,$(s)))))

# test-only programs (tests/tools/*.c, e.g. the echo stage) used by test scripts
$(BUILD)/tests/tools/%: $(BUILD)/tests/tools/%.o $(LIB)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# test-only shared libraries (tests/tools/so/*.c), e.g. the fake NVML of test_budget.sh
$(BUILD)/tests/tools/lib%.so: tests/tools/so/%.c
	@mkdir -p $(@D)
	$(CC) -std=c11 -O2 -g -Wall -Wextra -Werror -D_GNU_SOURCE -shared -fPIC $< -o $@

# ---------------------------------------------------------------- install
# sam3d finds the pipeline at <its directory>/../share/sam3d/pipelines (S3D_PIPELINE or
# --pipeline override it) and the stages next to itself; DESTDIR stages a package
PIPE_FILES := $(wildcard pipelines/*.pipe pipelines/*.needs)
install: $(STAGE_BINS) $(ORCH_BIN)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/sam3d/pipelines
	install -m 755 $(STAGE_BINS) $(ORCH_BIN) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(PIPE_FILES) $(DESTDIR)$(PREFIX)/share/sam3d/pipelines/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/bin/,$(notdir $(STAGE_BINS) $(ORCH_BIN)))
	rm -f $(addprefix $(DESTDIR)$(PREFIX)/share/sam3d/pipelines/,$(notdir $(PIPE_FILES)))
	-rmdir $(DESTDIR)$(PREFIX)/share/sam3d/pipelines $(DESTDIR)$(PREFIX)/share/sam3d

# ---------------------------------------------------------------- tests
test: all
	@tests/run_tests.sh $(BUILD)

test-gpu: all
	@S3D_REQUIRE_GPU=1 tests/run_tests.sh $(BUILD) gpu

test-sanitize:
	$(MAKE) BUILD=build-san SAN_FLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	    CUDA_ARCH="$(lastword $(CUDA_ARCH))" all
	ASAN_OPTIONS=protect_shadow_gap=0:detect_leaks=1:allocator_may_return_null=1 \
	    UBSAN_OPTIONS=print_stacktrace=1 S3D_SKIP_CLONE=1 tests/run_tests.sh build-san

# fuzz targets: clang + libFuzzer over the common/ sources (the stage library left
# out: it needs the op library, and no fuzz target drives it)
FUZZ_CC     ?= clang
FUZZ_CFLAGS := -std=c11 -g -O1 -D_GNU_SOURCE $(INCLUDES) -fsanitize=fuzzer,address,undefined
# (tests/zipbuild.c: the in-memory pickles and torch zips some targets build)
FUZZ_COMMON := $(filter-out common/stage%.c,$(COMMON_SRC))
$(BUILD)/fuzz/%: tests/fuzz/%.c $(FUZZ_COMMON) $(wildcard common/*.h) tests/zipbuild.c tests/zipbuild.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Itests $< $(FUZZ_COMMON) tests/zipbuild.c -o $@ $(LDLIBS)

fuzz: $(FUZZ_BINS)
	@tests/fuzz/run_fuzz.sh $(BUILD)/fuzz $(FUZZ_SECONDS)

# kernel workshops: kernels/dev/NAME.cu -> build/dev/NAME (GPU benches, run by hand)
DEV_SRC  := $(wildcard kernels/dev/*.cu)
DEV_BINS := $(DEV_SRC:kernels/dev/%.cu=$(BUILD)/dev/%)
$(BUILD)/dev/%: $(BUILD)/kernels/dev/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

.PHONY: dev
dev: $(DEV_BINS)

deps:
	@tools/install_deps.sh

demo: deps
	$(MAKE) all
	@tools/demo.sh $(BUILD)

clean:
	rm -rf $(BUILD) build-san

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
