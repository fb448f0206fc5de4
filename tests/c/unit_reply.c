/*
 * unit_reply.c - the reply reader (csrc/reply.c), table-driven.
 *
 * Every row is scanned from a heap copy of exactly its length, so a read
 * past the end shows under the address sanitizer; then at every split
 * point and one byte at a time, each prefix in its own exact-size copy
 * whose already validated bytes are overwritten, which must give the
 * same result as the whole.  Caps are checked by generated replies
 * exactly at each cap and one byte or one line past it.
 */
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "reply.h"

/* A string literal and its length, NUL bytes included. */
#define BYTES(s) s, sizeof(s) - 1

struct reply_case {
    const char *label;
    const char *bytes;
    size_t len;
    long want;            /* scan result: length, 0 or SMTP_E* */
    int code;             /* for a complete reply */
    int lines;
    const char *text;     /* expected text, NUL bytes shown as '?' */
    size_t text_len;
    const char *enhanced;
};

/* A complete reply that is the whole input. */
#define OK(label, in, code, lines, text, enh)                              \
    {label, BYTES(in), sizeof(in) - 1, code, lines, BYTES(text), enh}
/* A complete reply that is the first n bytes of the input. */
#define FIRST(label, in, n, code, lines, text, enh)                        \
    {label, BYTES(in), n, code, lines, BYTES(text), enh}
#define FAIL(label, in, rc) {label, BYTES(in), rc, 0, 0, BYTES(""), ""}
#define MORE(label, in) FAIL(label, in, 0)

