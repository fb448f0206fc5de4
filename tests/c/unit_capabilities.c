/*
 * unit_capabilities.c - the EHLO keyword parser (csrc/capabilities.c),
 * table-driven, and smtp_parse_capabilities on a connection.
 *
 * Each row's text is parsed from a heap copy of exactly its length, with
 * no NUL after it, so a read past the end shows under the address
 * sanitizer.  SIZE limits at the edge of unsigned long are built at run
 * time, since its width is the platform's.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "capabilities.h"
#include "ctest.h"
#include "reply.h"

#define AUTH_BITS(m) (SMTP_CAP_AUTH | (m))

struct caps_case {
    const char *label;
    const char *text;
    size_t len;           /* bytes of text given to the parser */
    unsigned long caps;
    unsigned long max_size;
};

#define ROW(label, text, caps, size) {label, text, sizeof(text) - 1, caps, size}
/* Only the first n bytes of the text are the parser's to read. */
#define CUT(label, text, n, caps, size) {label, text, n, caps, size}

static const struct caps_case cases[] = {
    ROW("empty text", "", 0, 0),
    ROW("greeting only", "mx.example greets you", 0, 0),
    ROW("greeting is not a keyword", "PIPELINING", 0, 0),
    ROW("greeting then empty line", "mx\n", 0, 0),
    ROW("PIPELINING", "mx\nPIPELINING", SMTP_CAP_PIPELINING, 0),
    ROW("8BITMIME", "mx\n8BITMIME", SMTP_CAP_8BITMIME, 0),
    ROW("SMTPUTF8", "mx\nSMTPUTF8", SMTP_CAP_SMTPUTF8, 0),
    ROW("STARTTLS", "mx\nSTARTTLS", SMTP_CAP_STARTTLS, 0),
    ROW("ENHANCEDSTATUSCODES", "mx\nENHANCEDSTATUSCODES",
        SMTP_CAP_ENHANCEDSTATUSCODES, 0),
    ROW("CHUNKING", "mx\nCHUNKING", SMTP_CAP_CHUNKING, 0),
    ROW("DSN", "mx\nDSN", SMTP_CAP_DSN, 0),
    ROW("XCLIENT with attributes", "mx\nXCLIENT NAME ADDR PORT PROTO HELO",
        SMTP_CAP_XCLIENT, 0),
    ROW("XCLIENT bare", "mx\nXCLIENT", SMTP_CAP_XCLIENT, 0),
    ROW("lower case", "mx\npipelining\nstarttls",
        SMTP_CAP_PIPELINING | SMTP_CAP_STARTTLS, 0),
    ROW("mixed case", "mx\nPiPeLiNiNg", SMTP_CAP_PIPELINING, 0),
    ROW("trailing LF", "mx\nDSN\n", SMTP_CAP_DSN, 0),
    ROW("leading and trailing blanks", "mx\n  \tDSN \t", SMTP_CAP_DSN, 0),
    ROW("CR LF kept in text", "mx\r\nPIPELINING\r\nDSN\r\n",
        SMTP_CAP_PIPELINING | SMTP_CAP_DSN, 0),

    /* SIZE. */
    ROW("SIZE with value", "mx\nSIZE 35882577", SMTP_CAP_SIZE, 35882577),
    ROW("SIZE bare", "mx\nSIZE", SMTP_CAP_SIZE, 0),
    ROW("SIZE zero", "mx\nSIZE 0", SMTP_CAP_SIZE, 0),
    ROW("SIZE lower case", "mx\nsize 1000", SMTP_CAP_SIZE, 1000),
    ROW("SIZE leading zeros", "mx\nSIZE 007", SMTP_CAP_SIZE, 7),
    ROW("SIZE extra blanks", "mx\nSIZE   42  ", SMTP_CAP_SIZE, 42),
    ROW("SIZE digits then letters", "mx\nSIZE 12abc", SMTP_CAP_SIZE, 0),
    ROW("SIZE letters", "mx\nSIZE abc", SMTP_CAP_SIZE, 0),
    ROW("SIZE negative", "mx\nSIZE -1", SMTP_CAP_SIZE, 0),
    ROW("SIZE plus sign", "mx\nSIZE +5", SMTP_CAP_SIZE, 0),
    ROW("SIZE hexadecimal", "mx\nSIZE 0x10", SMTP_CAP_SIZE, 0),
    ROW("SIZE decimal point", "mx\nSIZE 1.5", SMTP_CAP_SIZE, 0),
    ROW("SIZE glued to value", "mx\nSIZE100", 0, 0),
    ROW("SIZE with NUL in value", "mx\nSIZE 1\0002", SMTP_CAP_SIZE, 0),
    ROW("SIZE later line wins", "mx\nSIZE 10\nSIZE 20", SMTP_CAP_SIZE, 20),
    CUT("SIZE value cut by len", "mx\nSIZE 12345", 10, SMTP_CAP_SIZE, 12),

    /* AUTH. */
    ROW("AUTH PLAIN LOGIN", "mx\nAUTH PLAIN LOGIN",
        AUTH_BITS(SMTP_CAP_AUTH_PLAIN | SMTP_CAP_AUTH_LOGIN), 0),
    ROW("AUTH CRAM-MD5 XOAUTH2", "mx\nAUTH CRAM-MD5 XOAUTH2",
        AUTH_BITS(SMTP_CAP_AUTH_CRAM_MD5 | SMTP_CAP_AUTH_XOAUTH2), 0),
    ROW("AUTH every mechanism", "mx\nAUTH PLAIN LOGIN CRAM-MD5 XOAUTH2",
        AUTH_BITS(SMTP_CAP_AUTH_PLAIN | SMTP_CAP_AUTH_LOGIN |
                  SMTP_CAP_AUTH_CRAM_MD5 | SMTP_CAP_AUTH_XOAUTH2), 0),
    ROW("AUTH lower case", "mx\nauth plain cram-md5",
        AUTH_BITS(SMTP_CAP_AUTH_PLAIN | SMTP_CAP_AUTH_CRAM_MD5), 0),
    ROW("AUTH unknown mechanism only", "mx\nAUTH GSSAPI NTLM",
        SMTP_CAP_AUTH, 0),
    ROW("AUTH bare", "mx\nAUTH", SMTP_CAP_AUTH, 0),
    ROW("AUTH mechanism prefixes", "mx\nAUTH PLAINX LOGI CRAM-MD",
        SMTP_CAP_AUTH, 0),
    ROW("AUTH= old form", "mx\nAUTH=LOGIN PLAIN",
        AUTH_BITS(SMTP_CAP_AUTH_LOGIN | SMTP_CAP_AUTH_PLAIN), 0),
    ROW("AUTH= old form lower case", "mx\nauth=login",
        AUTH_BITS(SMTP_CAP_AUTH_LOGIN), 0),
    ROW("AUTH= with no mechanism", "mx\nAUTH=", SMTP_CAP_AUTH, 0),
    ROW("AUTH and AUTH= together", "mx\nAUTH PLAIN\nAUTH=LOGIN",
        AUTH_BITS(SMTP_CAP_AUTH_PLAIN | SMTP_CAP_AUTH_LOGIN), 0),
    ROW("AUTH glued to mechanism", "mx\nAUTHPLAIN", 0, 0),
    CUT("AUTH mechanism cut by len", "mx\nAUTH LOGINX", 13,
        AUTH_BITS(SMTP_CAP_AUTH_LOGIN), 0),

    /* Whole words only; unknown keywords are ignored. */
    ROW("keyword with suffix", "mx\nPIPELININGX", 0, 0),
    ROW("keyword with prefix", "mx\nXPIPELINING", 0, 0),
    ROW("keyword truncated", "mx\nPIPELININ", 0, 0),
    ROW("keyword with =", "mx\nPIPELINING=1", 0, 0),
    ROW("keyword with NUL", "mx\nPIPE\0LINING", 0, 0),
    ROW("keyword as a parameter", "mx\nX-FOO PIPELINING", 0, 0),
    ROW("unknown keywords", "mx\nVRFY\nETRN\nHELP\nX-EXPS GSSAPI", 0, 0),
    ROW("8-bit keyword", "mx\n\xc3\xa9t\xc3\xa9", 0, 0),
    CUT("keyword cut by len", "mx\nPIPELININGX", 13, SMTP_CAP_PIPELINING,
        0),
    CUT("suffix past len", "mx\nDSNX", 6, SMTP_CAP_DSN, 0),

    /* Whole replies as servers send them. */
    ROW("Postfix",
        "mail.example.org\nPIPELINING\nSIZE 10240000\nVRFY\nETRN\n"
        "STARTTLS\nENHANCEDSTATUSCODES\n8BITMIME\nDSN\nSMTPUTF8\n"
        "CHUNKING",
        SMTP_CAP_PIPELINING | SMTP_CAP_SIZE | SMTP_CAP_STARTTLS |
        SMTP_CAP_ENHANCEDSTATUSCODES | SMTP_CAP_8BITMIME | SMTP_CAP_DSN |
        SMTP_CAP_SMTPUTF8 | SMTP_CAP_CHUNKING, 10240000),
    ROW("Exim with old AUTH",
        "mx.example Hello h [192.0.2.1]\nSIZE 52428800\n8BITMIME\n"
        "PIPELINING\nAUTH PLAIN LOGIN\nAUTH=PLAIN LOGIN\nHELP",
        SMTP_CAP_SIZE | SMTP_CAP_8BITMIME | SMTP_CAP_PIPELINING |
        AUTH_BITS(SMTP_CAP_AUTH_PLAIN | SMTP_CAP_AUTH_LOGIN), 52428800),
};

