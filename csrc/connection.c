/*
 * connection.c - one connection's life: entering states, dispatching
 * events to the current state under the return contract, queuing and
 * flushing output, and closing.
 *
 * Every failure of a connection goes through smtp__conn_fail, which
 * records the reason once, settles each message still on the connection
 * and emits the close event.  A state is entered only through
 * smtp_next_state, which also keeps the table's count of connections in
 * each state (a state with connections cannot be unregistered).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "engine.h"
#include "internal.h"
#include "state_table.h"

#define WBUF_INITIAL 1024
#define WBUF_MAX SMTP_WRITE_BUFFER_MAX
#define DISPATCH_ROUNDS 8 /* callbacks one dispatch may run */

int smtp__conn_stage(struct smtp__conn *c)
{
    smtp_state *state = c->pub.state;

    if (c->connecting || state == NULL)
        return SMTP_STAGE_NOT_CONNECTED;
    if (state->tostage == NULL)
        return SMTP_STAGE_UNKNOWN;
    return state->tostage(state, &c->pub);
}

/* ---- closing ---------------------------------------------------------- */

static void leave_state(struct smtp__conn *c)
{
    smtp_state *state = c->pub.state;

    if (state == NULL)
        return;
    if (state->free)
        state->free(state, &c->pub);
    smtp__state_leave(state);
}

void smtp__conn_close(struct smtp__conn *c)
{
    if (c->closed)
        return;
    leave_state(c);
    smtp__txn_release_body(c);
    c->closed = true;
    close(c->pub.fd);
    c->pub.fd = -1;
    c->ev.fd = -1;
    c->pub.in_use = 0;
    smtp__sched_forget(c);
}

/* Appends '; received "..."' with the malformed reply's first bytes:
 * printable ASCII as is, anything else (quote and backslash too) as \xNN,
 * then "..." when the line went on.  At most 4 bytes per byte kept. */
static void quote_bad_reply(struct smtp__conn *c)
{
    size_t at = strlen(c->error_text);
    size_t room = sizeof(c->error_text);
    unsigned n = c->bad_reply_len;

    at += (size_t)snprintf(c->error_text + at, room - at, "; received \"");
    for (unsigned i = 0; i < n && at + 5 < room; i++) {
        unsigned char b = (unsigned char)c->bad_reply[i];
        if (b >= 0x20 && b < 0x7f && b != '"' && b != '\\')
            c->error_text[at++] = (char)b;
        else
            at += (size_t)snprintf(c->error_text + at, room - at, "\\x%02x",
                                   b);
    }
    if (at < room)
        snprintf(c->error_text + at, room - at, "\"%s",
                 n == SMTP__BAD_REPLY_EXCERPT && c->bad_reply[n - 1] != '\n'
                     ? "..." : "");
    c->bad_reply_len = 0;
}

void smtp__conn_give_back_chained(struct smtp__conn *c)
{
    struct smtp__txn *t = &c->txn;
    struct smtp__msg *msg;

    /* An observer that oversteps in its setup for the taken-up
     * transaction fails it by the observer's rule, as it would before any
     * chained group: the fault is the state's, not the chain's. */
    if (c->has_next)
        t = &c->next_txn, msg = c->next_msg;
    else if (t->group_sent && !t->in_data && !t->body_done &&
             t->msg >= 0 && (size_t)t->msg < c->batch_len &&
             !smtp__state_is_observer(c->pub.state))
        msg = c->batch[t->msg];
    else
        return;
    c->has_next = false;
    if (msg == NULL || msg->released)
        return;
    for (size_t r = t->rcpt_begin; r < t->rcpt_end; r++) {
        if (msg->rcpt_status[r] == RCPT_SENT ||
            msg->rcpt_status[r] == RCPT_ACCEPTED)
            msg->rcpt_status[r] = RCPT_PENDING;
    }
    if (msg->next_rcpt > t->rcpt_begin)
        msg->next_rcpt = t->rcpt_begin;
    for (size_t i = 0; i < c->batch_len; i++) {
        if (c->batch[i] == msg) {
            c->batch[i] = NULL;
            c->batch_pub[i] = NULL;
            smtp__dest_push_front(msg->dest, msg);
            break;
        }
    }
}

