/*
 * fuzz_reply.c - libFuzzer target for the reply reader (csrc/reply.c).
 *
 * The first two input bytes choose how the rest, the received stream, is
 * split into reads; the stream is then fed as the engine feeds it: one
 * struct smtp__reply_scan resumed while the visible length grows read by
 * read, each read's bytes (from the start of the pending reply) in a heap
 * buffer of exactly that length, so a read past the end shows under the
 * address sanitizer.  Each complete reply is parsed from its own
 * exact-size heap copy and must keep smtp__reply_extract's promises: a
 * code of 200..599, NUL-terminated text inside the buffer with text_len
 * == strlen(text), a line count equal to the reply's LFs, an enhanced
 * code terminated within its array.  The same stream scanned all at once
 * must give the same replies (length, code, text, lines, enhanced code)
 * and then the same final result: the same error or the same need for
 * more bytes.  Any violation traps.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"

#define CHECK(cond)                                                       \
    do {                                                                  \
        if (!(cond))                                                      \
            __builtin_trap();                                             \
    } while (0)

/* Split modes, the top three bits of the first byte. */
#define MODE_WHOLE 0      /* one read */
#define MODE_STEP 1       /* reads of (second byte + 1) bytes */
#define MODE_STEP16 2     /* reads of 16 * (second byte + 1) bytes */
#define MODE_BIG 7        /* the stream repeated past the reply cap */
/* Other modes: (first byte & 31) + 1 reads split at pseudo-random
 * points drawn from the second byte; MODE_BIG takes (first byte & 3) + 1
 * such reads and only the first reply, which is all the cap concerns,
 * to keep its cost near a small input's. */

#define MAX_READS 512     /* step modes widen their step to stay under */
#define BIG_LEN (SMTP__REPLY_MAX + 2 * SMTP__REPLY_LINE_MAX)

/* The stream scanned all at once: one heap buffer of its exact length,
 * each reply scanned from a fresh scan and extracted in place. */
struct whole {
    char *buf;
    size_t len;
    size_t off; /* the start of the next reply */
};

static uint32_t next_random(uint32_t *state)
{
    /* xorshift32: a state of 0 would stay 0, so the seed is never 0. */
    uint32_t x = *state;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return x;
}

static int compare_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;

    return (x > y) - (x < y);
}

/* Keeps one of each run of equal values in the sorted a[0..n). */
static size_t drop_repeats(size_t *a, size_t n)
{
    size_t kept = 0;

    for (size_t i = 0; i < n; i++) {
        if (kept == 0 || a[kept - 1] != a[i])
            a[kept++] = a[i];
    }
    return kept;
}

/*
 * Fills ends[] with the increasing ends of the reads of an n-byte stream,
 * the last being n; returns how many.  ends has room for MAX_READS.
 */
static size_t plan_reads(uint8_t b0, uint8_t b1, size_t n, size_t *ends)
{
    unsigned mode = b0 >> 5;
    size_t splits = mode == MODE_BIG ? (size_t)(b0 & 3) : (size_t)(b0 & 31);
    size_t count = 0;

    if (n == 0)
        return 0;
    if (mode == MODE_STEP || mode == MODE_STEP16) {
        size_t step = (size_t)b1 + 1;

        if (mode == MODE_STEP16)
            step *= 16;
        if (n / step >= MAX_READS)
            step = n / (MAX_READS - 1) + 1;
        for (size_t end = step; end < n && count < MAX_READS - 1;
             end += step)
            ends[count++] = end;
    } else if (mode != MODE_WHOLE) {
        uint32_t state = 0x9e3779b9u ^ ((uint32_t)b1 << 8) ^ b0;

        for (size_t i = 0; i < splits && n > 1; i++)
            ends[count++] = 1 + next_random(&state) % (n - 1);
        qsort(ends, count, sizeof(ends[0]), compare_size);
        count = drop_repeats(ends, count);
    }
    ends[count++] = n;
    return count;
}

static size_t count_lf(const char *p, size_t n)
{
    size_t lf = 0;

    for (size_t i = 0; i < n; i++)
        lf += p[i] == '\n';
    return lf;
}

/* Checks extract's promises for the reply raw[0..r), parsed from buf, an
 * exact-size copy of it. */
static void check_reply(const char *raw, const char *buf, size_t r,
                        const smtp_reply *out)
{
    int code = (raw[0] - '0') * 100 + (raw[1] - '0') * 10 + (raw[2] - '0');
    const char *nul = memchr(out->enhanced, '\0', sizeof(out->enhanced));
    size_t enh_len;

    CHECK(r <= SMTP__REPLY_MAX && raw[r - 1] == '\n');
    CHECK(out->code >= 200 && out->code <= 599 && out->code == code);
    CHECK(out->text >= buf && out->text_len < r);
    CHECK(out->text + out->text_len < buf + r);
    CHECK(out->text[out->text_len] == '\0');
    CHECK(strlen(out->text) == out->text_len);
    CHECK(out->lines >= 1 && out->lines <= SMTP__REPLY_LINES_MAX);
    CHECK((size_t)out->lines == count_lf(raw, r));

    CHECK(nul != NULL);
    enh_len = (size_t)(nul - out->enhanced);
    if (enh_len > 0) {
        CHECK(out->enhanced[0] == '0' + code / 100);
        CHECK(enh_len <= out->text_len);
        CHECK(memcmp(out->enhanced, out->text, enh_len) == 0);
    }
}