static const struct reply_case cases[] = {
    /* Legal forms. */
    OK("single line CRLF", "250 OK\r\n", 250, 1, "OK", ""),
    OK("single line bare LF", "250 OK\n", 250, 1, "OK", ""),
    OK("multi-line",
       "250-mx.example\r\n250-PIPELINING\r\n250 SIZE 10\r\n", 250, 3,
       "mx.example\nPIPELINING\nSIZE 10", ""),
    OK("multi-line bare LF", "250-a\n250 b\n", 250, 2, "a\nb", ""),
    OK("multi-line mixed endings", "250-a\r\n250 b\n", 250, 2, "a\nb", ""),
    OK("code without text CRLF", "250\r\n", 250, 1, "", ""),
    OK("code without text bare LF", "250\n", 250, 1, "", ""),
    OK("space and no text", "250 \r\n", 250, 1, "", ""),
    OK("continuation without text", "250-\r\n250 end\r\n", 250, 2,
       "\nend", ""),
    OK("last line code only", "250-a\r\n250\r\n", 250, 2, "a\n", ""),
    OK("lowest code", "200 x\r\n", 200, 1, "x", ""),
    OK("highest code", "599 x\r\n", 599, 1, "x", ""),
    OK("NUL in text", "250 a\0b\r\n", 250, 1, "a?b", ""),
    OK("NUL bytes only", "250 \0\0\r\n", 250, 1, "??", ""),
    OK("NUL on a continuation", "250-\0\r\n250 b\r\n", 250, 2, "?\nb",
       ""),
    OK("8-bit bytes kept", "250 caf\xc3\xa9 \xff\xfe\r\n", 250, 1,
       "caf\xc3\xa9 \xff\xfe", ""),
    OK("CR inside text kept", "250 a\rb\r\n", 250, 1, "a\rb", ""),
    OK("only the CR before LF stripped", "250 a\r\r\n", 250, 1, "a\r",
       ""),
    OK("text keeps inner spaces", "250  two  spaces \r\n", 250, 1,
       " two  spaces ", ""),
    OK("dash inside text", "250 a-b\r\n", 250, 1, "a-b", ""),
    FIRST("back to back: only the first", "250 a\r\n221 b\r\n", 7, 250,
          1, "a", ""),
    FIRST("back to back after multi-line", "250-a\n250 b\n550 c\n", 12,
          250, 2, "a\nb", ""),
    FIRST("back to back, malformed second", "250 a\r\nxyz\r\n", 7, 250,
          1, "a", ""),
    FIRST("trailing partial reply ignored", "354 go\r\n25", 8, 354, 1,
          "go", ""),

    /* Enhanced status codes. */
    OK("enhanced present", "550 5.1.1 User unknown\r\n", 550, 1,
       "5.1.1 User unknown", "5.1.1"),
    OK("enhanced alone", "250 2.0.0\r\n", 250, 1, "2.0.0", "2.0.0"),
    OK("enhanced three-digit parts", "421 4.123.456 busy\r\n", 421, 1,
       "4.123.456 busy", "4.123.456"),
    OK("enhanced on first of many", "550-5.7.1 a\r\n550 5.7.1 b\r\n", 550,
       2, "5.7.1 a\n5.7.1 b", "5.7.1"),
    OK("enhanced alone on first of many", "250-2.0.0\r\n250 ok\r\n", 250,
       2, "2.0.0\nok", "2.0.0"),
    OK("enhanced only on second line", "550-first\r\n550 5.1.1 x\r\n",
       550, 2, "first\n5.1.1 x", ""),
    OK("enhanced class mismatch", "550 4.1.1 x\r\n", 550, 1, "4.1.1 x", ""),
    OK("enhanced four-digit subject", "550 5.1234.1 x\r\n", 550, 1,
       "5.1234.1 x", ""),
    OK("enhanced four-digit detail", "550 5.1.1234 x\r\n", 550, 1,
       "5.1.1234 x", ""),
    OK("enhanced glued to text", "550 5.1.1x\r\n", 550, 1, "5.1.1x", ""),
    OK("enhanced followed by tab", "550 5.1.1\tx\r\n", 550, 1, "5.1.1\tx",
       ""),
    OK("enhanced missing detail", "550 5.1 x\r\n", 550, 1, "5.1 x", ""),
    OK("enhanced empty subject", "550 5..1 x\r\n", 550, 1, "5..1 x", ""),
    OK("enhanced empty detail", "550 5.1. x\r\n", 550, 1, "5.1. x", ""),
    OK("enhanced not at start", "550 x 5.1.1\r\n", 550, 1, "x 5.1.1", ""),
    OK("enhanced two-digit class", "550 55.1.1 x\r\n", 550, 1, "55.1.1 x",
       ""),
    OK("enhanced after a dash", "550-5.1.1\r\n550 b\r\n", 550, 2,
       "5.1.1\nb", "5.1.1"),

    /* Incomplete: more bytes needed. */
    MORE("empty buffer", ""),
    MORE("one digit", "2"),
    MORE("code only", "250"),
    MORE("code and CR", "250\r"),
    MORE("text without LF", "250 OK\r"),
    MORE("continuation then nothing", "250-a\r\n"),
    MORE("continuation then partial code", "250-a\r\n25"),

    /* Malformed. */
    FAIL("letters for code", "abc ok\r\n", SMTP_EPROTO),
    FAIL("code below range", "199 x\r\n", SMTP_EPROTO),
    FAIL("code above range", "600 x\r\n", SMTP_EPROTO),
    FAIL("code zero", "000 x\r\n", SMTP_EPROTO),
    FAIL("two digits then space", "25 ok\r\n", SMTP_EPROTO),
    FAIL("four digits", "2500 ok\r\n", SMTP_EPROTO),
    FAIL("text glued to code", "250text\r\n", SMTP_EPROTO),
    FAIL("tab separator", "250\tok\r\n", SMTP_EPROTO),
    FAIL("CR then text after code", "250\rx\r\n", SMTP_EPROTO),
    FAIL("two CRs after code", "250\r\r\n", SMTP_EPROTO),
    FAIL("space before code", " 250 ok\r\n", SMTP_EPROTO),
    FAIL("sign before code", "+50 ok\r\n", SMTP_EPROTO),
    FAIL("two digits ended by LF", "25\n", SMTP_EPROTO),
    FAIL("two digits ended by CRLF", "25\r\n", SMTP_EPROTO),
    FAIL("one digit ended by LF", "2\n", SMTP_EPROTO),
    FAIL("empty line", "\n", SMTP_EPROTO),
    FAIL("empty line CRLF", "\r\n", SMTP_EPROTO),
    FAIL("NUL in code", "2\0" "0 x\r\n", SMTP_EPROTO),
    FAIL("code changes between lines", "250-a\r\n251 b\r\n", SMTP_EPROTO),
    FAIL("class changes between lines", "250-a\r\n550 b\r\n", SMTP_EPROTO),
    FAIL("garbage continuation", "250-a\r\nxyz\r\n", SMTP_EPROTO),
    FAIL("empty continuation line", "250-a\r\n\r\n", SMTP_EPROTO),
    FAIL("short continuation line", "250-a\r\n25\r\n", SMTP_EPROTO),
    FAIL("bad digit before LF", "2x0 ok", SMTP_EPROTO),
    FAIL("out of range before LF", "600", SMTP_EPROTO),
    FAIL("bad separator before LF", "2500", SMTP_EPROTO),
    FAIL("text after CR before LF", "250\rx", SMTP_EPROTO),
    FAIL("changed code before LF", "250-a\r\n251", SMTP_EPROTO),
};

