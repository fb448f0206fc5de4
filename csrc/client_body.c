/*
 * client_body.c - the body and its confirmation.
 *
 * The body is streamed straight from the caller's buffer (or read from
 * the file in chunks) through the encoder into the scheduler's scratch
 * buffer and sent from there, so its canonical form and dot-stuffing
 * cost no copy of the whole message, and a body that fits one chunk
 * costs one write and no allocation.  Each writable event sends a
 * bounded number of chunks, so one large body does not starve other
 * connections.  A message is delivered only on a 2xx to the end of its
 * data.
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
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "client_states.h"

#define BODY_CHUNK SMTP__SCRATCH_HALF
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
    c->body_start = c->body_end = 0;
    c->txn.body_pos = 0;
    c->txn.body_done = false;
    c->txn.body_looked = false;
    smtp__body_encoder_init(&c->txn.enc,
                            smtp__config(c->sched)->fold_long_lines);
    return SMTP_WANT_WRITE;
}

void smtp__body_free(const smtp_state *self, connection *conn)
{
    struct smtp__conn *c = smtp__conn_of(conn);

    (void)self;
    free(c->body_buf);
    c->body_buf = NULL;
    c->body_start = c->body_end = c->body_cap = 0;
}

/* The next input bytes, from memory or read from the file into in_buf:
 * sets *in and returns how many are there (0 at the end), or SMTP_EIO.
 * A file is read at the offset of the first byte not yet encoded, so
 * bytes the encoder left over are read again rather than kept. */
static long body_input(struct smtp__conn *c, char *in_buf, const char **in)
{
    struct smtp__txn *t = &c->txn;
    size_t want;
    ssize_t n;

    if (t->body_fd < 0) {
        *in = t->body + t->body_pos;
        return (long)(t->body_len - t->body_pos);
    }
    want = t->body_len - t->file_off;
    if (want > BODY_CHUNK)
        want = BODY_CHUNK;
    if (want == 0)
        return 0;
    do
        n = pread(t->body_fd, in_buf, want, (off_t)t->file_off);
    while (n < 0 && errno == EINTR);
    /* The file was cut short after MAIL FROM: what was sent is not the
     * message, so it must not be confirmed. */
    if (n <= 0)
        return SMTP_EIO;
    *in = in_buf;
    return (long)n;
}

static void body_consumed(struct smtp__conn *c, size_t used)
{
    if (c->txn.body_fd < 0)
        c->txn.body_pos += used;
    else
        c->txn.file_off += used;
}

static bool body_input_done(const struct smtp__conn *c)
{
    const struct smtp__txn *t = &c->txn;

    return (t->body_fd < 0 ? t->body_pos : t->file_off) >= t->body_len;
}

/* Encodes the next part of the body into out[0..BODY_CHUNK), and the end
 * of data after the last input byte when it fits, so that a body that
 * fits one chunk goes out with its final dot in one write.  Returns the
 * bytes written (0: a CR held for the next chunk) or SMTP_EIO. */
static long body_fill(struct smtp__conn *c, char *out, char *in_buf)
{
    struct smtp__txn *t = &c->txn;
    const char *in = NULL;
    long avail = body_input(c, in_buf, &in);
    size_t n = 0;

    if (avail < 0)
        return avail;
    if (avail > 0) {
        size_t used = 0;

        n = smtp__body_encode(&t->enc, in, (size_t)avail, &used, out,
                              BODY_CHUNK);
        body_consumed(c, used);
        if (!body_input_done(c))
            return (long)n;
    }
    if (BODY_CHUNK - n >= SMTP__BODY_END_MAX) {
        n += smtp__body_finish(&t->enc, out + n, BODY_CHUNK - n);
        t->body_done = true;
    }
    return (long)n;
}

/* One wire event per part of the iovec that went out, the first `sent`
 * bytes of it. */
static void trace_sent(struct smtp__conn *c, const struct iovec *iov,
                       int iovcnt, size_t sent)
{
    for (int i = 0; i < iovcnt && sent > 0; i++) {
        size_t part = sent < iov[i].iov_len ? sent : iov[i].iov_len;
        smtp__emit_wire(c, iov[i].iov_base, part, 1);
        sent -= part;
    }
}

/* Sends the iovec's bytes in one call.  Returns bytes sent (0: socket
 * full) or a negative SMTP_E* code. */
static long body_sendv(struct smtp__conn *c, struct iovec *iov, int iovcnt)
{
    struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
    size_t len = 0;

    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    for (;;) {
        ssize_t n = iovcnt == 1
                        ? send(c->pub.fd, iov[0].iov_base, len, MSG_NOSIGNAL)
                        : sendmsg(c->pub.fd, &mh, MSG_NOSIGNAL);
        if (n >= 0) {
            if (smtp__config(c->sched)->wire_trace)
                trace_sent(c, iov, iovcnt, (size_t)n);
            c->write_blocked = (size_t)n < len;
            return n;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->write_blocked = true;
            return 0;
        }
        return errno == EPIPE || errno == ECONNRESET ? SMTP_ECLOSED
                                                     : SMTP_EIO;
    }
}

