# raktn - build, test, fuzz, bench.
#   make            build ./raktn (libc + libm only)
#   make test       build and run the Check test suite
#   make test-asan  the same suite under AddressSanitizer + UBSan
#   make demo       generate a small checkpoint, export it and run it end to end
CC      ?= cc
# -march=native where the compiler has it (SIMD matmul), plain -O3 elsewhere.
NATIVE  := $(shell $(CC) -march=native -E -x c /dev/null >/dev/null 2>&1 && echo -march=native)
CFLAGS  ?= -O3 $(NATIVE)
CFLAGS  += -std=c11 -Wall -Wextra -Wno-unused-parameter -Wno-unknown-pragmas -D_POSIX_C_SOURCE=200809L
LDLIBS  = -lm
PYTHON  ?= python3
CHECK_LIBS := $(shell pkg-config --libs check 2>/dev/null || echo -lcheck -lsubunit -lrt -lm -pthread)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)

# OpenMP threads (matmul rows, attention heads) are used when the compiler
# supports -fopenmp; `make OMP=0` builds without (single-threaded, same
# results). `override` keeps it when CFLAGS is given on the command line.
OMP     ?= $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo 1 || echo 0)
ifeq ($(OMP),1)
override CFLAGS += -fopenmp
endif

TESTS = tests/test_model tests/test_sample tests/test_tokenizer tests/test_cli tests/test_robust

.PHONY: all test test-asan demo clean fixtures-data
all: raktn

raktn: raktn.c tokenizer.c tokenizer.h
	$(CC) $(CFLAGS) -o $@ raktn.c tokenizer.c $(LDLIBS)

# Test programs #include the code they test (like llm.c's test_gpt2.c);
# test_model and test_sample include raktn.c and link tokenizer.c beside it.
tests/test_model tests/test_sample: tests/%: tests/%.c tests/testutil.h raktn.c tokenizer.c tokenizer.h
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -o $@ $< tokenizer.c $(LDLIBS) $(CHECK_LIBS)

tests/test_%: tests/test_%.c tests/testutil.h tests/testrun.h raktn.c tokenizer.c tokenizer.h
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -o $@ $< $(LDLIBS) $(CHECK_LIBS)

# Checkpoints the tests run on are generated (deterministically) rather than
# committed; tests/prepare.sh makes them under tests/work and verifies hashes.
fixtures-data: raktn
	PYTHON=$(PYTHON) sh tests/prepare.sh

test: raktn $(TESTS) fixtures-data
	@PYTHON=$(PYTHON) sh tests/run.sh $(TESTS)

test-asan:
	$(MAKE) clean
	$(MAKE) test CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all"
	$(MAKE) clean

# Batched prompt vs token-by-token through the same forward pass, one run.
bench/prefill_vs_token: bench/prefill_vs_token.c raktn.c tokenizer.c tokenizer.h
	$(CC) $(CFLAGS) -o $@ $< tokenizer.c $(LDLIBS)

# A whole run from a fresh clone with nothing to download: a small random-
# weight Mistral checkpoint with the RakutenAI-like 48k tokenizer, exported
# and run (its text is gibberish: the weights are random, the pipeline real).
demo: raktn
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

clean:
	rm -f raktn $(TESTS)

# Fuzzing (libFuzzer, clang) and the fuzz regression run live in fuzz/fuzz.mk.
-include fuzz/fuzz.mk
