/*
 * client_recipients.c - RCPT TO and DATA, one command at a time or, when
 * the server offers PIPELINING (RFC 2920), as one group with MAIL FROM.
 *
 * A recipient is RCPT_SENT from its command to its reply, which decides
 * it alone: accepted, refused (4xx or 5xx) or, for a 452 after another
 * recipient was accepted, deferred to a new transaction.  Replies are
 * matched in order, so a refused middle recipient carries its own reply.
 * A recipient whose reply is still due is never settled by another's
 * reply: the server may yet accept it, and DATA would then deliver to it.
 */
#include "client_states.h"

#define RCPT_LINE_MAX 512

bool smtp__send_rcpts(struct smtp__conn *c, bool all)
{
    struct smtp__msg *msg = smtp__txn_msg(c);
    struct smtp__txn *t = &c->txn;
    /* A pipelined group ends with DATA in the same buffer: a RCPT that
     * would leave DATA no room waits for the next transaction, as one
     * that does not fit itself does. */
    size_t keep = all ? sizeof(SMTP__DATA_LINE) - 1 : 0;

    for (; msg != NULL && t->send_pos < t->rcpt_end; t->send_pos++) {
        size_t r = t->send_pos;
        char line[RCPT_LINE_MAX];

        if (msg->rcpt_status[r] != RCPT_PENDING)
            continue;

        const char *parts[] = {"RCPT TO:<", msg->m->recipients[r], ">\r\n",
                               NULL};
        size_t len = smtp__join(line, sizeof(line), parts);
        /* Addresses are checked at submit, so this cannot happen. */
        if (len >= sizeof(line)) {
            smtp__conn_fail(c, SMTP_EINVAL, "RCPT TO line too long");
            return false;
        }
        int rc = c->wend - c->wstart + len + keep > SMTP_WRITE_BUFFER_MAX
                     ? SMTP_EAGAIN
                     : smtp_conn_write(&c->pub, line, len);
        if (rc == SMTP_EAGAIN && t->sent > 0) {
            t->rcpt_end = r; /* the rest wait for the next transaction */
            break;
        }
        if (rc == SMTP_EPROTO && smtp__take_421(c))
            return false;
        if (rc != 0) {
            smtp__conn_fail(c, rc, "cannot queue RCPT TO: %s",
                            smtp_strerror(rc));
            return false;
        }
        msg->rcpt_status[r] = RCPT_SENT;
        t->sent++;
        if (!all) {
            t->send_pos++;
            break;
        }
    }
    return true;
}

int smtp__rcpt_setup(const smtp_state *self, delivery_construct *dc,
                     connection_handle *connh, struct timeval *now)
{
    struct smtp__conn *c = smtp__conn_of(connh->conn);

    (void)self, (void)dc, (void)now;
    if (!c->txn.pipelined && !smtp__send_rcpts(c, false))
        return SMTP_ESTATE;
    return SMTP_WANT_READ;
}

/* The recipient the next RCPT reply answers, left RCPT_PENDING for
 * rcpt_decide to give its status, or -1 when it was settled meanwhile (by
 * a refused MAIL FROM under PIPELINING, or by a state): the reply is then
 * its, read in its place, and decides nothing. */
static long answered_recipient(struct smtp__txn *t, struct smtp__msg *msg)
{
    for (size_t r = t->rcpt_cursor; msg != NULL && r < t->rcpt_end; r++) {
        unsigned char status = msg->rcpt_status[r];
        if (status == RCPT_SENT || (status & RCPT_REPLY_DUE)) {
            t->rcpt_cursor = r + 1;
            msg->rcpt_status[r] =
                status == RCPT_SENT
                    ? RCPT_PENDING
                    : (unsigned char)(status & ~RCPT_REPLY_DUE);
            return status == RCPT_SENT ? (long)r : -1;
        }
    }
    return -1;
}

/* Settles every recipient of the message not yet sent in this
 * transaction (a 452 on the first recipient ends the message's try). */
static void settle_unsent(struct smtp__conn *c, struct smtp__msg *msg)
{
    for (size_t r = c->txn.rcpt_begin; r < msg->nrcpt; r++) {
        if (msg->rcpt_status[r] == RCPT_PENDING)
            smtp__settle(c, msg, r, SMTP_OUTCOME_TRANSIENT,
                         &c->dc.last_reply, SMTP_STAGE_RCPT_TO);
    }
}

static void rcpt_decide(struct smtp__conn *c, struct smtp__msg *msg,
                        size_t r, int code)
{
    struct smtp__txn *t = &c->txn;
    int reply_code = code > 0 ? code : -code;

    if (code > 0) {
        msg->rcpt_status[r] = RCPT_ACCEPTED;
        t->accepted++;
        return;
    }
    if (reply_code == 452 && t->replies == 1 && t->accepted == 0)
        t->first_452 = true;
    if (reply_code == 452 && !t->first_452) {
        msg->rcpt_status[r] = RCPT_DEFERRED;
        t->stop_sending = true;
        return;
    }
    smtp__settle(c, msg, r, reply_code >= 500 ? SMTP_OUTCOME_PERMANENT
                                             : SMTP_OUTCOME_TRANSIENT,
                 &c->dc.last_reply, SMTP_STAGE_RCPT_TO);
    if (reply_code == 452) {
        settle_unsent(c, msg);
        t->stop_sending = true;
    }
}