/* The reply the whole-stream scan finds at the split scan's offset must
 * be the same reply. */
static void check_against_whole(struct whole *w, size_t off, long r,
                                const smtp_reply *got)
{
    struct smtp__reply_scan scan = {0, 0, 0};
    smtp_reply ref;
    long wr;

    CHECK(w->off == off);
    wr = smtp__reply_scan(&scan, w->buf + off, w->len - off);
    CHECK(wr == r);
    smtp__reply_extract(w->buf + off, (size_t)r, &ref);
    CHECK(ref.code == got->code);
    CHECK(ref.lines == got->lines);
    CHECK(ref.text_len == got->text_len);
    CHECK(memcmp(ref.text, got->text, got->text_len) == 0);
    CHECK(strcmp(ref.enhanced, got->enhanced) == 0);
    w->off = off + (size_t)r;
}

/* The end of the split feed: the whole-stream scan at the same offset
 * must end the same way (an error, or 0 for bytes still missing). */
static void check_end_against_whole(const struct whole *w, size_t off,
                                    long r)
{
    struct smtp__reply_scan scan = {0, 0, 0};

    CHECK(w->off == off);
    if (off == w->len) {
        CHECK(r == 0);
        return;
    }
    CHECK(smtp__reply_scan(&scan, w->buf + off, w->len - off) == r);
}

/* Parses the complete reply s[off..off+r) from an exact-size copy. */
static void take_reply(const char *s, size_t off, long r, struct whole *w)
{
    char *copy = malloc((size_t)r);
    smtp_reply out;

    CHECK(copy != NULL);
    memcpy(copy, s + off, (size_t)r);
    smtp__reply_extract(copy, (size_t)r, &out);
    check_reply(s + off, copy, (size_t)r, &out);
    check_against_whole(w, off, r, &out);
    free(copy);
}

/*
 * Feeds s[0..n) read by read, up to max_replies replies.  base is where
 * the read buffer starts (the pending reply's start when the read
 * arrived, as after the engine's compaction); off is the pending reply's
 * start; vis the bytes received.
 */
static void feed(const char *s, size_t n, const size_t *ends, size_t reads,
                 size_t max_replies, struct whole *w)
{
    size_t replies = 0;
    struct smtp__reply_scan scan = {0, 0, 0};
    size_t off = 0;
    long r = 0;

    for (size_t k = 0; k < reads; k++) {
        size_t base = off, vis = ends[k];
        char *buf = malloc(vis - base);

        CHECK(buf != NULL && vis > base);
        memcpy(buf, s + base, vis - base);
        /* Each pass takes a reply of at least 4 bytes or stops. */
        for (size_t pass = 0; pass <= n; pass++) {
            if (off == vis) {
                r = 0;
                break;
            }
            r = smtp__reply_scan(&scan, buf + (off - base), vis - off);
            if (r <= 0)
                break;
            CHECK((size_t)r <= vis - off);
            take_reply(s, off, r, w);
            off += (size_t)r;
            memset(&scan, 0, sizeof(scan));
            if (++replies == max_replies)
                break;
        }
        free(buf);
        if (replies == max_replies)
            return;
        CHECK(r == 0 || r == SMTP_EPROTO || r == SMTP_ETOOBIG);
        if (r < 0)
            break;
    }
    check_end_against_whole(w, off, r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static size_t ends[MAX_READS];
    const char *s;
    char *big = NULL;
    size_t n, reads, max_replies = SIZE_MAX;
    struct whole w;

    if (size < 2)
        return 0;
    s = (const char *)data + 2;
    n = size - 2;
    if ((data[0] >> 5) == MODE_BIG && n > 0) {
        big = malloc(BIG_LEN);
        CHECK(big != NULL);
        /* Doubling: a few copies even for a one-byte stream. */
        memcpy(big, s, n < BIG_LEN ? n : BIG_LEN);
        for (size_t have = n; have < BIG_LEN; have *= 2)
            memcpy(big + have, big,
                   BIG_LEN - have < have ? BIG_LEN - have : have);
        s = big;
        n = BIG_LEN;
        max_replies = 1;
    }

    reads = plan_reads(data[0], data[1], n, ends);
    w.len = n;
    w.off = 0;
    w.buf = malloc(n > 0 ? n : 1);
    CHECK(w.buf != NULL);
    memcpy(w.buf, s, n);
    feed(s, n, ends, reads, max_replies, &w);
    free(w.buf);
    free(big);
    return 0;
}
