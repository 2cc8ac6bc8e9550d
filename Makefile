# raktn - build, test, fuzz, bench.
#   make            build ./raktn (libc + libm only)
#   make plain      build ./raktn-plain: the model part of raktn.c alone
#                   (-DRAKTN_PLAIN: plain C, no vectors, no threads; needs
#                   nothing but a C compiler; make test runs its tests)
#   make debug      build ./raktn-debug: the plain build at -O0 -g, to step
#                   through the model in gdb (notes/model.md)
#   make truth      build ./raktn-truth: the plain build with every quantity
#                   in double (the model's exact math; writes float64)
#   make test       build and run the Check test suite (the plain and truth
#                   builds too)
#   make test-asan  the same suite under AddressSanitizer + UBSan
#   make cross      static builds for aarch64, armhf, i686, s390x run under
#                   qemu-user against the fixtures (tests/cross.sh)
#   make demo       a trained model (stories260K) tells a story and explain
#                   walks it (demo/explain.html), then the 48k pipeline end to end
#   make install    copy raktn (and export/) under PREFIX (/usr/local), DESTDIR
# GNU make. Conventions: CFLAGS (yours come last), CPPFLAGS, LDFLAGS, LDLIBS
# (added to, -lm -pthread kept); make -f PATH/Makefile builds raktn,
# raktn-plain, raktn-truth from another folder, into that folder.
SRC     := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))
ifneq ($(SRC),.)
vpath %.c $(SRC)
vpath %.h $(SRC)
endif
CC      ?= cc
# -march=native for a native build whose compiler takes it (the vector
# kernels then use what this CPU has); never for a cross compiler, whose
# target is not this machine (its -dumpmachine names another architecture).
# (uname and the compiler name some machines differently: amd64 is x86_64)
arch_name = $(patsubst amd64,x86_64,$(patsubst arm64,aarch64,$(1)))
HOST_ARCH := $(call arch_name,$(shell uname -m))
CC_ARCH := $(call arch_name,$(shell $(CC) -dumpmachine 2>/dev/null | cut -d- -f1))
NATIVE  := $(if $(filter $(HOST_ARCH),$(CC_ARCH)),$(shell $(CC) -march=native -x c -c /dev/null -o /dev/null 2>/dev/null && echo -march=native))
CFLAGS  ?= -O3 $(NATIVE)
# what the code needs, kept whatever CFLAGS says (the sources name the
# system interfaces they use themselves: -D_POSIX_C_SOURCE would hide BSD's)
REQ_CFLAGS := -std=c11 -Wall -Wextra
# GCC for aarch64 keeps the prefill tile's 24 accumulators (6 rows x 4
# registers) in memory unless its scalar replacement may take an aggregate
# that large: a store and a load per multiply-add (seen in its assembly)
ifneq ($(filter aarch64 arm64,$(CC_ARCH)),)
ifeq ($(shell $(CC) -x c -E -dM /dev/null 2>/dev/null | grep -c __clang__),0)
REQ_CFLAGS += --param=sra-max-scalarization-size-Ospeed=4096
endif
endif
override CFLAGS := $(REQ_CFLAGS) $(CPPFLAGS) $(CFLAGS)
override LDLIBS += -lm -pthread
PYTHON  ?= python3
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm -pthread)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)

# the plain build: Part 1 of raktn.c does all the computing
PLAIN_CFLAGS := $(CFLAGS) -DRAKTN_PLAIN
TRUTH_CFLAGS := $(PLAIN_CFLAGS) -DRAKTN_TRUTH

TESTS = tests/test_model tests/test_sample tests/test_tokenizer tests/test_cli tests/test_robust tests/test_model_plain tests/test_truth
# what tests/test_robust.c runs besides ./raktn: a shim that sends SIGINT
# between two renames, and raktn built with -ffast-math (its checks must hold)
ROBUST_AIDS = tests/rename_shim.so tests/raktn-fast-math

.PHONY: all plain debug truth cross test test-asan demo demo-story demo-48k clean fixtures-data llama-dump install uninstall
all: raktn export/gguf_dequant.so

# GGUF export's dequantization in C (export/gguf.py loads it with ctypes; it
# computes the same bytes in Python without it, ~100x slower). Its own flags:
# a sanitized library could not be loaded into Python.
export/gguf_dequant.so: export/gguf_dequant.c
	$(CC) -O2 -std=c11 -Wall -Wextra -shared -fPIC -o $@ $< -lm

raktn: raktn.c tokenizer.c tokenizer.h
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $(filter %.c,$^) $(LDLIBS)

