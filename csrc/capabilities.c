/*
 * capabilities.c - the EHLO reply's keywords as SMTP_CAP_* bits, and the
 * SIZE limit.
 *
 * The parser reads the reply's text (lines joined by "\n") within the
 * length it is given and never writes it.  A keyword matches a whole
 * word, in ASCII without case, whatever the locale; an unknown keyword,
 * or a parameter that does not parse, is ignored and costs nothing but
 * its own bit or value.  Only smtp_parse_capabilities touches a
 * connection.
 */
#include <limits.h>
#include <stdbool.h>
#include <string.h>

#include "capabilities.h"
#include "internal.h"

struct word {
    const char *p;
    size_t n;
};

struct name_bit {
    const char *name;
    unsigned long bit;
};

/* Keywords that only set a bit; SIZE and AUTH take parameters. */
static const struct name_bit plain_keywords[] = {
    {"PIPELINING", SMTP_CAP_PIPELINING},
    {"8BITMIME", SMTP_CAP_8BITMIME},
    {"SMTPUTF8", SMTP_CAP_SMTPUTF8},
    {"STARTTLS", SMTP_CAP_STARTTLS},
    {"ENHANCEDSTATUSCODES", SMTP_CAP_ENHANCEDSTATUSCODES},
    {"CHUNKING", SMTP_CAP_CHUNKING},
    {"DSN", SMTP_CAP_DSN},
    {"XCLIENT", SMTP_CAP_XCLIENT},
};

static const struct name_bit auth_mechanisms[] = {
    {"PLAIN", SMTP_CAP_AUTH_PLAIN},
    {"LOGIN", SMTP_CAP_AUTH_LOGIN},
    {"CRAM-MD5", SMTP_CAP_AUTH_CRAM_MD5},
    {"XOAUTH2", SMTP_CAP_AUTH_XOAUTH2},
};

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* The old "AUTH=LOGIN PLAIN" form some servers still send. */
#define AUTH_EQ "AUTH="
#define AUTH_EQ_LEN (sizeof(AUTH_EQ) - 1)

static char ascii_upper(char c)
{
    return (c >= 'a' && c <= 'z') ? (char)(c - 'a' + 'A') : c;
}

/* True when w is exactly `name` (upper case), ignoring ASCII case. */
static bool word_is(struct word w, const char *name)
{
    size_t n = strlen(name);

    if (w.n != n)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (ascii_upper(w.p[i]) != name[i])
            return false;
    }
    return true;
}

/* A CR is a separator too, for text that kept its CR LF. */
static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r';
}

/* The next word of p[0..n) from *pos on; n == 0 when none is left. */
static struct word next_word(const char *p, size_t n, size_t *pos)
{
    struct word w;

    while (*pos < n && is_blank(p[*pos]))
        (*pos)++;
    w.p = p + *pos;
    while (*pos < n && !is_blank(p[*pos]))
        (*pos)++;
    w.n = (size_t)(p + *pos - w.p);
    return w;
}

static unsigned long lookup(const struct name_bit *table, size_t len,
                            struct word w)
{
    for (size_t i = 0; i < len; i++) {
        if (word_is(w, table[i].name))
            return table[i].bit;
    }
    return 0;
}

/* A SIZE value: decimal digits only, 0 when empty, garbage or too big
 * for an unsigned long (RFC 1870 also reads 0 as "no fixed limit"). */
static unsigned long parse_size(struct word w)
{
    unsigned long v = 0;

    for (size_t i = 0; i < w.n; i++) {
        unsigned long d;

        if (w.p[i] < '0' || w.p[i] > '9')
            return 0;
        d = (unsigned long)(w.p[i] - '0');
        if (v > (ULONG_MAX - d) / 10)
            return 0;
        v = v * 10 + d;
    }
    return v;
}

/* The mechanism bits of the words left in p[*pos..n), plus `first`. */
static unsigned long parse_auth(struct word first, const char *p, size_t n,
                                size_t *pos)
{
    unsigned long caps = SMTP_CAP_AUTH;
    struct word w = first;

    /* Each pass consumes a word, so there are at most n + 1 passes. */
    for (size_t pass = 0; pass <= n; pass++) {
        caps |= lookup(auth_mechanisms, COUNT(auth_mechanisms), w);
        w = next_word(p, n, pos);
        if (w.n == 0)
            break;
    }
    return caps;
}

static bool starts_auth_eq(struct word w)
{
    struct word head = {w.p, AUTH_EQ_LEN};

    return w.n >= AUTH_EQ_LEN && word_is(head, AUTH_EQ);
}

/* The bits one EHLO line (without its code) offers; SIZE sets *max_size. */
static unsigned long parse_line(const char *p, size_t n,
                                unsigned long *max_size)
{
    size_t pos = 0;
    struct word kw = next_word(p, n, &pos);

    if (word_is(kw, "SIZE")) {
        *max_size = parse_size(next_word(p, n, &pos));
        return SMTP_CAP_SIZE;
    }
    if (word_is(kw, "AUTH")) {
        struct word no_mech = {p + pos, 0};

        return parse_auth(no_mech, p, n, &pos);
    }
    if (starts_auth_eq(kw)) {
        struct word mech = {kw.p + AUTH_EQ_LEN, kw.n - AUTH_EQ_LEN};

        return parse_auth(mech, p, n, &pos);
    }
    return lookup(plain_keywords, COUNT(plain_keywords), kw);
}

unsigned long smtp__capabilities_parse(const char *text, size_t len,
                                       unsigned long *max_size)
{
    unsigned long caps = 0;
    const char *nl;
    size_t pos;

    *max_size = 0;
    nl = len > 0 ? memchr(text, '\n', len) : NULL;
    if (nl == NULL)
        return 0; /* the greeting alone: no keywords */

    pos = (size_t)(nl - text) + 1;
    while (pos < len) {
        const char *line = text + pos;
        const char *end = memchr(line, '\n', len - pos);
        size_t n = end ? (size_t)(end - line) : len - pos;

        caps |= parse_line(line, n, max_size);
        pos += n + 1;
    }
    return caps;
}

SMTP_API void smtp_parse_capabilities(delivery_construct *dc,
                                      connection *conn)
{
    const smtp_reply *reply;

    if (dc == NULL || conn == NULL) {
        smtp__fail(SMTP_ENULL, "smtp_parse_capabilities: %s is NULL "
                   "(rule: a delivery context and a connection are "
                   "required)", dc == NULL ? "dc" : "conn");
        return;
    }

    reply = &dc->last_reply;
    conn->capabilities = smtp__capabilities_parse(
        reply->text, reply->text != NULL ? reply->text_len : 0,
        &conn->max_size);
    conn->esmtp = 1;
    smtp__succeed();
}
