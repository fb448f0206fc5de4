/*
 * fuzz_body.c - libFuzzer target for the body canonicaliser
 * (csrc/body_encoder.c).
 *
 * The first input byte picks a fold width, an output buffer size (from
 * SMTP__BODY_EXPANSION to 64 KiB) and how the rest, the body, is cut
 * into chunks.  Each chunk and each output buffer is a heap buffer of
 * exactly its size, so the sanitizer sees any access past either.  Every
 * smtp__body_encode call must write within outcap, consume at least one
 * byte, and stop only when its input is used up or the room left is
 * under SMTP__BODY_EXPANSION.  The whole output must then keep the wire
 * rules: no bare CR or bare LF; every line starting with "." stuffed
 * (starting with "..") but the final "."; an end of "\r\n.\r\n", or
 * ".\r\n" alone for an empty body.  Un-stuffed, its lines must give the
 * body's canonical form, computed here independently (each CR LF, bare CR
 * and bare LF becomes CR LF, and CR LF ends the body): one output line
 * per body line without folding; with folding, a body line is cut into
 * non-empty pieces of exactly the fold width on the wire (two when a
 * stuffed piece meets a width of 1) but the last, which is no longer.
 * Any violation traps.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "body_encoder.h"

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond))                                                      \
            __builtin_trap();                                             \
    } while (0)

static const size_t fold_widths[16] = {
    0, 0, 0, 1, 2, 3, 4, 5, 7, 8, 16, 64, 76, 78, 998, 1000,
};
static const size_t out_sizes[4] = {
    SMTP__BODY_EXPANSION, SMTP__BODY_EXPANSION + 1, 11, 64 * 1024,
};
static const size_t chunk_sizes[4] = {
    0 /* the whole body */, 1, 3, 61,
};

struct bytes {
    char *p;
    size_t len;
    size_t cap;
};