int smtp__conn_fail(struct smtp__conn *c, int error, const char *fmt, ...)
{
    va_list ap;

    if (c->closed)
        return 0;
    smtp__conn_give_back_chained(c);
    c->error = error;
    va_start(ap, fmt);
    vsnprintf(c->error_text, sizeof(c->error_text), fmt, ap);
    va_end(ap);
    if (error == SMTP_EPROTO && c->bad_reply_len > 0)
        quote_bad_reply(c);
    if (c->pub.state == NULL)
        smtp__settle_unsettled(c, SMTP_OUTCOME_TRANSIENT, NULL,
                               SMTP_STAGE_NOT_CONNECTED);
    else
        smtp__settle_unsettled(c, SMTP_OUTCOME_TRANSIENT, NULL,
                               smtp__conn_stage(c));
    smtp__emit(c, SMTP_EVENT_CLOSE, 0, error, c->error_text,
               strlen(c->error_text));
    smtp__conn_close(c);
    return 0;
}

SMTP_API int ec_smtp_closeconn(delivery_construct *dc, Event *e,
                               connection *conn, connection_handle *connh,
                               domain_record *domain,
                               ec_binding_slot binding_slot,
                               address_metrics *am, struct timeval *now,
                               const char *file, int line)
{
    struct smtp__conn *c = smtp__conn_of(conn);
    const char *name = c->pub.state ? c->pub.state->name : "";

    (void)dc, (void)e, (void)connh, (void)domain, (void)binding_slot;
    (void)am, (void)now;
    if (c->closed)
        return 0;
    c->closed_by_state = true;
    return smtp__conn_fail(c, c->error, "closed by state %s at %s:%d",
                           name, file ? file : "?", line);
}

SMTP_API int smtp_conn_fail(connection *conn, int error, const char *reason)
{
    struct smtp__conn *c = smtp__conn_of(conn);

    c->closed_by_state = true;
    return smtp__conn_fail(c, error < 0 ? error : SMTP_ESTATE, "%s",
                           reason ? reason : "failed by a state");
}

/* Settles `msg` transiently for its own reason, leaving the connection's
 * reason for failing as it was. */