/* Every reply is in: deferred recipients wait for the next transaction,
 * which starts at the first recipient still pending. */
static void rcpts_done(struct smtp__conn *c, struct smtp__msg *msg)
{
    struct smtp__txn *t = &c->txn;
    size_t first = msg->nrcpt;

    for (size_t r = t->rcpt_begin; r < msg->nrcpt; r++) {
        if (msg->rcpt_status[r] == RCPT_DEFERRED)
            msg->rcpt_status[r] = RCPT_PENDING;
        if (msg->rcpt_status[r] == RCPT_PENDING && r < first)
            first = r;
    }
    msg->next_rcpt = first;
}

int smtp__rcpt_callback(SMTP__CALLBACK_PARAMS)
{
    struct smtp__conn *c = smtp__conn_of(conn);
    struct smtp__txn *t = &c->txn;
    struct smtp__msg *msg = smtp__txn_msg(c);
    static const int ok[] = {250, 251, 252};
    int code, ret;

    (void)e, (void)domain, (void)binding_slot, (void)am;
    if (!smtp__await_reply(c, events, ok, 3, &code, &ret))
        return ret;
    t->replies++;

    long r = answered_recipient(t, msg);
    if (r >= 0)
        rcpt_decide(c, msg, (size_t)r, code);
    if (!t->pipelined && !t->stop_sending && t->replies == t->sent) {
        if (!smtp__send_rcpts(c, false))
            return 0;
        if (t->sent > t->replies)
            smtp_conn_set_deadline(conn, smtp__config(c->sched)
                                   ->timeout_ms[SMTP_TIMEOUT_RCPT]);
    }
    if (t->replies < t->sent)
        return SMTP_WANT_READ;
    if (msg != NULL)
        rcpts_done(c, msg);
    if (t->pipelined || t->accepted > 0) {
        smtp_next_state(dc, connh, NULL, now);
        return SMTP_WANT_READ;
    }
    c->need_rset = t->open;
    smtp__jump(c, SMTP_STATE_TRANSACTION, now);
    return SMTP_WANT_READ;
}

/* ---- DATA -------------------------------------------------------------- */

enum { DATA_SENT = 0, LONE_DOT_SENT = 1 };

void smtp__settle_accepted(struct smtp__conn *c, int kind, int stage)
{
    struct smtp__msg *msg = smtp__txn_msg(c);

    if (msg == NULL)
        return;
    for (size_t r = c->txn.rcpt_begin; r < c->txn.rcpt_end; r++) {
        if (msg->rcpt_status[r] == RCPT_ACCEPTED)
            smtp__settle(c, msg, r, kind, &c->dc.last_reply, stage);
    }
}

int smtp__data_setup(const smtp_state *self, delivery_construct *dc,
                     connection_handle *connh, struct timeval *now)
{
    struct smtp__conn *c = smtp__conn_of(connh->conn);

    (void)self, (void)dc, (void)now;
    if (!c->txn.pipelined) {
        if (!smtp__send_command(c, SMTP__DATA_LINE))
            return SMTP_ESTATE;
        c->txn.data_due = true;
    }
    return SMTP_WANT_READ;
}

/* Ends the transaction after a DATA that delivered nothing. */
static int data_abandoned(struct smtp__conn *c, struct timeval *now)
{
    c->need_rset = c->txn.open;
    smtp__jump(c, SMTP_STATE_TRANSACTION, now);
    return SMTP_WANT_READ;
}

int smtp__data_callback(SMTP__CALLBACK_PARAMS)
{
    struct smtp__conn *c = smtp__conn_of(conn);
    static const int go_ahead[] = {354};
    static const int after_dot[] = {250, 251, 252};
    bool dot = conn->local_state == LONE_DOT_SENT;
    int code, ret;

    (void)e, (void)domain, (void)binding_slot, (void)am;
    if (!smtp__await_reply(c, events, dot ? after_dot : go_ahead,
                           dot ? 3 : 1, &code, &ret))
        return ret;
    c->txn.data_due = false;
    if (dot)
        return data_abandoned(c, now); /* whatever it says, nobody got it */
    if (code > 0 && c->txn.accepted > 0) {
        c->txn.in_data = true;
        smtp_next_state(dc, connh, NULL, now);
        return SMTP_WANT_WRITE;
    }
    if (code > 0) {
        /* Every recipient was refused but the pipelined DATA was taken:
         * end the data at once, with no body (DESIGN 8). */
        if (!smtp__send_command(c, ".\r\n"))
            return 0;
        conn->local_state = LONE_DOT_SENT;
        return SMTP_WANT_READ;
    }
    smtp__settle_accepted(c, -code >= 500 ? SMTP_OUTCOME_PERMANENT
                                          : SMTP_OUTCOME_TRANSIENT,
                          SMTP_STAGE_DATA);
    return data_abandoned(c, now);
}