static void append(struct bytes *b, const char *p, size_t n)
{
    CHECK(n <= b->cap - b->len);
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

/* The body's canonical form, without dot-stuffing or the end line. */
static void canonical(const char *in, size_t n, struct bytes *c)
{
    for (size_t i = 0; i < n; i++) {
        if (in[i] == '\r') {
            append(c, "\r\n", 2);
            if (i + 1 < n && in[i + 1] == '\n')
                i++;
        } else if (in[i] == '\n') {
            append(c, "\r\n", 2);
        } else {
            append(c, in + i, 1);
        }
    }
    if (c->len > 0 && c->p[c->len - 1] != '\n')
        append(c, "\r\n", 2);
}

/* The index of the next "\r\n" in p[from..n), or n when none. */
static size_t find_crlf(const char *p, size_t n, size_t from)
{
    for (size_t i = from; i + 1 < n; i++) {
        if (p[i] == '\r' && p[i + 1] == '\n')
            return i;
    }
    return n;
}

static void check_line_ends(const struct bytes *t)
{
    for (size_t i = 0; i < t->len; i++) {
        if (t->p[i] == '\r')
            CHECK(i + 1 < t->len && t->p[i + 1] == '\n');
        else if (t->p[i] == '\n')
            CHECK(i > 0 && t->p[i - 1] == '\r');
    }
}

/*
 * Checks the wire lines from t->p[*pos] on that carry the body line
 * line[0..n) and moves *pos past them.
 */
static void check_body_line(const struct bytes *t, size_t *pos,
                            const char *line, size_t n, size_t fold)
{
    size_t body_end = t->len - 3; /* the final ".\r\n" */
    size_t done = 0;

    /* Each piece carries at least one byte, or is an empty line's. */
    for (size_t piece = 0; piece <= n; piece++) {
        size_t end = find_crlf(t->p, body_end, *pos);
        const char *p = t->p + *pos;
        size_t len = end - *pos;
        bool stuffed = len > 0 && p[0] == '.';

        CHECK(end < body_end);
        if (stuffed) {
            CHECK(len >= 2 && p[1] == '.');
            p++;
        }
        CHECK(len - stuffed <= n - done);
        CHECK(memcmp(p, line + done, len - stuffed) == 0);
        done += len - stuffed;
        *pos = end + 2;
        if (fold > 0)
            CHECK(len <= (fold > 2 ? fold : 2));
        if (done == n)
            return;
        /* A fold: only with a width, after a full piece. */
        CHECK(fold > 0 && len - stuffed > 0);
        CHECK(len == ((fold == 1 && stuffed) ? 2 : fold));
    }
    __builtin_trap();
}

static void check_output(const struct bytes *t, const struct bytes *c,
                         size_t fold)
{
    size_t pos = 0, cpos = 0;

    check_line_ends(t);
    if (c->len == 0) {
        CHECK(t->len == 3 && memcmp(t->p, ".\r\n", 3) == 0);
        return;
    }
    CHECK(t->len >= 5 && memcmp(t->p + t->len - 5, "\r\n.\r\n", 5) == 0);

    /* Each pass takes one body line of at least its CR LF. */
    for (size_t line = 0; line < c->len && cpos < c->len; line++) {
        size_t end = find_crlf(c->p, c->len, cpos);

        CHECK(end < c->len);
        check_body_line(t, &pos, c->p + cpos, end - cpos, fold);
        cpos = end + 2;
    }
    CHECK(cpos == c->len && pos == t->len - 3);
}

/* Feeds one chunk (an exact-size heap copy) until it is consumed. */
static void encode_chunk(struct smtp__body_encoder *enc, const char *in,
                         size_t n, char *out, size_t outcap,
                         struct bytes *t)
{
    char *chunk = malloc(n);
    size_t done = 0;

    CHECK(chunk != NULL);
    memcpy(chunk, in, n);
    /* Each call consumes at least one byte. */
    for (size_t call = 0; call < n && done < n; call++) {
        size_t used = 0;
        size_t w = smtp__body_encode(enc, chunk + done, n - done, &used,
                                     out, outcap);

        CHECK(w <= outcap);
        CHECK(used > 0 && used <= n - done);
        CHECK(used == n - done || outcap - w < SMTP__BODY_EXPANSION);
        append(t, out, w);
        done += used;
    }
    CHECK(done == n);
    free(chunk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct smtp__body_encoder enc;
    struct bytes t, c;
    const char *in;
    size_t n, fold, outcap, chunk;
    char *out, *end;

    if (size < 1)
        return 0;
    fold = fold_widths[data[0] & 15];
    outcap = out_sizes[(data[0] >> 4) & 3];
    chunk = chunk_sizes[data[0] >> 6];
    in = (const char *)data + 1;
    n = size - 1;
    if (chunk == 0 || chunk > n)
        chunk = n > 0 ? n : 1;

    /* At most 4 octets a byte (a fold, then ".."), and the end. */
    t.cap = 4 * n + SMTP__BODY_END_MAX;
    t.len = 0;
    t.p = malloc(t.cap);
    c.cap = 2 * n + 2;
    c.len = 0;
    c.p = malloc(c.cap);
    out = malloc(outcap);
    end = malloc(SMTP__BODY_END_MAX);
    CHECK(t.p != NULL && c.p != NULL && out != NULL && end != NULL);

    smtp__body_encoder_init(&enc, fold);
    for (size_t pos = 0; pos < n; pos += chunk)
        encode_chunk(&enc, in + pos, n - pos < chunk ? n - pos : chunk, out,
                     outcap, &t);
    {
        size_t w = smtp__body_finish(&enc, end, SMTP__BODY_END_MAX);

        CHECK(w >= 3 && w <= SMTP__BODY_END_MAX);
        append(&t, end, w);
    }

    canonical(in, n, &c);
    check_output(&t, &c, fold);

    free(end);
    free(out);
    free(c.p);
    free(t.p);
    return 0;
}
