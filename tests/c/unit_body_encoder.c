/*
 * unit_body_encoder.c - the body encoder against hand-written wire bytes,
 * a slow model and the wire rules of DESIGN 9.
 *
 * Every labelled case is encoded in several feeds (all at once, split at
 * every point when short, one byte at a time, through an output buffer of
 * SMTP__BODY_EXPANSION octets) and each feed must give the case's bytes.
 * Each call is checked against the header's promises: nothing written
 * past outcap, progress whenever room and input remain, no early stop.
 * The model is written for clarity, not speed: it canonicalises line
 * ends, then stuffs and folds line by line.  Pseudo-random inputs from a
 * fixed seed must match the model and keep the wire rules.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "body_encoder.h"
#include "ctest.h"

#define GUARD 16
#define GUARD_BYTE ((char)0xa5)
#define SHORT_INPUT 64         /* split at every point up to this length */
#define RANDOM_INPUTS 3000
#define RANDOM_MAX_LEN 64
#define RANDOM_LINE_INPUTS 300
#define BIG_BODY (2u * 1024 * 1024)
#define BYTES(s) s, sizeof(s) - 1

struct buf {
    char *data;
    size_t len;
    size_t cap;
};

struct body_case {
    const char *label;
    const char *in;
    size_t inlen;
    size_t fold_at;
    const char *want;
    size_t wantlen;
};

/* How one encoding feeds the encoder: the input chunk of each call and
 * the output room it gets. */
struct feed {
    const char *name;
    size_t split;      /* end of the first chunk; 0: no split */
    size_t chunk;      /* bytes per later chunk; 0: all that remain */
    bool random_chunk; /* later chunks take 1..chunk bytes at random */
    size_t outcap;
};

static uint32_t rng_state = 0x2545f491u;

/* xorshift32: a fixed sequence, so a failure reproduces. */
static uint32_t rng_next(void)
{
    uint32_t x = rng_state;

    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    rng_state = x;
    return x;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n > 0 ? n : 1);

    if (p == NULL) {
        fprintf(stderr, "out of memory\n");
        exit(2);
    }
    return p;
}

