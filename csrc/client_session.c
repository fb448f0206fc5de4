/*
 * client_session.c - the built-in states that open and close a session:
 * banner, EHLO (with its HELO fallback), the pass-through states, RSET
 * and QUIT, and the helpers every built-in shares.
 *
 * A failure before the first transaction settles every message of the
 * batch (DESIGN 8): the banner's 4xx or 5xx and EHLO's 4xx are transient
 * (another host may do better), HELO's 5xx is permanent.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "client_states.h"
#include "state_table.h"

#define COMMAND_MAX 512 /* RFC 5321 4.5.3.1.4, CRLF included */

/* Queues one command line, or fails the connection saying why. */
static bool send_line(struct smtp__conn *c, const char *line, size_t len)
{
    if (len >= COMMAND_MAX) {
        smtp__conn_fail(c, SMTP_EINVAL, "command too long in state %s",
                        c->pub.state->name);
        return false;
    }

    int r = smtp_conn_write(&c->pub, line, len);
    if (r == SMTP_EPROTO && smtp__take_421(c))
        return false;
    if (r == SMTP_EPROTO) {
        smtp__conn_fail(c, r, "the server sent bytes when no reply was due "
                        "(state %s)", c->pub.state->name);
        return false;
    }
    if (r != 0) {
        smtp__conn_fail(c, r, "cannot queue a command in state %s: %s",
                        c->pub.state->name, smtp_strerror(r));
        return false;
    }
    return true;
}

bool smtp__send_command(struct smtp__conn *c, const char *fmt, ...)
{
    char line[COMMAND_MAX];
    va_list ap;
    int len;

    va_start(ap, fmt);
    len = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    return send_line(c, line, len < 0 ? COMMAND_MAX : (size_t)len);
}

size_t smtp__join(char *out, size_t cap, const char *const parts[])
{
    size_t len = 0;

    for (size_t i = 0; parts[i] != NULL; i++) {
        size_t n = strlen(parts[i]);

        if (n >= cap - len)
            return cap;
        memcpy(out + len, parts[i], n);
        len += n;
    }
    out[len] = '\0';
    return len;
}

bool smtp__send_joined(struct smtp__conn *c, const char *const parts[])
{
    char line[COMMAND_MAX];

    return send_line(c, line, smtp__join(line, sizeof(line), parts));
}

bool smtp__await_reply(struct smtp__conn *c, int events, const int *codes,
                       size_t n, int *code, int *ret)
{
    int mask = SMTP_WANT_READ;
    int r;

    if (events & E_TIMEOUT) {
        *ret = smtp__conn_fail(c, SMTP_ETIMEOUT, "no reply in state %s "
                               "before the deadline", c->pub.state->name);
        return false;
    }
    r = read_smtp_codes(&c->dc, NULL, &mask, codes, n);
    if (r == 0) {
        *ret = mask;
        return false;
    }
    if (r == SMTP_ECLOSED && smtp__closed_before_mail_reply(c)) {
        *ret = 0;
        return false;
    }
    if (r <= SMTP_EAGAIN) {
        *ret = smtp__conn_fail(c, r, "state %s: %s", c->pub.state->name,
                               smtp_strerror(r));
        return false;
    }
    if (r == -421) {
        *ret = smtp__server_closing(c);
        return false;
    }
    /* A positive reply that is not one of the expected ones cannot answer
     * this command: the replies are out of step with the commands. */
    if (r < 0 && -r < 400) {
        *ret = smtp__conn_fail(c, SMTP_EPROTO, "reply %d does not answer "
                               "the command of state %s", -r,
                               c->pub.state->name);
        return false;
    }
    *code = r;
    return true;
}

int smtp__server_closing(struct smtp__conn *c)
{
    smtp__conn_give_back_chained(c);
    smtp__settle_unsettled(c, SMTP_OUTCOME_TRANSIENT, &c->dc.last_reply,
                           smtp__conn_stage(c));
    return smtp__conn_fail(c, 0, "the server is closing (421)");
}

bool smtp__take_421(struct smtp__conn *c)
{
    static const int none[] = {0};
    int mask = 0;

    if (read_smtp_codes(&c->dc, NULL, &mask, none, 1) != -421)
        return false;
    smtp__server_closing(c);
    return true;
}

void smtp__jump(struct smtp__conn *c, int id, struct timeval *now)
{
    smtp_next_state(&c->dc, &c->handle, smtp__state_by_id(id), now);
}

int smtp__session_refused(struct smtp__conn *c, int kind, struct timeval *now)
{
    smtp__settle_unsettled(c, kind, &c->dc.last_reply, smtp__conn_stage(c));
    smtp__jump(c, SMTP_STATE_QUIT, now);
    return SMTP_WANT_READ;
}

/* ---- banner ------------------------------------------------------------ */

int smtp__banner_setup(const smtp_state *self, delivery_construct *dc,
                       connection_handle *connh, struct timeval *now)
{
    (void)self, (void)dc, (void)connh, (void)now;
    return SMTP_WANT_READ;
}

int smtp__banner_callback(SMTP__CALLBACK_PARAMS)
{
    struct smtp__conn *c = smtp__conn_of(conn);
    static const int ok[] = {220};
    int code, ret;

    (void)dc, (void)e, (void)domain, (void)binding_slot, (void)am;
    if (!smtp__await_reply(c, events, ok, 1, &code, &ret))
        return ret;
    if (code < 0)
        return smtp__session_refused(c, SMTP_OUTCOME_TRANSIENT, now);
    smtp_next_state(dc, connh, NULL, now);
    return SMTP_WANT_READ;
}