#define N_CASES (sizeof(cases) / sizeof(cases[0]))

static int row_failures;

/* A CHECK that also names the row, so a broken row is found at once. */
#define CHECK_ROW(label, expr)                                             \
    do {                                                                   \
        int ok_ = (expr);                                                  \
        CHECK(ok_);                                                        \
        if (!ok_) {                                                        \
            row_failures++;                                                \
            fprintf(stderr, "    row: %s\n", label);                       \
        }                                                                  \
    } while (0)

/* A heap copy of exactly n bytes (1 when n is 0, never read then). */
static char *exact_copy(const char *bytes, size_t n)
{
    char *p = malloc(n ? n : 1);

    if (p == NULL) {
        perror("malloc");
        exit(2);
    }
    memcpy(p, bytes, n);
    return p;
}

/* Validated bytes must not be read again: a resumed scan that did would
 * meet this instead of the digits it checked. */
#define POISON '!'

/*
 * Scans an exact-size copy of bytes[0..n) whose bytes before
 * scan->scanned are poisoned, as the contract lets a resumed scan
 * assume those were checked already.
 */
static long scan_copy(struct smtp__reply_scan *scan, const char *bytes,
                      size_t n)
{
    char *p = exact_copy(bytes, n);
    long rc;

    memset(p, POISON, scan->scanned < n ? scan->scanned : n);
    rc = smtp__reply_scan(scan, p, n);
    free(p);
    return rc;
}

static void check_extract(const struct reply_case *c)
{
    char *p = exact_copy(c->bytes, (size_t)c->want);
    smtp_reply out;

    memset(&out, 0x55, sizeof(out));
    smtp__reply_extract(p, (size_t)c->want, &out);
    CHECK_ROW(c->label, out.code == c->code);
    CHECK_ROW(c->label, out.lines == c->lines);
    CHECK_ROW(c->label, out.text_len == c->text_len);
    CHECK_ROW(c->label, out.text == p);
    CHECK_ROW(c->label, out.text_len == c->text_len &&
              memcmp(out.text, c->text, c->text_len) == 0);
    CHECK_ROW(c->label, out.text[out.text_len] == '\0');
    CHECK_ROW(c->label, strcmp(out.enhanced, c->enhanced) == 0);
    free(p);
}

static void test_table_whole(void)
{
    for (size_t i = 0; i < N_CASES; i++) {
        const struct reply_case *c = &cases[i];
        struct smtp__reply_scan scan = {0};
        long rc = scan_copy(&scan, c->bytes, c->len);

        CHECK_ROW(c->label, rc == c->want);
        if (rc <= 0 || rc != c->want)
            continue;
        CHECK_ROW(c->label, scan.code == c->code);
        CHECK_ROW(c->label, scan.lines == c->lines);
        CHECK_ROW(c->label, scan.scanned == (size_t)rc);
        check_extract(c);
    }
}

/*
 * Scans bytes[0..k) and then, unless that already decided, the whole;
 * a prefix may decide early only with the answer the whole gives.
 */
