/*
 * reader.c - read_smtp and its variants: receive bytes, find one complete
 * reply, parse it in place into dc->last_reply.
 *
 * Received bytes wait in the connection's buffer, rbuf[rstart..rend), so
 * replies that arrive together (PIPELINING, or a server that writes two
 * at once) are each returned in turn without another read.  The buffer
 * never holds more than one reply's cap plus one read, so a hostile
 * server cannot make it grow without bound.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "engine.h"
#include "state_table.h"

#define RBUF_INITIAL 1024
#define RBUF_MAX SMTP_REPLY_BUFFER_MAX

/* Scans what is buffered; > 0 (complete), 0 or an error, as
 * smtp__reply_scan.  A finished scan is kept until the reply is taken:
 * scanning on from there would read the next reply as more lines. */
static long scan_buffered(struct smtp__conn *c)
{
    if (c->scanned_reply != 0)
        return c->scanned_reply;
    if (c->rstart == c->rend)
        return 0;
    c->scanned_reply = smtp__reply_scan(&c->scan, c->rbuf + c->rstart,
                                        c->rend - c->rstart);
    return c->scanned_reply;
}

bool smtp__conn_has_unread(struct smtp__conn *c)
{
    return scan_buffered(c) != 0;
}

/* Makes room for another read.  Returns 0 or SMTP_ENOMEM. */
static int rbuf_make_room(struct smtp__conn *c)
{
    if (c->rstart == c->rend) {
        c->rstart = c->rend = 0;
    } else if (c->rstart > 0 && c->rend == c->rcap) {
        memmove(c->rbuf, c->rbuf + c->rstart, c->rend - c->rstart);
        c->rend -= c->rstart;
        c->rstart = 0;
    }
    if (c->rend < c->rcap)
        return 0;

    size_t cap = c->rcap ? c->rcap * 2 : RBUF_INITIAL;
    if (cap > RBUF_MAX)
        cap = RBUF_MAX;
    if (cap <= c->rcap)
        return SMTP_ETOOBIG;
    char *buf = realloc(c->rbuf, cap);
    if (buf == NULL)
        return SMTP_ENOMEM;
    c->rbuf = buf;
    c->rcap = cap;
    smtp__note_reply_buffer(c->sched, cap);
    return 0;
}

/* One recv into the buffer.  Returns > 0 bytes, 0 for would-block, or a
 * negative SMTP_E* code. */
static long receive(struct smtp__conn *c)
{
    int r = rbuf_make_room(c);

    if (r != 0)
        return r;
    for (;;) {
        ssize_t n = recv(c->pub.fd, c->rbuf + c->rend, c->rcap - c->rend, 0);
        if (n > 0) {
            if (smtp__config(c->sched)->wire_trace)
                smtp__emit_wire(c, c->rbuf + c->rend, (size_t)n, 0);
            c->rend += (size_t)n;
            return n;
        }
        if (n == 0)
            return SMTP_ECLOSED;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return errno == ECONNRESET ? SMTP_ECLOSED : SMTP_EIO;
    }
}

/* Keeps the start of the line the scan refused, up to its LF, for
 * smtp__conn_fail to quote. */
static void keep_bad_line(struct smtp__conn *c)
{
    const char *line = c->rbuf + c->rstart + c->scan.scanned;
    size_t n = c->rend - c->rstart - c->scan.scanned;
    const char *lf;

    if (n > SMTP__BAD_REPLY_EXCERPT)
        n = SMTP__BAD_REPLY_EXCERPT;
    lf = memchr(line, '\n', n);
    if (lf != NULL)
        n = (size_t)(lf - line) + 1;
    memcpy(c->bad_reply, line, n);
    c->bad_reply_len = (unsigned char)n;
}

static int take_reply(struct smtp__conn *c, long len, const int *codes,
                      size_t n)
{
    smtp_reply *reply = &c->dc.last_reply;

    c->bad_reply_len = 0;
    smtp__reply_extract(c->rbuf + c->rstart, (size_t)len, reply);
    c->rstart += (size_t)len;
    memset(&c->scan, 0, sizeof(c->scan));
    c->scanned_reply = 0;
    smtp__emit(c, SMTP_EVENT_REPLY, reply->code, 0, reply->text,
               reply->text_len);
    for (size_t i = 0; i < n; i++) {
        if (codes[i] == reply->code)
            return reply->code;
    }
    return -reply->code;
}

SMTP_API int read_smtp_codes(delivery_construct *dc, struct timeval *now,
                             int *mask, const int *codes, size_t n)
{
    struct smtp__conn *c = smtp__conn_of_dc(dc);

    (void)now;
    if (c->closed)
        return SMTP_ECLOSED;
    /* No reply is ever due to an observer: one it read would be the
     * engine's, the chained group's MAIL FROM reply before all. */
    if (smtp__state_is_observer(c->pub.state))
        return smtp__fail(SMTP_EPROTO, "read_smtp_codes: state %s is an "
                          "observer and may not read a reply (rule: an "
                          "observer only looks and moves on)",
                          c->pub.state->name);
    for (;;) {
        long len = scan_buffered(c);
        if (len > 0)
            return take_reply(c, len, codes, n);
        if (len == SMTP_EPROTO)
            keep_bad_line(c);
        if (len < 0)
            return (int)len;

        long got = receive(c);
        if (got < 0)
            return (int)got;
        if (got == 0) {
            if (mask)
                *mask = SMTP_WANT_READ;
            return 0;
        }
    }
}

SMTP_API int read_smtp(delivery_construct *dc, int expected_code,
                       struct timeval *now, int *mask)
{
    return read_smtp_codes(dc, now, mask, &expected_code, 1);
}

#define EXTRA_CODES_MAX 16

SMTP_API int read_smtp2(delivery_construct *dc, int expected_code,
                        struct timeval *now, int *mask, int extra_codes, ...)
{
    int codes[EXTRA_CODES_MAX + 1] = {expected_code};
    size_t n = 1;
    int code = extra_codes;
    va_list ap;

    va_start(ap, extra_codes);
    while (code > 0 && n <= EXTRA_CODES_MAX) {
        codes[n++] = code;
        code = va_arg(ap, int);
    }
    va_end(ap);
    return read_smtp_codes(dc, now, mask, codes, n);
}