/* ---- EHLO, and HELO when EHLO is refused -------------------------------- */

enum { SENT_EHLO = 0, SENT_HELO = 1 };

int smtp__ehlo_setup(const smtp_state *self, delivery_construct *dc,
                     connection_handle *connh, struct timeval *now)
{
    struct smtp__conn *c = smtp__conn_of(connh->conn);

    (void)self, (void)dc, (void)now;
    c->pub.local_state = SENT_EHLO;
    c->pub.esmtp = 0;
    c->pub.capabilities = 0;
    c->pub.max_size = 0;
    if (!smtp__send_command(c, "EHLO %s\r\n", c->dest->helo))
        return SMTP_ESTATE;
    return SMTP_WANT_READ;
}

int smtp__ehlo_callback(SMTP__CALLBACK_PARAMS)
{
    struct smtp__conn *c = smtp__conn_of(conn);
    static const int ok[] = {250};
    int code, ret;

    (void)e, (void)domain, (void)binding_slot, (void)am;
    if (!smtp__await_reply(c, events, ok, 1, &code, &ret))
        return ret;
    if (code > 0) {
        if (conn->local_state == SENT_EHLO)
            smtp_parse_capabilities(dc, conn);
        c->dest->metrics.sessions_ok++;
        smtp_next_state(dc, connh, NULL, now);
        return SMTP_WANT_READ;
    }
    if (-code >= 500 && conn->local_state == SENT_EHLO) {
        conn->local_state = SENT_HELO;
        if (!smtp__send_command(c, "HELO %s\r\n", c->dest->helo))
            return 0;
        smtp_conn_set_deadline(conn, smtp__config(c->sched)
                               ->timeout_ms[SMTP_TIMEOUT_EHLO]);
        return SMTP_WANT_READ;
    }
    return smtp__session_refused(c, -code >= 500 ? SMTP_OUTCOME_PERMANENT
                                                 : SMTP_OUTCOME_TRANSIENT,
                                 now);
}

/* ---- states that pass straight on --------------------------------------- */

/* STARTTLS, AUTH and XCLIENT pass on until they are configured; the two
 * anchors always pass on: they exist to be inserted after. */
int smtp__skip_setup(const smtp_state *self, delivery_construct *dc,
                     connection_handle *connh, struct timeval *now)
{
    (void)self, (void)dc, (void)connh, (void)now;
    return SMTP_STATE_SKIP;
}

int smtp__skip_callback(SMTP__CALLBACK_PARAMS)
{
    (void)e, (void)domain, (void)binding_slot, (void)am, (void)events;
    smtp_next_state(dc, connh, NULL, now);
    (void)conn;
    return SMTP_WANT_READ;
}

/* ---- RSET ---------------------------------------------------------------- */

int smtp__rset_setup(const smtp_state *self, delivery_construct *dc,
                     connection_handle *connh, struct timeval *now)
{
    struct smtp__conn *c = smtp__conn_of(connh->conn);

    (void)self, (void)dc, (void)now;
    if (!smtp__send_command(c, "RSET\r\n"))
        return SMTP_ESTATE;
    return SMTP_WANT_READ;
}

int smtp__rset_callback(SMTP__CALLBACK_PARAMS)
{
    struct smtp__conn *c = smtp__conn_of(conn);
    static const int ok[] = {250};
    int code, ret;

    (void)e, (void)domain, (void)binding_slot, (void)am;
    if (!smtp__await_reply(c, events, ok, 1, &code, &ret))
        return ret;
    if (code < 0) {
        /* The server's transaction state is unknown: start afresh on a
         * new connection with the messages not yet begun. */
        smtp__conn_requeue_waiting(c, SMTP_EPROTO, "RSET refused");
        return smtp__conn_fail(c, SMTP_EPROTO, "RSET refused with %d",
                               -code);
    }
    c->need_rset = false;
    smtp_next_state(dc, connh, NULL, now);
    return SMTP_WANT_READ;
}

/* ---- QUIT ---------------------------------------------------------------- */

int smtp__quit_setup(const smtp_state *self, delivery_construct *dc,
                     connection_handle *connh, struct timeval *now)
{
    struct smtp__conn *c = smtp__conn_of(connh->conn);

    (void)self, (void)dc, (void)now;
    smtp__conn_mark_idle(c, false);
    if (!smtp__send_command(c, "QUIT\r\n"))
        return SMTP_ESTATE;
    return SMTP_WANT_READ;
}

/* Whatever the server answers, or if it just closes, the session is
 * over.  A message handed to the connection while it went idle goes back
 * to the queue (a bounded number of times); anything else still
 * unsettled fails with the close. */
int smtp__quit_callback(SMTP__CALLBACK_PARAMS)
{
    struct smtp__conn *c = smtp__conn_of(conn);
    static const int ok[] = {221};
    int mask = SMTP_WANT_READ;
    int r = 0;
    char why[96];

    if (!(events & E_TIMEOUT))
        r = read_smtp_codes(dc, now, &mask, ok, 1);
    if (r == 0 && !(events & E_TIMEOUT))
        return mask;
    snprintf(why, sizeof(why), "QUIT from state %s",
             c->quit_from ? c->quit_from->name : "?");
    smtp__conn_requeue_waiting(c, smtp__state_is_custom(c->quit_from)
                                      ? SMTP_ESTATE : SMTP_ECLOSED, why);
    CLOSECONN
}
