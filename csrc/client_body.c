/*
 * client_body.c - the body and its confirmation.
 *
 * The body is streamed straight from the caller's buffer (or read from
 * the file in chunks) through the encoder into a chunk buffer the
 * connection holds only while in this state, so its canonical form and
 * dot-stuffing cost no copy of the whole message.  Each writable event
 * sends a bounded number of chunks, so one large body does not starve
 * other connections.  A message is delivered only on a 2xx to the end of
 * its data.
 *
 * The body deadline is the server's inactivity, not the engine's: when it
 * fires, the body goes on if the server acknowledged bytes since the last
 * look.  The engine's own writes are no measure of a slow reader: the
 * kernel reports a send buffer autotuned to megabytes writable again only
 * once a third of it has drained, which can take longer than the deadline
 * while the server reads steadily.
 */
#include <errno.h>
#include <linux/sockios.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "client_states.h"

#define BODY_CHUNK 65536
#define CHUNKS_PER_EVENT 16

/* Body bytes in the kernel the server has not acknowledged (SIOCOUTQ),
 * or SIZE_MAX when that cannot be told. */
static size_t unacked(struct smtp__conn *c)
{
    int n = 0;

    if (ioctl(c->pub.fd, SIOCOUTQ, &n) != 0 || n < 0)
        return SIZE_MAX;
    return (size_t)n;
}

int smtp__body_setup(const smtp_state *self, delivery_construct *dc,
                     connection_handle *connh, struct timeval *now)
{
    struct smtp__conn *c = smtp__conn_of(connh->conn);

    (void)self, (void)dc, (void)now;
    if (c->rstart < c->rend) {
        if (!smtp__take_421(c))
            smtp__conn_fail(c, SMTP_EPROTO, "the server sent bytes after "
                            "its 354, before the body");
        return SMTP_EPROTO;
    }
    c->body_buf = malloc(BODY_CHUNK);
    if (c->body_buf == NULL)
        return SMTP_ENOMEM;
    if (c->txn.body_fd >= 0) {
        c->in_buf = malloc(BODY_CHUNK);
        if (c->in_buf == NULL)
            return SMTP_ENOMEM;
    }
    c->body_start = c->body_end = 0;
    c->in_start = c->in_end = 0;
    c->txn.body_pos = 0;
    c->txn.body_done = false;
    c->txn.body_unacked = unacked(c);
    smtp__body_encoder_init(&c->txn.enc,
                            smtp__config(c->sched)->fold_long_lines);
    return SMTP_WANT_WRITE;
}

void smtp__body_free(const smtp_state *self, connection *conn)
{
    struct smtp__conn *c = smtp__conn_of(conn);

    (void)self;
    free(c->body_buf);
    free(c->in_buf);
    c->body_buf = NULL;
    c->in_buf = NULL;
    c->body_start = c->body_end = 0;
    c->in_start = c->in_end = 0;
}

/* The next input bytes, from memory or read from the file: sets *in and
 * returns how many are there (0 at the end), or SMTP_EIO. */
static long body_input(struct smtp__conn *c, const char **in)
{
    struct smtp__txn *t = &c->txn;

    if (t->body_fd < 0) {
        *in = t->body + t->body_pos;
        return (long)(t->body_len - t->body_pos);
    }
    if (c->in_start == c->in_end && !t->file_eof) {
        size_t want = t->body_len - t->file_off;
        ssize_t n = 0;

        if (want > BODY_CHUNK)
            want = BODY_CHUNK;
        if (want > 0)
            n = pread(t->body_fd, c->in_buf, want, (off_t)t->file_off);
        if (n < 0 && errno != EINTR)
            return SMTP_EIO;
        /* The file was cut short after MAIL FROM: what was sent is not
         * the message, so it must not be confirmed. */
        if (want > 0 && n == 0)
            return SMTP_EIO;
        c->in_start = 0;
        c->in_end = n > 0 ? (size_t)n : 0;
        t->file_off += c->in_end;
        t->file_eof = t->file_off >= t->body_len;
    }
    *in = c->in_buf + c->in_start;
    return (long)(c->in_end - c->in_start);
}

static void body_consumed(struct smtp__conn *c, size_t used)
{
    if (c->txn.body_fd < 0)
        c->txn.body_pos += used;
    else
        c->in_start += used;
}

/* Encodes the next chunk of the body, or its end.  Returns 0 or
 * SMTP_EIO when the file cannot be read. */