#define N_CASES (sizeof(cases) / sizeof(cases[0]))

/* A CHECK that also names the row, so a broken row is found at once. */
#define CHECK_ROW(label, expr)                                             \
    do {                                                                   \
        int ok_ = (expr);                                                  \
        CHECK(ok_);                                                        \
        if (!ok_)                                                          \
            fprintf(stderr, "    row: %s\n", label);                       \
    } while (0)

/* Parses an exact-size heap copy of text[0..len). */
static unsigned long parse_copy(const char *text, size_t len,
                                unsigned long *max_size)
{
    char *p = malloc(len ? len : 1);
    unsigned long caps;

    if (p == NULL) {
        perror("malloc");
        exit(2);
    }
    memcpy(p, text, len);
    caps = smtp__capabilities_parse(p, len, max_size);
    free(p);
    return caps;
}

static void test_table(void)
{
    for (size_t i = 0; i < N_CASES; i++) {
        const struct caps_case *c = &cases[i];
        unsigned long max_size = 12345; /* must be overwritten */
        unsigned long caps = parse_copy(c->text, c->len, &max_size);

        CHECK_ROW(c->label, caps == c->caps);
        CHECK_ROW(c->label, max_size == c->max_size);
    }
}

/* Parses "mx\nSIZE <value>" and returns the limit found. */
static unsigned long size_of(const char *value)
{
    char text[64];
    unsigned long max_size = 12345;
    int n = snprintf(text, sizeof(text), "mx\nSIZE %s", value);

    CHECK(n > 0 && (size_t)n < sizeof(text));
    CHECK(parse_copy(text, (size_t)n, &max_size) == SMTP_CAP_SIZE);
    return max_size;
}