static void test_table_every_split(void)
{
    for (size_t i = 0; i < N_CASES; i++) {
        const struct reply_case *c = &cases[i];

        for (size_t k = 0; k <= c->len; k++) {
            struct smtp__reply_scan scan = {0};
            long rc = scan_copy(&scan, c->bytes, k);

            if (rc == 0)
                rc = scan_copy(&scan, c->bytes, c->len);
            CHECK_ROW(c->label, rc == c->want);
            if (rc > 0)
                CHECK_ROW(c->label, scan.lines == c->lines &&
                          scan.code == c->code);
        }
    }
}

static void test_table_byte_at_a_time(void)
{
    for (size_t i = 0; i < N_CASES; i++) {
        const struct reply_case *c = &cases[i];
        struct smtp__reply_scan scan = {0};
        long rc = 0;

        for (size_t k = 1; k <= c->len && rc == 0; k++)
            rc = scan_copy(&scan, c->bytes, k);
        CHECK_ROW(c->label, rc == c->want);
        if (rc > 0)
            CHECK_ROW(c->label, scan.lines == c->lines &&
                      scan.code == c->code);
    }
}

/*
 * Writes a reply of `lines` lines and `total` bytes: "250-" lines, then
 * "250 " when `last` is set, each "x"-filled and ended by CRLF, the
 * extra bytes on the first lines.  Returns a heap buffer of total bytes.
 */
static char *make_reply(size_t total, int lines, int last)
{
    char *buf = malloc(total);
    size_t base = total / (size_t)lines, extra = total % (size_t)lines;
    size_t pos = 0;

    if (buf == NULL) {
        perror("malloc");
        exit(2);
    }
    for (int i = 0; i < lines; i++) {
        size_t n = base + ((size_t)i < extra ? 1 : 0);

        memcpy(buf + pos, "250-", 4);
        if (last && i == lines - 1)
            buf[pos + 3] = ' ';
        memset(buf + pos + 4, 'x', n - 6);
        memcpy(buf + pos + n - 2, "\r\n", 2);
        pos += n;
    }
    return buf;
}

struct cap_case {
    const char *label;
    size_t total;  /* bytes */
    int lines;
    int last;      /* the last line ends the reply */
    long want;
};

static const struct cap_case cap_cases[] = {
    {"line exactly at the line cap", SMTP__REPLY_LINE_MAX, 1, 1,
     SMTP__REPLY_LINE_MAX},
    {"line one over the line cap", SMTP__REPLY_LINE_MAX + 1, 1, 1,
     SMTP_ETOOBIG},
    {"reply exactly at the byte cap", SMTP__REPLY_MAX, 16, 1,
     SMTP__REPLY_MAX},
    {"reply one byte over the byte cap", SMTP__REPLY_MAX + 1, 17, 1,
     SMTP_ETOOBIG},
    {"continuation ends at the byte cap", SMTP__REPLY_MAX, 16, 0,
     SMTP_ETOOBIG},
    {"reply exactly at the line count cap", 200 * 8,
     SMTP__REPLY_LINES_MAX, 1, 200 * 8},
    {"reply one line over the line count cap", 201 * 8,
     SMTP__REPLY_LINES_MAX + 1, 1, SMTP_ETOOBIG},
    {"continuation as the last allowed line", 200 * 8,
     SMTP__REPLY_LINES_MAX, 0, SMTP_ETOOBIG},
};

#define N_CAP_CASES (sizeof(cap_cases) / sizeof(cap_cases[0]))

static void test_caps(void)
{
    for (size_t i = 0; i < N_CAP_CASES; i++) {
        const struct cap_case *c = &cap_cases[i];
        char *buf = make_reply(c->total, c->lines, c->last);
        struct smtp__reply_scan scan = {0};
        long rc = smtp__reply_scan(&scan, buf, c->total);

        CHECK_ROW(c->label, rc == c->want);

        memset(&scan, 0, sizeof(scan));
        rc = 0;
        for (size_t k = 1; k <= c->total && rc == 0; k++)
            rc = smtp__reply_scan(&scan, buf, k);
        CHECK_ROW(c->label, rc == c->want);

        if (rc > 0) {
            smtp_reply out;

            smtp__reply_extract(buf, (size_t)rc, &out);
            CHECK_ROW(c->label, out.lines == c->lines);
            CHECK_ROW(c->label, out.code == 250);
            CHECK_ROW(c->label, out.text[out.text_len] == '\0');
        }
        free(buf);
    }
}