static void buf_put(struct buf *b, const char *p, size_t n)
{
    if (n == 0)
        return; /* memcpy may not see the NULL of an empty buf */
    if (b->len + n > b->cap) {
        size_t cap = b->cap > 0 ? b->cap : 64;

        while (cap < b->len + n)
            cap *= 2;
        b->data = realloc(b->data, cap);
        if (b->data == NULL) {
            fprintf(stderr, "out of memory\n");
            exit(2);
        }
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void buf_free(struct buf *b)
{
    free(b->data);
    *b = (struct buf){0};
}

static bool buf_equals(const struct buf *b, const char *p, size_t n)
{
    return b->len == n && (n == 0 || memcmp(b->data, p, n) == 0);
}

static bool ends_with(const struct buf *b, const char *s, size_t n)
{
    return b->len >= n && memcmp(b->data + b->len - n, s, n) == 0;
}

/* ---- the model ---- */

/* CR LF, bare CR and bare LF each become CRLF; a body not ending in
 * CRLF gets one; an empty body stays empty. */
static void model_canonical(const char *in, size_t len, struct buf *out)
{
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
            i++;
        if (in[i] == '\r' || in[i] == '\n')
            buf_put(out, "\r\n", 2);
        else
            buf_put(out, &in[i], 1);
    }
    if (out->len > 0 && !ends_with(out, "\r\n", 2))
        buf_put(out, "\r\n", 2);
}

/* One canonical line without its CRLF: folded before an octet once the
 * output line holds fold_at octets, each output line's "." stuffed. */
static void model_line(const char *line, size_t len, size_t fold_at,
                       struct buf *out)
{
    size_t width = 0;

    for (size_t i = 0; i < len; i++) {
        if (fold_at > 0 && width >= fold_at) {
            buf_put(out, "\r\n", 2);
            width = 0;
        }
        if (width == 0 && line[i] == '.') {
            buf_put(out, ".", 1);
            width++;
        }
        buf_put(out, &line[i], 1);
        width++;
    }
    buf_put(out, "\r\n", 2);
}

static void model_wire(const char *in, size_t len, size_t fold_at,
                       struct buf *out)
{
    struct buf canon = {0};
    size_t start = 0;

    model_canonical(in, len, &canon);
    while (start < canon.len) {
        /* In canonical form every CR opens a CRLF. */
        const char *cr = memchr(canon.data + start, '\r', canon.len - start);
        size_t end = (size_t)(cr - canon.data);

        model_line(canon.data + start, end - start, fold_at, out);
        start = end + 2;
    }
    buf_put(out, ".\r\n", 3);
    buf_free(&canon);
}

/* ---- feeding the encoder ---- */

static bool broken(const char *why)
{
    fprintf(stderr, "broken promise: %s\n", why);
    return false;
}

static bool guard_intact(const char *guard)
{
    for (size_t i = 0; i < GUARD; i++)
        if (guard[i] != GUARD_BYTE)
            return false;
    return true;
}

/* One encode call over in[0..avail), its promises checked; appends the
 * output to `wire` and advances *pos by the bytes consumed. */
static bool encode_call(struct smtp__body_encoder *enc, const char *in,
                        size_t avail, char *win, size_t outcap,
                        struct buf *wire, size_t *pos)
{
    size_t used = SIZE_MAX;
    size_t n;

    memset(win + outcap, GUARD_BYTE, GUARD);
    n = smtp__body_encode(enc, in, avail, &used, win, outcap);
    if (n > outcap || !guard_intact(win + outcap))
        return broken("wrote past outcap");
    if (used > avail)
        return broken("consumed more than given");
    if (used == 0)
        return broken("no progress with room and input");
    if (used < avail && outcap - n >= SMTP__BODY_EXPANSION)
        return broken("stopped early with room left");
    buf_put(wire, win, n);
    *pos += used;
    return true;
}

static bool finish_call(struct smtp__body_encoder *enc, struct buf *wire)
{
    char win[SMTP__BODY_END_MAX + GUARD];
    size_t n;

    memset(win + SMTP__BODY_END_MAX, GUARD_BYTE, GUARD);
    n = smtp__body_finish(enc, win, SMTP__BODY_END_MAX);
    if (n > SMTP__BODY_END_MAX || !guard_intact(win + SMTP__BODY_END_MAX))
        return broken("finish wrote past outcap");
    buf_put(wire, win, n);
    return true;
}

static size_t next_cut(const struct feed *f, size_t pos, size_t len)
{
    size_t n;

    if (pos == 0 && f->split > 0)
        return f->split < len ? f->split : len;
    if (f->chunk == 0)
        return len;
    n = f->random_chunk ? 1 + rng_next() % f->chunk : f->chunk;
    return n < len - pos ? pos + n : len;
}

/* Encodes the whole body as `f` feeds it; the result goes to `wire`.
 * Each chunk is offered again until it is consumed, as a caller would. */
static bool encode_fed(const struct feed *f, const char *in, size_t len,
                       size_t fold_at, struct buf *wire)
{
    struct smtp__body_encoder enc;
    char *win = xmalloc(f->outcap + GUARD);
    size_t pos = 0;
    bool ok = true;

    smtp__body_encoder_init(&enc, fold_at);
    while (ok && pos < len) {
        size_t end = next_cut(f, pos, len);

        while (ok && pos < end)
            ok = encode_call(&enc, in + pos, end - pos, win, f->outcap,
                             wire, &pos);
    }
    ok = ok && finish_call(&enc, wire);
    free(win);
    return ok;
}

/* Feeds `f`, then checks the result against want[0..wantlen). */
static void check_feed(const char *label, const struct feed *f,
                       const char *in, size_t len, size_t fold_at,
                       const char *want, size_t wantlen)
{
    struct buf wire = {0};
    int failed = ctest_failed;

    CHECK(encode_fed(f, in, len, fold_at, &wire));
    CHECK(buf_equals(&wire, want, wantlen));
    if (ctest_failed != failed)
        fprintf(stderr, "    case \"%s\", feed %s (split %zu)\n", label,
                f->name, f->split);
    buf_free(&wire);
}

/* Every feed of one input; the splits only for short inputs. */
static void check_all_feeds(const char *label, const char *in, size_t len,
                            size_t fold_at, const char *want, size_t wantlen)
{
    size_t big = 4 * len + 64;
    const struct feed feeds[] = {
        {"all at once", 0, 0, false, big},
        {"one byte at a time", 0, 1, false, 64},
        {"tiny output", 0, 0, false, SMTP__BODY_EXPANSION},
        {"tiny output, one byte", 0, 1, false, SMTP__BODY_EXPANSION},
        {"tiny output + 1", 0, 0, false, SMTP__BODY_EXPANSION + 1},
        {"random chunks", 0, 4096, true, 1000},
    };

    for (size_t i = 0; i < sizeof(feeds) / sizeof(feeds[0]); i++)
        check_feed(label, &feeds[i], in, len, fold_at, want, wantlen);
    for (size_t k = 1; len <= SHORT_INPUT && k < len; k++) {
        struct feed split = {"split", k, 0, false, big};

        check_feed(label, &split, in, len, fold_at, want, wantlen);
    }
}

/* ---- the wire rules, checked without the model ---- */

/* Every CR is followed by LF and every LF follows a CR. */
static bool no_bare_line_ends(const struct buf *w)
{
    for (size_t i = 0; i < w->len; i++) {
        if (w->data[i] == '\r' && (i + 1 == w->len || w->data[i + 1] != '\n'))
            return false;
        if (w->data[i] == '\n' && (i == 0 || w->data[i - 1] != '\r'))
            return false;
    }
    return true;
}

static bool ends_right(const struct buf *w)
{
    return buf_equals(w, BYTES(".\r\n")) || ends_with(w, BYTES("\r\n.\r\n"));
}

/* Calls `line` with each line of w but the terminator, CRLF left off;
 * stops and returns false when `line` does.  w keeps the rules above. */
static bool each_line(const struct buf *w,
                      bool (*line)(const char *, size_t, void *), void *arg)
{
    size_t start = 0;
    size_t body = w->len - 3;

    while (start < body) {
        const char *cr = memchr(w->data + start, '\r', body - start);
        size_t end = (size_t)(cr - w->data);

        if (!line(w->data + start, end - start, arg))
            return false;
        start = end + 2;
    }
    return true;
}

static bool line_stuffed(const char *line, size_t len, void *arg)
{
    (void)arg;
    return len == 0 || line[0] != '.' || (len >= 2 && line[1] == '.');
}

/* A line fits the fold width; with fold_at 1 a stuffed "." line holds
 * two octets. */
static bool line_fits(const char *line, size_t len, void *arg)
{
    size_t width = *(size_t *)arg;

    (void)line;
    return len <= (width > 2 ? width : 2);
}

static bool line_unstuff(const char *line, size_t len, void *arg)
{
    size_t skip = len > 0 && line[0] == '.';

    buf_put(arg, line + skip, len - skip);
    buf_put(arg, "\r\n", 2);
    return true;
}

/* The wire rules, and with no folding, un-stuffing gives the canonical
 * form: what a server stores. */
static void check_wire_rules(const char *label, const char *in, size_t len,
                             size_t fold_at, const struct buf *w)
{
    struct buf canon = {0};
    struct buf stored = {0};
    int failed = ctest_failed;
    bool shaped = no_bare_line_ends(w) && ends_right(w);

    CHECK(shaped);
    if (shaped) {
        CHECK(each_line(w, line_stuffed, NULL));
        if (fold_at > 0)
            CHECK(each_line(w, line_fits, &fold_at));
        model_canonical(in, len, &canon);
        each_line(w, line_unstuff, &stored);
        if (fold_at == 0)
            CHECK(buf_equals(&stored, canon.data, canon.len));
    }
    if (ctest_failed != failed)
        fprintf(stderr, "    case \"%s\" (wire rules)\n", label);
    buf_free(&canon);
    buf_free(&stored);
}

/* The case's bytes from every feed, the model's too, and the rules. */
static void check_case(const struct body_case *c)
{
    struct buf model = {0};
    struct feed all = {"all at once", 0, 0, false, 4 * c->inlen + 64};
    struct buf wire = {0};
    int failed = ctest_failed;

    model_wire(c->in, c->inlen, c->fold_at, &model);
    CHECK(buf_equals(&model, c->want, c->wantlen));
    if (ctest_failed != failed)
        fprintf(stderr, "    case \"%s\": the model disagrees\n", c->label);
    check_all_feeds(c->label, c->in, c->inlen, c->fold_at, c->want,
                    c->wantlen);
    CHECK(encode_fed(&all, c->in, c->inlen, c->fold_at, &wire));
    check_wire_rules(c->label, c->in, c->inlen, c->fold_at, &wire);
    buf_free(&model);
    buf_free(&wire);
}

/* ---- the cases ---- */

static const struct body_case written_cases[] = {
    {"empty body", BYTES(""), 0, BYTES(".\r\n")},
    {"only CR", BYTES("\r"), 0, BYTES("\r\n.\r\n")},
    {"only LF", BYTES("\n"), 0, BYTES("\r\n.\r\n")},
    {"only CRLF", BYTES("\r\n"), 0, BYTES("\r\n.\r\n")},
    {"only dot", BYTES("."), 0, BYTES("..\r\n.\r\n")},
    {"lone dot line", BYTES("a\r\n.\r\nb\r\n"), 0,
     BYTES("a\r\n..\r\nb\r\n.\r\n")},
    {"lone dot line last", BYTES("a\r\n.\r\n"), 0,
     BYTES("a\r\n..\r\n.\r\n")},
    {"dot-leading lines", BYTES(".a\r\nb.\r\n.b.\r\n"), 0,
     BYTES("..a\r\nb.\r\n..b.\r\n.\r\n")},
    {"double-dot lines", BYTES("..\r\n..x\r\n"), 0,
     BYTES("...\r\n...x\r\n.\r\n")},
    {"bare CR", BYTES("a\rb\r"), 0, BYTES("a\r\nb\r\n.\r\n")},
    {"bare LF", BYTES("a\nb\n"), 0, BYTES("a\r\nb\r\n.\r\n")},
    {"CR CR LF", BYTES("a\r\r\nb"), 0, BYTES("a\r\n\r\nb\r\n.\r\n")},
    {"LF CR", BYTES("a\n\rb"), 0, BYTES("a\r\n\r\nb\r\n.\r\n")},
    {"LF CR at end", BYTES("\n\r"), 0, BYTES("\r\n\r\n.\r\n")},
    {"CR CR", BYTES("\r\r"), 0, BYTES("\r\n\r\n.\r\n")},
    {"mixed line ends", BYTES("a\r\nb\nc\rd\r\n\n\re"), 0,
     BYTES("a\r\nb\r\nc\r\nd\r\n\r\n\r\ne\r\n.\r\n")},
    {"no final newline", BYTES("a\r\nlast"), 0,
     BYTES("a\r\nlast\r\n.\r\n")},
    {"ends with CR", BYTES("a\r"), 0, BYTES("a\r\n.\r\n")},
    {"blank lines", BYTES("\n\n\r\n"), 0, BYTES("\r\n\r\n\r\n.\r\n")},
    {"LF dot LF smuggling", BYTES("a\n.\nMAIL FROM:<x>\n"), 0,
     BYTES("a\r\n..\r\nMAIL FROM:<x>\r\n.\r\n")},
    {"CR dot CR smuggling", BYTES("a\r.\rb"), 0,
     BYTES("a\r\n..\r\nb\r\n.\r\n")},
    {"CRLF dot LF smuggling", BYTES("a\r\n.\nb"), 0,
     BYTES("a\r\n..\r\nb\r\n.\r\n")},
    {"dot after bare CR", BYTES("\r."), 0, BYTES("\r\n..\r\n.\r\n")},
    {"NUL and high octets", BYTES("\0a\xff\r\n\x80."), 0,
     BYTES("\0a\xff\r\n\x80.\r\n.\r\n")},
    {"fold off", BYTES("abcdefgh\n"), 0, BYTES("abcdefgh\r\n.\r\n")},
    {"fold at 3", BYTES("abcdefgh\n"), 3,
     BYTES("abc\r\ndef\r\ngh\r\n.\r\n")},
    {"fold at exact width", BYTES("abc\nabcd"), 3,
     BYTES("abc\r\nabc\r\nd\r\n.\r\n")},
    {"fold at width then CR", BYTES("abc\rdef\r"), 3,
     BYTES("abc\r\ndef\r\n.\r\n")},
    {"fold before dot", BYTES("abc.de"), 3,
     BYTES("abc\r\n..d\r\ne\r\n.\r\n")},
    {"fold counts stuffed dot", BYTES(".abc"), 3,
     BYTES("..a\r\nbc\r\n.\r\n")},
    {"fold at 1", BYTES(".a.\n"), 1, BYTES("..\r\na\r\n..\r\n.\r\n")},
    {"fold short lines unchanged", BYTES("ab\n.c\r\n"), 3,
     BYTES("ab\r\n..c\r\n.\r\n")},
};

/* A generated case owns its input and wanted bytes. */
struct made_case {
    struct body_case c;
    struct buf in;
    struct buf want;
};

static void put_repeated(struct buf *b, char c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        buf_put(b, &c, 1);
}

/* A line of `n` copies of `c` and CRLF, encoded with fold_at; `want`
 * is spelled out here, apart from the model. */
static void make_long_line(struct made_case *m, const char *label, char c,
                           size_t n, size_t fold_at)
{
    size_t first = fold_at > 0 && fold_at < n ? fold_at : n;

    *m = (struct made_case){.c = {.label = label, .fold_at = fold_at}};
    put_repeated(&m->in, c, n);
    buf_put(&m->in, "\r\n", 2);
    put_repeated(&m->want, c, first);
    for (size_t done = first; done < n; done += fold_at) {
        size_t part = n - done < fold_at ? n - done : fold_at;

        buf_put(&m->want, "\r\n", 2);
        put_repeated(&m->want, c, part);
    }
    buf_put(&m->want, "\r\n.\r\n", 5);
}

static void made_case_done(struct made_case *m)
{
    m->c.in = m->in.data;
    m->c.inlen = m->in.len;
    m->c.want = m->want.data;
    m->c.wantlen = m->want.len;
    check_case(&m->c);
    buf_free(&m->in);
    buf_free(&m->want);
}

static void check_long_lines(void)
{
    struct made_case m;

    make_long_line(&m, "998-octet line", 'x', 998, 0);
    made_case_done(&m);
    make_long_line(&m, "998-octet line, fold at 998", 'x', 998, 998);
    made_case_done(&m);
    make_long_line(&m, "1000-octet line", 'x', 1000, 0);
    made_case_done(&m);
    make_long_line(&m, "1000-octet line, fold at 998", 'x', 1000, 998);
    made_case_done(&m);
    make_long_line(&m, "100 KiB line", 'y', 100 * 1024, 0);
    made_case_done(&m);
    make_long_line(&m, "100 KiB line, fold at 76", 'y', 100 * 1024, 76);
    made_case_done(&m);
}

/* A 1000-octet line opening with ".": the stuffed "." counts toward the
 * fold, so the first line holds 997 octets of the input. */
static void check_long_dot_line(void)
{
    struct made_case m = {.c = {.label = "1000-octet dot line, fold at 998",
                                .fold_at = 998}};

    buf_put(&m.in, ".", 1);
    put_repeated(&m.in, 'x', 999);
    buf_put(&m.want, "..", 2);
    put_repeated(&m.want, 'x', 996);
    buf_put(&m.want, "\r\n", 2);
    put_repeated(&m.want, 'x', 3);
    buf_put(&m.want, "\r\n.\r\n", 5);
    made_case_done(&m);
}

static const char *const line_ends[] = {"\r\n", "\n", "\r", "\r\r\n"};

/* About 2 MiB of lines of many lengths, some opening with "." and some
 * long, ended in turn by each kind of line end; the want is the model's. */
static void check_big_body(size_t fold_at, const char *label)
{
    struct made_case m = {.c = {.label = label, .fold_at = fold_at}};
    uint32_t line = 0;

    while (m.in.len < BIG_BODY && line < BIG_BODY) {
        size_t n = line % 97 == 0 ? 3000 + rng_next() % 5000
                                  : rng_next() % 120;
        const char *end = line_ends[rng_next() % 4];

        if (rng_next() % 8 == 0)
            buf_put(&m.in, ".", 1);
        for (size_t i = 0; i < n; i++)
            buf_put(&m.in, &"abcdefghij .:-"[i % 14], 1);
        buf_put(&m.in, end, strlen(end));
        line++;
    }
    model_wire(m.in.data, m.in.len, fold_at, &m.want);
    made_case_done(&m);
}

/* ---- pseudo-random inputs ---- */

/* Mostly CR, LF, "." and "a", now and then any octet. */
static char random_octet(void)
{
    uint32_t r = rng_next() % 16;

    if (r < 4)
        return '\r';
    if (r < 8)
        return '\n';
    if (r < 11)
        return '.';
    if (r < 15)
        return 'a';
    return (char)(rng_next() & 0xff);
}

static void check_random_inputs(void)
{
    char in[RANDOM_MAX_LEN];
    char label[32];

    for (int k = 0; k < RANDOM_INPUTS; k++) {
        size_t len = rng_next() % (RANDOM_MAX_LEN + 1);
        size_t fold_at = k % 3 == 0 ? 1 + rng_next() % 8 : 0;
        struct buf model = {0};
        struct buf wire = {0};
        struct feed all = {"all at once", 0, 0, false, 4 * len + 64};

        for (size_t i = 0; i < len; i++)
            in[i] = random_octet();
        snprintf(label, sizeof(label), "random #%d", k);
        model_wire(in, len, fold_at, &model);
        check_all_feeds(label, in, len, fold_at, model.data, model.len);
        CHECK(encode_fed(&all, in, len, fold_at, &wire));
        check_wire_rules(label, in, len, fold_at, &wire);
        buf_free(&model);
        buf_free(&wire);
    }
}

/* Lines long enough for the encoder's 16-octet scan, mostly ended by
 * CRLF (its whole-line path), now and then by a bare CR or LF, opened by
 * a ".", or cut off at the end of the input. */
static void check_random_lines(void)
{
    static const char *const ends[] = {"\r\n", "\r\n", "\r\n", "\n",
                                       "\r", ""};
    char label[32];

    for (int k = 0; k < RANDOM_LINE_INPUTS; k++) {
        struct buf in = {0};
        struct buf model = {0};
        size_t lines = 1 + rng_next() % 40;

        for (size_t l = 0; l < lines; l++) {
            size_t n = rng_next() % 100;
            const char *end = ends[rng_next() % 6];

            for (size_t i = 0; i < n; i++) {
                char ch = rng_next() % 8 == 0 ? random_octet() : 'w';
                if (i == 0 && rng_next() % 6 == 0)
                    ch = '.';
                buf_put(&in, &ch, 1);
            }
            buf_put(&in, end, strlen(end));
        }
        snprintf(label, sizeof(label), "random lines #%d", k);
        model_wire(in.data, in.len, 0, &model);
        check_all_feeds(label, in.data, in.len, 0, model.data, model.len);
        buf_free(&in);
        buf_free(&model);
    }
}

/* ---- single calls ---- */

/* A CR ending a chunk is consumed but not written until the next byte
 * or finish decides it. */
static void check_held_cr(void)
{
    struct smtp__body_encoder enc;
    char out[16];
    size_t used = 0;
    size_t n;

    smtp__body_encoder_init(&enc, 0);
    n = smtp__body_encode(&enc, "a\r", 2, &used, out, sizeof(out));
    CHECK(used == 2 && n == 1 && out[0] == 'a');
    CHECK(enc.after_cr);
    n = smtp__body_encode(&enc, "\n", 1, &used, out, sizeof(out));
    CHECK(used == 1 && n == 2 && memcmp(out, "\r\n", 2) == 0);
    n = smtp__body_finish(&enc, out, sizeof(out));
    CHECK(n == 3 && memcmp(out, ".\r\n", 3) == 0);

    smtp__body_encoder_init(&enc, 0);
    n = smtp__body_encode(&enc, "\r", 1, &used, out, sizeof(out));
    CHECK(used == 1 && n == 0);
    n = smtp__body_finish(&enc, out, sizeof(out));
    CHECK(n == 5 && memcmp(out, "\r\n.\r\n", 5) == 0);
}

static void check_empty_calls(void)
{
    struct smtp__body_encoder enc;
    char out[16];
    size_t used = 7;
    size_t n;

    smtp__body_encoder_init(&enc, 0);
    CHECK(enc.empty && enc.at_line_start && !enc.after_cr);
    n = smtp__body_encode(&enc, "", 0, &used, out, sizeof(out));
    CHECK(n == 0 && used == 0);
    n = smtp__body_encode(&enc, "x", 1, &used, out, sizeof(out));
    CHECK(n == 1 && used == 1 && !enc.empty);
}

int main(void)
{
    size_t ncases = sizeof(written_cases) / sizeof(written_cases[0]);

    for (size_t i = 0; i < ncases; i++)
        check_case(&written_cases[i]);
    check_long_lines();
    check_long_dot_line();
    check_big_body(0, "2 MiB body");
    check_big_body(76, "2 MiB body, fold at 76");
    check_random_inputs();
    check_random_lines();
    check_held_cr();
    check_empty_calls();
    CTEST_END();
}
