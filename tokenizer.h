/* tokenizer.h - SentencePiece-style BPE for the RakutenAI-7B / Mistral family.
 *
 * Mirrors what Hugging Face's LlamaTokenizerFast (tokenizer.json, legacy
 * behaviour) returns for AutoTokenizer.from_pretrained(dir)(text).input_ids.
 * The file format of tokenizer.bin is described in notes/format.md.
 */
#ifndef RAKTN_TOKENIZER_H
#define RAKTN_TOKENIZER_H

#include <stddef.h>

typedef struct Tokenizer Tokenizer;

/* Load and validate tokenizer.bin. On failure returns NULL and writes a
 * one-line message (no trailing newline) into err[errlen]. */
Tokenizer *tokenizer_load(const char *path, char *err, size_t errlen);
void tokenizer_free(Tokenizer *t);

int tokenizer_vocab_size(const Tokenizer *t);
int tokenizer_bos_id(const Tokenizer *t);   /* -1 if none */
int tokenizer_eos_id(const Tokenizer *t);   /* -1 if none */
int tokenizer_add_bos(const Tokenizer *t);  /* from tokenizer_config.json */
int tokenizer_add_eos(const Tokenizer *t);  /* from tokenizer_config.json */
/* Longest piece in bytes (a bound for tokstream_push's output). */
size_t tokenizer_max_piece_bytes(const Tokenizer *t);
/* The piece string of id (e.g. "\xe2\x96\x81Hello", "<0x0A>", "<s>"), or NULL
 * if id is out of range. */
const char *tokenizer_piece(const Tokenizer *t, int id);

/* Encode len bytes of text (need not be NUL-terminated; may contain NUL and
 * invalid UTF-8, see notes/tokenizer.md). BOS is prepended when add_bos != 0
 * (callers pass tokenizer_add_bos(t) to match AutoTokenizer). On success
 * returns 0 and stores a malloc'd array in *ids (caller frees) and its length
 * in *n_ids. Returns -1 only when out of memory. */
int tokenizer_encode(const Tokenizer *t, const char *text, size_t len,
                     int add_bos, int **ids, size_t *n_ids);

/* Decode like HF tokenizer.decode(ids, skip_special_tokens=False): byte
 * fallback pieces are assembled into UTF-8, U+2581 becomes a space, and the
 * one leading space that encode added is removed. Returns a malloc'd
 * NUL-terminated string (*out_len bytes, not counting the NUL) or NULL when
 * out of memory or an id is outside the vocabulary. */
char *tokenizer_decode(const Tokenizer *t, const int *ids, size_t n_ids,
                       size_t *out_len);

/* Streaming decoder for generation: feed ids one at a time and get back only
 * complete UTF-8 text (a character split over byte-fallback tokens is held
 * back until its last byte arrives). `first` = 1 when the stream starts right
 * after BOS / at the start of a text (so the leading space is dropped as in
 * tokenizer_decode). */
typedef struct {
    const Tokenizer *t;
    int at_start;               /* drop the leading space of the next piece */
    unsigned char pending[8];   /* bytes of an incomplete UTF-8 character */
    int n_pending;
} TokenStream;

void tokstream_init(TokenStream *s, const Tokenizer *t, int first);
/* Append the text that id completes to out (at most cap-1 bytes plus a NUL;
 * cap >= tokenizer_max_piece_bytes(t) + 16 always suffices); returns the number of bytes
 * written. Unknown ids produce nothing. */
size_t tokstream_push(TokenStream *s, int id, char *out, size_t cap);
/* End of stream: emit pending incomplete bytes as U+FFFD each. */
size_t tokstream_flush(TokenStream *s, char *out, size_t cap);

#endif