raktn-plain: raktn.c tokenizer.c tokenizer.h
	$(CC) $(PLAIN_CFLAGS) $(LDFLAGS) -o $@ $(filter %.c,$^) $(LDLIBS)

raktn-truth: raktn.c tokenizer.c tokenizer.h
	$(CC) $(TRUTH_CFLAGS) $(LDFLAGS) -o $@ $(filter %.c,$^) $(LDLIBS)

# Part 1 unoptimized, every function of it a function gdb can stop in
DEBUG_CFLAGS ?= -O0 -g
raktn-debug: raktn.c tokenizer.c tokenizer.h
	$(CC) $(REQ_CFLAGS) $(CPPFLAGS) $(DEBUG_CFLAGS) -DRAKTN_PLAIN $(LDFLAGS) -o $@ $(filter %.c,$^) $(LDLIBS)

debug: raktn-debug

PREFIX  ?= /usr/local
BINDIR  ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share/raktn
# the exporter and the verification tools import each other: all of export/
EXPORT_PY = export.py tokenizer_export.py gguf.py compare.py reference.py
install: raktn export/gguf_dequant.so
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)/export
	install -m 755 raktn $(DESTDIR)$(BINDIR)/raktn
	install -m 644 $(addprefix $(SRC)/export/,$(EXPORT_PY)) $(DESTDIR)$(DATADIR)/export/
	install -m 755 export/gguf_dequant.so $(DESTDIR)$(DATADIR)/export/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/raktn $(addprefix $(DESTDIR)$(DATADIR)/export/,$(EXPORT_PY) gguf_dequant.so)
	-rmdir $(DESTDIR)$(DATADIR)/export $(DESTDIR)$(DATADIR)

truth: raktn-truth

plain: raktn-plain

# Test programs #include the code they test (like llm.c's test_gpt2.c);
# test_model and test_sample include raktn.c and link tokenizer.c beside it.
tests/test_model tests/test_sample: tests/%: tests/%.c tests/testutil.h raktn.c tokenizer.c tokenizer.h
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -o $@ $< tokenizer.c $(LDLIBS) $(CHECK_LIBS)

tests/test_truth: tests/test_truth.c tests/testutil.h raktn.c tokenizer.c tokenizer.h
	$(CC) $(TRUTH_CFLAGS) $(CHECK_CFLAGS) -o $@ $< tokenizer.c $(LDLIBS) $(CHECK_LIBS)

tests/test_model_plain: tests/test_model.c tests/testutil.h raktn.c tokenizer.c tokenizer.h
	$(CC) $(PLAIN_CFLAGS) $(CHECK_CFLAGS) -o $@ $< tokenizer.c $(LDLIBS) $(CHECK_LIBS)

tests/test_%: tests/test_%.c tests/testutil.h tests/testrun.h raktn.c tokenizer.c tokenizer.h
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -o $@ $< $(LDLIBS) $(CHECK_LIBS)

tests/rename_shim.so: tests/rename_shim.c
	$(CC) -shared -fPIC -O1 -o $@ $< -ldl

tests/raktn-fast-math: raktn.c tokenizer.c tokenizer.h
	$(CC) $(CFLAGS) -ffast-math $(LDFLAGS) -o $@ $(filter %.c,$^) $(LDLIBS)

# Checkpoints the tests run on are generated (deterministically) rather than
# committed; tests/prepare.sh makes them under tests/work and verifies hashes.
fixtures-data: raktn
	PYTHON=$(PYTHON) sh tests/prepare.sh

test: raktn raktn-plain raktn-truth export/gguf_dequant.so $(TESTS) $(ROBUST_AIDS) fixtures-data
	@PYTHON=$(PYTHON) sh tests/run.sh $(TESTS)

test-asan:
	$(MAKE) clean
	$(MAKE) test CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
	$(MAKE) clean

cross: raktn fixtures-data demo
	sh tests/cross.sh

# Batched prompt vs token-by-token through the same forward pass, one run.
bench/prefill_vs_token: bench/prefill_vs_token.c raktn.c tokenizer.c tokenizer.h
	$(CC) $(CFLAGS) -o $@ $< tokenizer.c $(LDLIBS)

# A whole run from a fresh clone with nothing to download. First a model
# that has learned something: stories260K (models/stories260K, llama2.c's
# TinyStories model as a Mistral checkpoint) tells a story, greedy, then
# explain walks the prompt through it (demo/explain.html: the page). Then the
# RakutenAI pipeline at small scale: a random-weight Mistral checkpoint with
# the RakutenAI-like 48k tokenizer, exported, tokenized, generated from,
# chatted with (gibberish: its weights are random, the pipeline is real).
demo: demo-story demo-48k