static void settle_with(struct smtp__conn *c, struct smtp__msg *msg,
                        int error, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void settle_with(struct smtp__conn *c, struct smtp__msg *msg,
                        int error, const char *fmt, ...)
{
    int saved_error = c->error;
    char saved_text[sizeof(c->error_text)];
    va_list ap;

    memcpy(saved_text, c->error_text, sizeof(saved_text));
    c->error = error;
    va_start(ap, fmt);
    vsnprintf(c->error_text, sizeof(c->error_text), fmt, ap);
    va_end(ap);
    for (size_t r = 0; r < msg->nrcpt; r++)
        smtp__settle(c, msg, r, SMTP_OUTCOME_TRANSIENT, NULL,
                     smtp__conn_stage(c));
    c->error = saved_error;
    memcpy(c->error_text, saved_text, sizeof(saved_text));
}

/* ---- output ------------------------------------------------------------ */

static int wbuf_reserve(struct smtp__conn *c, size_t len)
{
    size_t used = c->wend - c->wstart;

    if (c->wstart > 0 && c->wend + len > c->wcap) {
        memmove(c->wbuf, c->wbuf + c->wstart, used);
        c->wstart = 0;
        c->wend = used;
    }
    if (c->wend + len <= c->wcap)
        return 0;
    if (used + len > WBUF_MAX)
        return SMTP_EAGAIN;

    size_t cap = c->wcap ? c->wcap : WBUF_INITIAL;
    while (cap < used + len)
        cap *= 2;
    char *buf = realloc(c->wbuf, cap);
    if (buf == NULL)
        return SMTP_ENOMEM;
    c->wbuf = buf;
    c->wcap = cap;
    return 0;
}

SMTP_API int smtp_conn_write(connection *conn, const void *buf, size_t len)
{
    struct smtp__conn *c = smtp__conn_of(conn);
    int r;

    if (c->closed || c->connecting)
        return SMTP_EINVAL;
    if (len > WBUF_MAX)
        return smtp__fail(SMTP_EINVAL, "smtp_conn_write: %zu bytes, more "
                          "than the %d-byte output buffer holds (rule: "
                          "command size)", len, WBUF_MAX);
    if (smtp__state_is_observer(conn->state))
        return smtp__fail(SMTP_EPROTO, "smtp_conn_write: state %s is an "
                          "observer and may not send (rule: an observer "
                          "only looks and moves on)", conn->state->name);
    /* Between DATA (sent, under PIPELINING, with MAIL FROM and RCPT TO,
     * before a state after them runs) and the reply to the end of data
     * only the body goes out: a command from a state inserted there would
     * land in the message, or draw a reply the confirmation could take
     * for the body's (DESIGN 8: delivered only on a 2xx to the end of
     * data). */
    if ((c->txn.data_due || c->txn.in_data) && !c->chaining)
        return smtp__fail(SMTP_EPROTO, "smtp_conn_write: state %s may not "
                          "send between DATA and the reply to the end of "
                          "data (rule: no command inside the data phase)",
                          conn->state ? conn->state->name : "?");
    /* A command goes out only when every reply due has been read: bytes
     * still unread now came when no reply was due (DESIGN 9). */
    if (c->rstart < c->rend)
        return smtp__fail(SMTP_EPROTO, "smtp_conn_write: the server sent "
                          "bytes no command asked for (rule: a command "
                          "only when every reply due is read)");
    r = wbuf_reserve(c, len);
    if (r != 0)
        return r;
    memcpy(c->wbuf + c->wend, buf, len);
    c->wend += len;
    return 0;
}

/* Sends as much queued output as the socket takes.  Returns 0 (all sent
 * or the socket is full) or a negative SMTP_E* code. */
int smtp__conn_flush(struct smtp__conn *c)
{
    while (c->wstart < c->wend) {
        ssize_t n = send(c->pub.fd, c->wbuf + c->wstart,
                         c->wend - c->wstart, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->write_blocked = true;
            return 0;
        }
        if (n < 0)
            return errno == EPIPE || errno == ECONNRESET ? SMTP_ECLOSED
                                                         : SMTP_EIO;
        if (c->sched && smtp__config(c->sched)->wire_trace)
            smtp__emit_wire(c, c->wbuf + c->wstart, (size_t)n, 1);
        c->wstart += (size_t)n;
    }
    c->wstart = c->wend = 0;
    return 0;
}

SMTP_API void smtp_conn_set_deadline(connection *conn, unsigned timeout_ms)
{
    struct smtp__conn *c = smtp__conn_of(conn);

    if (!c->closed)
        smtp__deadline_set(c, smtp__now_ms() + (timeout_ms ? timeout_ms : 1));
}

/* ---- states ------------------------------------------------------------ */

static void enter_state(struct smtp__conn *c, smtp_state *target,
                        const struct timeval *now, uint64_t now_ms)
{
    const smtp_config *cfg = smtp__config(c->sched);
    smtp_state *from = c->pub.state;

    leave_state(c);
    c->pub.state = target;
    smtp__state_enter(target);
    c->pub.local_state = target->init_local_state;
    c->pub.state_closure = NULL;
    c->pub.statetime = *now;
    smtp__deadline_set(c, now_ms +
                       cfg->timeout_ms[smtp__state_timeout_kind(target)]);
    smtp__emit_state(c, from);
}

/* Runs setups from `target` on until one waits for an event.  Setups
 * that only jump on, in a circle, would run for ever inside one turn of
 * the loop, which no deadline ends: past more setups than the table has
 * states, the connection fails. */
static void run_setups(struct smtp__conn *c, smtp_state *target,
                       struct timeval *now, uint64_t now_ms)
{
    unsigned setups = 0;

    while (target != NULL && !c->closed) {
        int r = 0;

        if (++setups > SMTP_MAX_STATES) {
            smtp__conn_fail(c, SMTP_ESTATE, "setups ran %u times in a row "
                            "without one waiting, the last of state %s "
                            "(rule: a setup moves on or waits)",
                            SMTP_MAX_STATES, c->pub.state->name);
            return;
        }
        enter_state(c, target, now, now_ms);
        c->jump_to = NULL;
        if (target->setup)
            r = target->setup(target, &c->dc, &c->handle, now);
        if (c->closed)
            return;
        if (smtp__state_is_observer(target) && r >= 0 &&
            c->jump_to == NULL && !(r & SMTP_STATE_SKIP)) {
            smtp__conn_fail(c, SMTP_ESTATE, "observer state %s did not move "
                            "on in its setup (rule: an observer only looks "
                            "and moves on)", target->name);
            return;
        }
        if (c->jump_to != NULL) {
            target = c->jump_to;
            continue;
        }
        if (r < 0) {
            smtp__conn_fail(c, r, "setup of state %s failed: %s",
                            target->name, smtp_strerror(r));
            return;
        }
        if (r & SMTP_STATE_SKIP) {
            target = smtp_state_next(target);
            continue;
        }
        r &= SMTP_WANT_READ | SMTP_WANT_WRITE;
        c->setup_want = r ? r : SMTP_WANT_WRITE;
        return;
    }
    if (!c->closed)
        smtp__conn_fail(c, SMTP_ESTATE, "the chain ended after state %s "
                        "with no state to go to", c->pub.state->name);
}

/*
 * A jump to QUIT.  When a custom state makes it, that state has ended the
 * session for its own reasons: every message still on the connection is
 * settled now, transiently and naming the state, rather than handed to a
 * new connection where the same state would end the session again.
 */
static void quit_entered(struct smtp__conn *c)
{
    const smtp_state *from = c->pub.state;

    c->quit_from = from;
    if (!smtp__state_is_custom(from))
        return;
    for (size_t i = 0; i < c->batch_len; i++) {
        if (c->batch[i] != NULL)
            settle_with(c, c->batch[i], SMTP_ESTATE, "state %s ended the "
                        "session (a jump to QUIT) before the message was "
                        "delivered", from->name);
    }
}

SMTP_API void smtp_next_state(delivery_construct *dc,
                              connection_handle *connh, smtp_state *state,
                              struct timeval *now)
{
    struct smtp__conn *c = smtp__conn_of(connh->conn);
    struct timeval tv;
    uint64_t now_ms;
    smtp_state *target = state;

    (void)dc;
    if (c->closed)
        return;
    if (target == NULL)
        target = c->pub.state ? smtp_state_next(c->pub.state)
                              : smtp_get_state_machine();
    else if (smtp__state_slot(target) == NULL) {
        smtp__conn_fail(c, SMTP_ESTATE, "smtp_next_state: %p is not a "
                        "registered state", (void *)target);
        return;
    }
    if (state != NULL && smtp__state_is_observer(c->pub.state) &&
        target != smtp_state_next(c->pub.state)) {
        smtp__conn_fail(c, SMTP_ESTATE, "observer state %s jumped to %s "
                        "(rule: an observer only looks and moves on)",
                        c->pub.state->name, target->name);
        return;
    }
    if (target->id == SMTP_STATE_QUIT)
        quit_entered(c);
    if (c->transitioning) {
        c->jump_to = target;
        return;
    }
    /* Deadlines count from a clock the engine read itself: this call's,
     * or the dispatch's when a state passes on the `now` it was given. */
    if (now == NULL) {
        smtp__timeval_now(&tv);
        now = &tv;
        now_ms = smtp__timeval_ms(&tv);
    } else if (now == c->dispatch_now) {
        now_ms = smtp__timeval_ms(now);
    } else {
        now_ms = smtp__now_ms();
    }
    c->transitioning = true;
    c->transitioned = true;
    run_setups(c, target, now, now_ms);
    c->transitioning = false;
}

/* Events already due: a reply buffered with an earlier one (epoll will
 * not report it again), or a write the socket has not refused (when
 * EPOLLOUT is registered, epoll reports it instead). */
static int due_events(struct smtp__conn *c)
{
    int due = 0;

    if ((c->want & SMTP_WANT_READ) && smtp__conn_has_unread(c))
        due |= E_READ;
    if ((c->want & SMTP_WANT_WRITE) && !(c->interest & EPOLLOUT))
        due |= E_WRITE;
    return due;
}

/* After a callback or a setup: sends what was queued, waits as asked,
 * and returns the events already due. */
static int settle_interest(struct smtp__conn *c, int want)
{
    int r = smtp__conn_flush(c);

    if (r < 0) {
        smtp__conn_fail(c, r, "write failed: %s", smtp_strerror(r));
        return 0;
    }
    smtp__conn_want(c, want);
    return c->closed ? 0 : due_events(c);
}

void smtp__conn_enter_first_state(struct smtp__conn *c)
{
    int due;

    c->transitioned = false;
    smtp_next_state(&c->dc, &c->handle, NULL, NULL);
    if (c->closed)
        return;
    due = settle_interest(c, c->setup_want);
    if (due)
        smtp__wake(c, due);
}

/* One callback under the return contract; returns the events already
 * due after it. */
static int dispatch_once(struct smtp__conn *c, int events,
                         struct timeval *now)
{
    smtp_state *state = c->pub.state;
    int ret;

    c->transitioned = false;
    c->closed_by_state = false;
    c->in_dispatch = true;
    ret = state->callback(&c->dc, &c->ev, &c->pub, &c->handle,
                          &c->dest->domain, c->handle.binding_slot,
                          &c->dest->metrics, now, events);
    c->in_dispatch = false;
    if (c->closed) {
#ifndef NDEBUG
        if (ret != 0 && c->closed_by_state) {
            fprintf(stderr, "smtpstate: state %s closed the connection "
                    "and returned %d, not 0\n", state->name, ret);
            abort();
        }
#endif
        return 0;
    }
    if (ret == 0) {
        smtp__conn_fail(c, SMTP_ESTATE, "state %s returned 0 without "
                        "closing the connection", state->name);
        return 0;
    }
    if (c->transitioned)
        ret = c->setup_want;
    if (!(ret & (SMTP_WANT_READ | SMTP_WANT_WRITE))) {
        smtp__conn_fail(c, SMTP_ESTATE, "state %s returned %d, not "
                        "SMTP_WANT_READ or SMTP_WANT_WRITE", state->name,
                        ret);
        return 0;
    }
    return settle_interest(c, ret & (SMTP_WANT_READ | SMTP_WANT_WRITE));
}

/*
 * Delivers `events`, then what became due meanwhile, in the same call:
 * the replies of a pipelined group each to its state, and a new state's
 * first write without a trip through epoll.  A state that asks to write
 * again in the same state, and whatever is due after DISPATCH_ROUNDS
 * calls, waits for the wake phase, so one connection cannot hold the
 * loop.
 */
void smtp__conn_dispatch(struct smtp__conn *c, int events)
{
    struct timeval now;

    smtp__timeval_now(&now);
    c->dispatch_now = &now;
    for (int round = 0; events != 0; round++) {
        if (round == DISPATCH_ROUNDS) {
            smtp__wake(c, events);
            break;
        }
        events = dispatch_once(c, events, &now);
        if ((events & E_WRITE) && !c->transitioned) {
            smtp__wake(c, E_WRITE);
            events &= ~E_WRITE;
        }
    }
    c->dispatch_now = NULL;
}

/* ---- the batch --------------------------------------------------------- */

int smtp__conn_batch_add(struct smtp__conn *c, struct smtp__msg *msg)
{
    if (c->batch_len == c->batch_cap) {
        size_t cap = c->batch_cap ? c->batch_cap * 2 : 4;
        struct smtp__msg **batch = realloc(c->batch, cap * sizeof(*batch));
        if (batch != NULL)
            c->batch = batch;
        const smtp_message **pub =
            realloc(c->batch_pub, cap * sizeof(*pub));
        if (pub != NULL)
            c->batch_pub = pub;
        if (batch == NULL || pub == NULL) {
            smtp__dest_push_front(msg->dest, msg);
            return SMTP_ENOMEM;
        }
        c->batch_cap = cap;
    }
    c->batch[c->batch_len] = msg;
    c->batch_pub[c->batch_len] = msg->m;
    c->batch_len++;
    c->dc.batch = c->batch_pub;
    c->dc.batch_len = c->batch_len;
    return 0;
}

/* Drops released messages from the batch; only between transactions,
 * when no index is held. */
void smtp__conn_batch_compact(struct smtp__conn *c)
{
    size_t kept = 0;

    for (size_t i = 0; i < c->batch_len; i++) {
        if (c->batch[i] == NULL)
            continue;
        c->batch[kept] = c->batch[i];
        c->batch_pub[kept] = c->batch_pub[i];
        kept++;
    }
    c->batch_len = kept;
    c->dc.batch_len = kept;
}

/* Moves to the destination's queue every message of the batch that has
 * recipients not yet tried; called between transactions only, so none
 * has a recipient accepted and not yet decided.  A message whose
 * transaction never started on this connection is a hand-over; after
 * SMTP__MAX_HANDOVERS of them it is settled instead, so that a session
 * that always ends early cannot send it round for ever. */
void smtp__conn_requeue_waiting(struct smtp__conn *c, int error,
                                const char *why)
{
    for (size_t i = c->batch_len; i-- > 0;) {
        struct smtp__msg *msg = c->batch[i];
        if (msg == NULL || msg->released || msg->next_rcpt >= msg->nrcpt)
            continue;
        if (msg->began_in != c->pub.session_id &&
            ++msg->handovers >= SMTP__MAX_HANDOVERS) {
            settle_with(c, msg, error, "the session ended before the "
                        "transaction started, %u times (last: %s)",
                        msg->handovers, why);
            continue;
        }
        c->batch[i] = NULL;
        c->batch_pub[i] = NULL;
        smtp__dest_push_front(msg->dest, msg);
    }
}