static long body_send(struct smtp__conn *c, const char *buf, size_t len)
{
    struct iovec iov = {(void *)buf, len};

    return body_sendv(c, &iov, 1);
}

/* Keeps what the socket did not take of an encoded chunk for the next
 * writable event, and the output queued behind it (the next
 * transaction's commands, chained behind the last chunk), so that both
 * go out in order.  Returns 0 or SMTP_ENOMEM. */
static int body_keep(struct smtp__conn *c, const char *rest, size_t len)
{
    size_t queued = c->wend - c->wstart;
    size_t need = len + queued;

    if (need > c->body_cap) {
        size_t cap = need > BODY_CHUNK ? need : BODY_CHUNK;
        char *buf = realloc(c->body_buf, cap);
        if (buf == NULL)
            return SMTP_ENOMEM;
        c->body_buf = buf;
        c->body_cap = cap;
    }
    memcpy(c->body_buf, rest, len);
    if (queued > 0)
        memcpy(c->body_buf + len, c->wbuf + c->wstart, queued);
    c->wstart = c->wend = 0;
    c->body_start = 0;
    c->body_end = need;
    return 0;
}

/*
 * Sends the body's last chunk and, in the same call, the output queued
 * behind it: the next transaction's commands when they were chained.
 * The server then reads the end of data and the next MAIL FROM together
 * and can answer them in one write, so a message on a reused connection
 * costs one segment each way.  Returns the chunk bytes sent, as
 * body_send; the queued bytes sent are taken off the queue.
 */
static long body_send_last(struct smtp__conn *c, const char *buf, size_t len)
{
    size_t queued = c->wend - c->wstart;
    struct iovec iov[2] = {{(void *)buf, len},
                           {c->wbuf + c->wstart, queued}};
    long n = body_sendv(c, iov, queued > 0 ? 2 : 1);

    if (n <= (long)len)
        return n;
    c->wstart += (size_t)n - len;
    if (c->wstart == c->wend)
        c->wstart = c->wend = 0;
    return (long)len;
}

/*
 * Each chunk is encoded into the scheduler's scratch buffer and sent at
 * once; only what the socket does not take is copied into a buffer of
 * the connection's own.  So a body that goes out whole costs no
 * allocation, and a connection holds a chunk of its own only for a body
 * its peer was slow to read.
 */
int smtp__body_callback(SMTP__CALLBACK_PARAMS)
{
    struct smtp__conn *c = smtp__conn_of(conn);
    char *scratch = smtp__scratch(c->sched);
    bool progress = false;

    (void)e, (void)domain, (void)binding_slot, (void)am;
    if (events & E_TIMEOUT) {
        size_t left = unacked(c);

        if (c->txn.body_looked && left >= c->txn.body_unacked)
            return smtp__conn_fail(c, SMTP_ETIMEOUT, "the server stopped "
                                   "reading the body");
        c->txn.body_unacked = left;
        c->txn.body_looked = true;
        smtp_conn_set_deadline(conn, smtp__config(c->sched)
                               ->timeout_ms[SMTP_TIMEOUT_BODY]);
        return SMTP_WANT_WRITE;
    }
    if (scratch == NULL)
        return smtp__conn_fail(c, SMTP_ENOMEM, "no memory for the body");
    for (int i = 0; i < CHUNKS_PER_EVENT; i++) {
        bool held = c->body_start < c->body_end;
        const char *buf = scratch;
        size_t len = 0;
        bool last = false;

        if (held) {
            buf = c->body_buf + c->body_start;
            len = c->body_end - c->body_start;
        } else {
            if (c->txn.body_done) {
                smtp_next_state(dc, connh, NULL, now);
                return SMTP_WANT_READ;
            }
            long filled = body_fill(c, scratch, scratch + BODY_CHUNK);
            if (filled < 0)
                return smtp__conn_fail(c, SMTP_EIO, "the message file "
                                       "could not be read to its end "
                                       "while it was sent");
            if (filled == 0)
                continue; /* a CR held for the next chunk */
            len = (size_t)filled;
            last = c->txn.body_done;
            if (last) {
                smtp__chain_next_transaction(c);
                if (c->closed)
                    return 0;
            }
        }

        long n = last ? body_send_last(c, buf, len) : body_send(c, buf, len);
        if (n < 0 && smtp__take_421(c))
            return 0; /* the server said why it closed */
        if (n < 0)
            return smtp__conn_fail(c, (int)n, "sending the body: %s",
                                   smtp_strerror((int)n));
        if (n > 0)
            progress = true;
        if (held)
            c->body_start += (size_t)n;
        else if ((size_t)n < len &&
                 body_keep(c, buf + n, len - (size_t)n) != 0)
            return smtp__conn_fail(c, SMTP_ENOMEM, "no memory for the "
                                   "body");
        if ((size_t)n < len)
            break;
    }
    /* The kernel is asked only when the body stays for another event: a
     * body sent whole in one call never waits for its deadline. */
    if (progress || !c->txn.body_looked) {
        c->txn.body_unacked = unacked(c);
        c->txn.body_looked = true;
    }
    if (progress)
        smtp_conn_set_deadline(conn, smtp__config(c->sched)
                               ->timeout_ms[SMTP_TIMEOUT_BODY]);
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