/* The largest unsigned long fits; one more, or ten times it, does not. */
static void test_size_overflow(void)
{
    char max[32], over[32], times_ten[40];
    size_t n;

    snprintf(max, sizeof(max), "%lu", ULONG_MAX);
    n = strlen(max);
    CHECK(max[n - 1] != '9'); /* 2^k - 1 never ends in 9 */
    memcpy(over, max, n + 1);
    over[n - 1]++;
    snprintf(times_ten, sizeof(times_ten), "%s0", max);

    CHECK(size_of(max) == ULONG_MAX);
    CHECK(size_of(over) == 0);
    CHECK(size_of(times_ten) == 0);
    CHECK(size_of("99999999999999999999999999999999") == 0);
}

static void test_public_function(void)
{
    static const char text[] = "mx\nPIPELINING\nSIZE 1000\nAUTH LOGIN";
    delivery_construct dc;
    connection conn;

    memset(&dc, 0, sizeof(dc));
    memset(&conn, 0, sizeof(conn));
    conn.capabilities = ~0UL;
    conn.max_size = 7;
    dc.last_reply.code = 250;
    dc.last_reply.text = text;
    dc.last_reply.text_len = sizeof(text) - 1;

    smtp_parse_capabilities(&dc, &conn);
    CHECK(conn.capabilities == (SMTP_CAP_PIPELINING | SMTP_CAP_SIZE |
                                AUTH_BITS(SMTP_CAP_AUTH_LOGIN)));
    CHECK(conn.max_size == 1000);
    CHECK(conn.esmtp == 1);
    CHECK(smtp_last_error_code() == 0);

    /* text_len, not the NUL, bounds the text. */
    dc.last_reply.text_len = strlen("mx\nPIPELINING");
    smtp_parse_capabilities(&dc, &conn);
    CHECK(conn.capabilities == SMTP_CAP_PIPELINING);
    CHECK(conn.max_size == 0);

    /* No reply text: no capabilities, still ESMTP. */
    dc.last_reply.text = NULL;
    dc.last_reply.text_len = 5;
    conn.esmtp = 0;
    smtp_parse_capabilities(&dc, &conn);
    CHECK(conn.capabilities == 0 && conn.max_size == 0);
    CHECK(conn.esmtp == 1);

    smtp_parse_capabilities(NULL, &conn);
    CHECK(smtp_last_error_code() == SMTP_ENULL);
    CHECK(strstr(smtp_last_error(), "rule:") != NULL);
    smtp_parse_capabilities(&dc, NULL);
    CHECK(smtp_last_error_code() == SMTP_ENULL);
}

/* From the wire: the reply reader's text feeds the parser directly. */
static void test_from_wire(void)
{
    char wire[] = "250-mx.example greets you\r\n250-PIPELINING\r\n"
                  "250-SIZE 52428800\r\n250-AUTH=LOGIN\r\n"
                  "250 SMTPUTF8\r\n";
    struct smtp__reply_scan scan = {0};
    long n = smtp__reply_scan(&scan, wire, sizeof(wire) - 1);
    delivery_construct dc;
    connection conn;

    CHECK(n == (long)sizeof(wire) - 1);
    if (n <= 0)
        return;
    memset(&dc, 0, sizeof(dc));
    memset(&conn, 0, sizeof(conn));
    smtp__reply_extract(wire, (size_t)n, &dc.last_reply);
    smtp_parse_capabilities(&dc, &conn);
    CHECK(conn.capabilities == (SMTP_CAP_PIPELINING | SMTP_CAP_SIZE |
                                AUTH_BITS(SMTP_CAP_AUTH_LOGIN) |
                                SMTP_CAP_SMTPUTF8));
    CHECK(conn.max_size == 52428800);
    CHECK(conn.esmtp == 1);
}

int main(void)
{
    test_table();
    test_size_overflow();
    test_public_function();
    test_from_wire();
    CTEST_END();
}