/* Past a cap the scan fails with the bytes that prove it, no more. */
static void test_caps_fail_at_once(void)
{
    size_t mib = 1024 * 1024;
    char *flood = malloc(mib);
    struct smtp__reply_scan scan = {0};
    char *buf;

    if (flood == NULL) {
        perror("malloc");
        exit(2);
    }
    memcpy(flood, "250 ", 4);
    memset(flood + 4, 'x', mib - 4);
    CHECK(smtp__reply_scan(&scan, flood, mib) == SMTP_ETOOBIG);
    memset(&scan, 0, sizeof(scan));
    CHECK(smtp__reply_scan(&scan, flood, SMTP__REPLY_LINE_MAX - 1) == 0);
    CHECK(smtp__reply_scan(&scan, flood, SMTP__REPLY_LINE_MAX) ==
          SMTP_ETOOBIG);
    free(flood);

    /* Continuations up to 100 bytes short of the byte cap, then a line
     * that reaches the cap without its LF: the reply cannot fit. */
    buf = make_reply(SMTP__REPLY_MAX - 100, 16, 0);
    flood = malloc(SMTP__REPLY_MAX);
    if (flood == NULL) {
        perror("malloc");
        exit(2);
    }
    memcpy(flood, buf, SMTP__REPLY_MAX - 100);
    memcpy(flood + SMTP__REPLY_MAX - 100, "250 ", 4);
    memset(flood + SMTP__REPLY_MAX - 96, 'x', 96);
    memset(&scan, 0, sizeof(scan));
    CHECK(smtp__reply_scan(&scan, flood, SMTP__REPLY_MAX - 1) == 0);
    CHECK(smtp__reply_scan(&scan, flood, SMTP__REPLY_MAX) == SMTP_ETOOBIG);
    free(flood);
    free(buf);
}

/*
 * Feeds a 200-line reply one byte at a time, overwriting each line once
 * the scan has accepted it, so a call that went back over accepted lines
 * would fail.  It counts the bytes each call may look at (those past
 * scan.scanned): at most bytes times the longest line, where rescanning
 * from the start would cost bytes squared over two.
 */
static void test_byte_at_a_time_is_linear(void)
{
    enum { LINE = 24 };
    size_t total = (size_t)SMTP__REPLY_LINES_MAX * LINE;
    char *buf = make_reply(total, SMTP__REPLY_LINES_MAX, 1);
    struct smtp__reply_scan scan = {0};
    size_t work = 0, calls = 0, last_lf = 0;
    int lines_seen = 0, in_step = 1;
    long rc = 0;

    for (size_t k = 1; k <= total && rc == 0; k++) {
        work += k - scan.scanned;
        calls++;
        if (buf[k - 1] == '\n') {
            last_lf = k;
            lines_seen++;
        }
        rc = smtp__reply_scan(&scan, buf, k);
        if (rc == 0 && (scan.scanned != last_lf ||
                        scan.lines != lines_seen))
            in_step = 0;
        memset(buf, POISON, scan.scanned);
    }
    CHECK(rc == (long)total);
    CHECK(calls == total);
    CHECK(in_step);
    CHECK(scan.lines == SMTP__REPLY_LINES_MAX);
    CHECK(work <= total * LINE);
    free(buf);
}

int main(void)
{
    test_table_whole();
    test_table_every_split();
    test_table_byte_at_a_time();
    test_caps();
    test_caps_fail_at_once();
    test_byte_at_a_time_is_linear();
    if (row_failures)
        fprintf(stderr, "%d row checks failed\n", row_failures);
    CTEST_END();
}