demo-story: raktn
	@mkdir -p demo
	$(PYTHON) export/export.py --quiet models/stories260K demo/stories260K
	./raktn demo/stories260K/model.bin -i "Once upon a time" -n 100 -t 0
	./raktn demo/stories260K/model.bin -m explain -i "Once upon a time" --json demo/explain.json --html demo/explain.html
	@echo "demo: the page is demo/explain.html (open it in a browser); the numbers are in demo/explain.json"

demo-48k: raktn
	@mkdir -p demo
	$(PYTHON) tests/make_checkpoint.py demo/hf --hidden 128 --layers 4 --heads 8 --kv-heads 2 \
	    --intermediate 384 --vocab 48000 --sliding-window 64 --dtype bf16 --seed 11 --std 0.1
	$(PYTHON) -c 'import gzip,shutil; shutil.copyfileobj(gzip.open("tests/tokenizer/rakuten48k/tokenizer.json.gz"), open("demo/hf/tokenizer.json","wb"))'
	cp tests/tokenizer/rakuten48k/tokenizer_config.json demo/hf/
	$(PYTHON) export/export.py demo/hf demo/model
	./raktn demo/model/model.bin -m tokenize -z demo/model/tokenizer.bin -i "楽天は東京に本社を置く企業です。"
	./raktn demo/model/model.bin -i "日本の首都は" -n 24 -s 1
	echo "What is the capital of Japan?" | ./raktn demo/model/model.bin -m chat -n 16 -t 0
	./raktn demo/model/model.bin -m logits -i "Hello, world" --top 3

# llama-dump (tools/llama-dump.c): llama.cpp's graph nodes as .npy for
# export/compare.py. Built only on request, against your llama.cpp checkout
# after its cmake build (static: -DBUILD_SHARED_LIBS=OFF, or shared):
#   make llama-dump LLAMA_CPP=~/llama.cpp [LLAMA_BUILD=~/llama.cpp/build]
# Written for llama.cpp c392e509 (b4748); the commit it is built against is
# recorded in each dump's dump.json.
LLAMA_BUILD ?= $(LLAMA_CPP)/build
CXX ?= c++
llama-dump: tools/llama-dump.c
	@if [ -z "$(LLAMA_CPP)" ] || [ ! -f "$(LLAMA_CPP)/include/llama.h" ]; then \
	  echo "llama-dump: give LLAMA_CPP=DIR, a llama.cpp checkout (DIR/include/llama.h) built with cmake:"; \
	  echo "  cmake -S DIR -B DIR/build -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF && cmake --build DIR/build --target llama"; \
	  echo "  make llama-dump LLAMA_CPP=DIR"; exit 1; fi
	@B="$(LLAMA_BUILD)"; \
	if [ -f "$$B/src/libllama.a" ]; then \
	  LIBS="$$B/src/libllama.a $$B/ggml/src/libggml.a $$B/ggml/src/libggml-cpu.a $$B/ggml/src/libggml-base.a -fopenmp"; \
	elif [ -f "$$B/bin/libllama.so" ]; then \
	  LIBS="-L$$B/bin -Wl,-rpath,$$B/bin -lllama -lggml -lggml-base"; \
	else echo "llama-dump: no libllama.a or libllama.so under $$B (build llama.cpp with cmake first, or give LLAMA_BUILD=)"; exit 1; fi; \
	COMMIT=$$(git -C "$(LLAMA_CPP)" rev-parse HEAD 2>/dev/null || echo unknown); \
	echo "llama-dump: building against llama.cpp $$COMMIT"; \
	$(CC) -O2 -std=c11 -Wall -Wextra -D_POSIX_C_SOURCE=200809L -DLLAMA_CPP_COMMIT="\"$$COMMIT\"" \
	  -I"$(LLAMA_CPP)/include" -I"$(LLAMA_CPP)/ggml/include" -c tools/llama-dump.c -o tools/llama-dump.o && \
	$(CXX) -o $@ tools/llama-dump.o $$LIBS -lm -pthread && rm -f tools/llama-dump.o

clean:
	rm -f raktn raktn-plain raktn-truth raktn-debug export/gguf_dequant.so $(TESTS) $(ROBUST_AIDS)

# Fuzzing (libFuzzer, clang) and the fuzz regression run live in fuzz/fuzz.mk.
-include fuzz/fuzz.mk
