# fuzz/fuzz.mk - included by the Makefile.
#
#   make fuzz           build the libFuzzer harnesses with clang and run each
#                       for FUZZ_SECONDS (default 600) on one core; crashes go
#                       to fuzz/bin/crash-HARNESS-*, the growing corpus to
#                       fuzz/bin/corpus-HARNESS (seeded from fuzz/corpus/HARNESS)
#   make fuzz-build     only build them
#   make fuzz-regress   replay fuzz/corpus/* and fuzz/regress/* through the same
#                       harnesses with $(CC) and a plain-C driver (no libFuzzer),
#                       with this build's CFLAGS (ASan+UBSan under test-asan)
#
# Harnesses: fuzz_model (model.bin loader + a forward pass and the sampler on
# what loads), fuzz_tokenizer (tokenizer.bin loader + encode/decode/stream on
# what loads), fuzz_encode (encode/decode/stream on the real vocabularies in
# tests/work/tok; FUZZ_TOKENIZERS overrides).

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 600
FUZZ_FLAGS   = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
               -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Wno-unused-parameter -Wno-unused-function
FUZZ_HARNESSES = model tokenizer encode
FUZZ_SRC_model = raktn.c tokenizer.c tokenizer.h
FUZZ_SRC_tokenizer = tokenizer.c tokenizer.h
FUZZ_SRC_encode = tokenizer.c tokenizer.h
# fuzz_model #includes raktn.c, which calls into tokenizer.c: link it beside
FUZZ_LINK_model = tokenizer.c

.PHONY: fuzz fuzz-build fuzz-regress fuzz-clean
.SECONDEXPANSION:
fuzz-build: $(FUZZ_HARNESSES:%=fuzz/bin/fuzz_%)

fuzz/bin/fuzz_%: fuzz/fuzz_%.c $$(FUZZ_SRC_$$*)
	@mkdir -p fuzz/bin
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ $< $(FUZZ_LINK_$*) -lm


# One harness at a time, one process each (the machine is shared).
fuzz: fuzz-build fixtures-data
	@set -e; for h in $(FUZZ_HARNESSES); do \
	  mkdir -p fuzz/bin/corpus-$$h; \
	  echo "== fuzz_$$h for $(FUZZ_SECONDS)s (log: fuzz/bin/fuzz_$$h.log)"; \
	  ./fuzz/bin/fuzz_$$h -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=4096 \
	    -print_final_stats=1 -artifact_prefix=fuzz/bin/crash-$$h- \
	    fuzz/bin/corpus-$$h fuzz/corpus/$$h > fuzz/bin/fuzz_$$h.log 2>&1 || { \
	    tail -40 fuzz/bin/fuzz_$$h.log; echo "fuzz_$$h: FOUND A CRASH (fuzz/bin/crash-$$h-*)"; exit 1; }; \
	  grep -E "stat::number_of_executed_units|stat::peak_rss_mb" fuzz/bin/fuzz_$$h.log; \
	  grep -E "^#[0-9]+ +DONE" fuzz/bin/fuzz_$$h.log | tail -1; \
	done

# The regression replay (run by `make test`).
fuzz/bin/replay_%: fuzz/fuzz_%.c fuzz/driver.c $$(FUZZ_SRC_$$*)
	@mkdir -p fuzz/bin
	$(CC) $(CFLAGS) -Wno-unused-function -o $@ $< fuzz/driver.c $(FUZZ_LINK_$*) $(LDLIBS)

fuzz-regress: $(FUZZ_HARNESSES:%=fuzz/bin/replay_%) fixtures-data
	@set -e; for h in $(FUZZ_HARNESSES); do \
	  printf "  fuzz_%-10s " $$h; \
	  ./fuzz/bin/replay_$$h fuzz/corpus/$$h $$( [ -d fuzz/regress/$$h ] && echo fuzz/regress/$$h ); done

fuzz-clean:
	rm -f $(FUZZ_HARNESSES:%=fuzz/bin/replay_%) $(FUZZ_HARNESSES:%=fuzz/bin/fuzz_%)

# `make clean` (which test-asan runs first) also drops the replay binaries,
# so they are rebuilt with the sanitizer flags.
clean: fuzz-clean

# `make test` replays the corpus and the regressions too (after the
# fixtures, which fuzz_encode's vocabularies come from).
test: fuzz-regress