static int body_fill(struct smtp__conn *c)
{
    struct smtp__txn *t = &c->txn;
    const char *in = NULL;
    long avail = body_input(c, &in);
    size_t used = 0;

    if (avail < 0)
        return (int)avail;
    c->body_start = 0;
    c->body_end = 0;
    if (avail > 0) {
        c->body_end = smtp__body_encode(&t->enc, in, (size_t)avail, &used,
                                        c->body_buf, BODY_CHUNK);
        body_consumed(c, used);
        return 0;
    }
    c->body_end = smtp__body_finish(&t->enc, c->body_buf, BODY_CHUNK);
    t->body_done = true;
    return 0;
}

/* Sends what is encoded.  Returns bytes sent (0: socket full) or a
 * negative SMTP_E* code. */
static long body_send(struct smtp__conn *c)
{
    for (;;) {
        ssize_t n = send(c->pub.fd, c->body_buf + c->body_start,
                         c->body_end - c->body_start, MSG_NOSIGNAL);
        if (n >= 0) {
            if (smtp__config(c->sched)->wire_trace)
                smtp__emit_wire(c, c->body_buf + c->body_start, (size_t)n,
                                1);
            c->body_start += (size_t)n;
            return n;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return errno == EPIPE || errno == ECONNRESET ? SMTP_ECLOSED
                                                     : SMTP_EIO;
    }
}

int smtp__body_callback(SMTP__CALLBACK_PARAMS)
{
    struct smtp__conn *c = smtp__conn_of(conn);
    bool progress = false;

    (void)e, (void)domain, (void)binding_slot, (void)am;
    if (events & E_TIMEOUT) {
        size_t left = unacked(c);

        if (left >= c->txn.body_unacked)
            return smtp__conn_fail(c, SMTP_ETIMEOUT, "the server stopped "
                                   "reading the body");
        c->txn.body_unacked = left;
        smtp_conn_set_deadline(conn, smtp__config(c->sched)
                               ->timeout_ms[SMTP_TIMEOUT_BODY]);
        return SMTP_WANT_WRITE;
    }
    for (int i = 0; i < CHUNKS_PER_EVENT; i++) {
        if (c->body_start == c->body_end) {
            if (c->txn.body_done) {
                smtp_next_state(dc, connh, NULL, now);
                return SMTP_WANT_READ;
            }
            if (body_fill(c) != 0)
                return smtp__conn_fail(c, SMTP_EIO, "the message file "
                                       "could not be read to its end "
                                       "while it was sent");
            if (c->body_start == c->body_end)
                continue; /* a CR held for the next chunk */
        }

        long n = body_send(c);
        if (n < 0 && smtp__take_421(c))
            return 0; /* the server said why it closed */
        if (n < 0)
            return smtp__conn_fail(c, (int)n, "sending the body: %s",
                                   smtp_strerror((int)n));
        if (n == 0)
            break;
        progress = true;
    }
    if (progress) {
        c->txn.body_unacked = unacked(c);
        smtp_conn_set_deadline(conn, smtp__config(c->sched)
                               ->timeout_ms[SMTP_TIMEOUT_BODY]);
    }
    return SMTP_WANT_WRITE;
}

/* ---- the reply to the end of the data ------------------------------------ */

int smtp__confirmation_setup(const smtp_state *self, delivery_construct *dc,
                             connection_handle *connh, struct timeval *now)
{
    (void)self, (void)dc, (void)connh, (void)now;
    return SMTP_WANT_READ;
}

int smtp__confirmation_callback(SMTP__CALLBACK_PARAMS)
{
    struct smtp__conn *c = smtp__conn_of(conn);
    static const int ok[] = {250, 251, 252};
    int code, ret, kind;

    (void)e, (void)domain, (void)binding_slot, (void)am;
    if (!smtp__await_reply(c, events, ok, 3, &code, &ret))
        return ret;
    c->txn.in_data = false;
    if (code > 0)
        kind = SMTP_OUTCOME_DELIVERED;
    else if (-code < 500)
        kind = SMTP_OUTCOME_TRANSIENT;
    else
        kind = SMTP_OUTCOME_PERMANENT;
    smtp__settle_accepted(c, kind, SMTP_STAGE_CONFIRMATION);
    if (kind == SMTP_OUTCOME_DELIVERED)
        conn->deliveries++;
    c->txn.open = false;
    smtp__jump(c, SMTP_STATE_TRANSACTION, now);
    (void)dc, (void)connh;
    return SMTP_WANT_READ;
}
