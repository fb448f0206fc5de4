/*
 * client_transaction.c - the transaction anchor, MAIL FROM, RCPT TO and
 * DATA.
 *
 * The anchor picks the message for the next transaction: the rest of a
 * message whose recipients did not all fit in the last one, else the
 * next message of the batch, else one from the destination's queue.
 * With none it waits, idle, until work arrives or the idle time ends.
 * Each recipient's reply decides that recipient alone; the message's
 * accepted recipients are decided by DATA and the confirmation.
 *
 * With PIPELINING the next message's group may go out right behind the
 * end of the previous message's data (RFC 2920 3.1), before its reply is
 * read; the anchor then takes that transaction up as already sent.  Only
 * when no caller's state sits between the anchor and MAIL FROM, and only
 * for a body in memory.
 */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "client_states.h"
#include "state_table.h"

enum { TXN_PICKING = 0, TXN_IDLE = 1 };

struct smtp__msg *smtp__txn_msg(struct smtp__conn *c)
{
    if (c->txn.msg < 0 || (size_t)c->txn.msg >= c->batch_len)
        return NULL;
    return c->batch[c->txn.msg];
}

void smtp__txn_release_body(struct smtp__conn *c)
{
    if (c->txn.body_fd >= 0)
        close(c->txn.body_fd);
    c->txn.body_fd = -1;
    c->txn.body = NULL;
    c->txn.body_len = 0;
}

/* Ends the open transaction's bookkeeping; the message stays in the
 * batch until every recipient is settled. */
static void txn_reset(struct smtp__conn *c)
{
    smtp__txn_release_body(c);
    memset(&c->txn, 0, sizeof(c->txn));
    c->txn.msg = -1;
    c->txn.body_fd = -1;
    c->dc.current = -1;
}

static int find_work(struct smtp__conn *c)
{
    for (size_t i = 0; i < c->batch_len; i++) {
        struct smtp__msg *msg = c->batch[i];
        if (msg != NULL && msg->next_rcpt < msg->nrcpt)
            return (int)i;
    }

    /* Draining stops new submissions, not reuse: what is queued still
     * rides the connections already open. */
    const smtp_config *cfg = smtp__config(c->sched);
    if (c->messages_started >= cfg->max_messages_per_connection)
        return -1;

    struct smtp__msg *msg = smtp__dest_pop(c->dest);
    if (msg == NULL || smtp__conn_batch_add(c, msg) != 0)
        return -1;
    return (int)c->batch_len - 1;
}

/* Opens a transaction for the message at `index`: its recipients still
 * pending, up to the per-transaction limit. */
static void txn_begin(struct smtp__conn *c, int index)
{
    struct smtp__msg *msg = c->batch[index];
    size_t max = smtp__config(c->sched)->max_recipients_per_transaction;
    size_t r = msg->next_rcpt;
    size_t pending = 0;

    c->txn.msg = index;
    c->dc.current = index;
    c->txn.rcpt_begin = r;
    for (; r < msg->nrcpt && pending < max; r++) {
        if (msg->rcpt_status[r] == RCPT_PENDING)
            pending++;
    }
    c->txn.rcpt_end = r;
    c->txn.rcpt_cursor = c->txn.rcpt_begin;
    c->txn.send_pos = c->txn.rcpt_begin;
    c->txn.pipelined = (c->pub.capabilities & SMTP_CAP_PIPELINING) != 0;
    if (!msg->started)
        c->messages_started++;
    msg->started = true;
}

/*
 * A reply, bytes or a close when none is due.  On a connection that has
 * served a transaction, a 421 or a close is the server shutting an idle
 * connection: the waiting messages move to a new one.  Before any
 * transaction it is the session failing, and anything else is a protocol
 * error: the messages settle transiently, so a server that always does
 * this cannot make the engine reconnect for ever.
 */
static int unsolicited(struct smtp__conn *c, int code)
{
    bool served = c->transactions > 0;

    if (served && (code == -421 || code == SMTP_ECLOSED)) {
        smtp__conn_requeue_waiting(c, SMTP_ECLOSED, "the server closed "
                                   "an idle connection");
        return smtp__conn_fail(c, 0, "the server closed an idle "
                               "connection (%s)", code == -421 ? "421"
                                                               : "EOF");
    }
    if (code == -421)
        return smtp__server_closing(c);
    if (code <= SMTP_EAGAIN)
        return smtp__conn_fail(c, code, "no reply was due: %s",
                               smtp_strerror(code));
    return smtp__conn_fail(c, SMTP_EPROTO, "reply %d when none was due",
                           -code);
}

bool smtp__closed_before_mail_reply(struct smtp__conn *c)
{
    struct smtp__msg *msg = smtp__txn_msg(c);

    if (c->pub.state != smtp_get_state(SMTP_STATE_MAIL_FROM) ||
        c->transactions == 0 || c->rstart < c->rend || msg == NULL)
        return false;
    /* The commands were sent, never answered: the recipients are as if
     * never tried. */
    for (size_t r = c->txn.rcpt_begin; r < c->txn.rcpt_end; r++) {
        if (msg->rcpt_status[r] == RCPT_SENT)
            msg->rcpt_status[r] = RCPT_PENDING;
    }
    smtp__conn_requeue_waiting(c, SMTP_ECLOSED, "the server closed the "
                               "connection before answering MAIL FROM");
    smtp__conn_fail(c, 0, "the server closed the connection before "
                    "answering MAIL FROM (EOF)");
    return true;
}

static int go_idle(struct smtp__conn *c)
{
    const smtp_config *cfg = smtp__config(c->sched);

    c->pub.local_state = TXN_IDLE;
    smtp__conn_mark_idle(c, true);
    smtp_conn_set_deadline(&c->pub, cfg->timeout_ms[SMTP_TIMEOUT_IDLE]);
    return SMTP_WANT_READ;
}

/* The chain runs from the anchor into MAIL FROM through observers only:
 * no state there may send before the next transaction's commands. */
static bool anchor_leads_to_mail(void)
{
    const smtp_state *mail = smtp__state_by_id(SMTP_STATE_MAIL_FROM);
    const smtp_state *s =
        smtp_state_next(smtp__state_by_id(SMTP_STATE_TRANSACTION));

    while (s != mail) {
        if (s == NULL || !smtp__state_is_observer(s))
            return false;
        s = smtp_state_next(s);
    }
    return true;
}

/* Takes up the transaction whose group went out behind the last end of
 * data: its replies are the bytes now due, so none is unsolicited. */
static int take_next(struct smtp__conn *c)
{
    c->has_next = false;
    smtp__conn_batch_compact(c);
    for (size_t i = 0; i < c->batch_len; i++) {
        if (c->batch[i] == c->next_msg) {
            c->txn = c->next_txn;
            c->txn.msg = (int)i;
            c->dc.current = (int)i;
            return SMTP_STATE_SKIP;
        }
    }
    /* Its recipients were settled meanwhile, which only a failure of the
     * connection does: the replies due can no longer be matched. */
    return smtp__conn_fail(c, SMTP_EPROTO, "the next transaction's message "
                           "left the batch before its replies");
}

int smtp__transaction_setup(const smtp_state *self, delivery_construct *dc,
                            connection_handle *connh, struct timeval *now)
{
    struct smtp__conn *c = smtp__conn_of(connh->conn);
    static const int none[] = {0};
    int mask, code;

    (void)self;
    txn_reset(c);
    /* A state registered before MAIL FROM after the next group went out
     * would send behind it, into the data the server now expects: the
     * chained message goes back to the queue, untried, and this
     * connection ends. */
    if (c->has_next && !anchor_leads_to_mail()) {
        const char *why = "a state that may send was registered before "
                          "MAIL FROM while the next transaction's commands "
                          "were on their way (rule: nothing sends behind a "
                          "chained group)";
        smtp__conn_give_back_chained(c);
        smtp__conn_requeue_waiting(c, SMTP_ESTATE, why);
        return smtp__conn_fail(c, SMTP_ESTATE, "%s", why);
    }
    if (c->has_next)
        return take_next(c);
    if (c->need_rset) {
        smtp__jump(c, SMTP_STATE_RSET, now);
        return 0;
    }
    /* Bytes that came with the last reply, or the server's close, when
     * no reply is due: taken now, not as the reply to MAIL FROM.  Nothing
     * else can be waiting that epoll has not reported, so no recv is
     * spent per message on finding nothing. */
    code = smtp__conn_has_unread(c) || c->peer_closed
               ? read_smtp_codes(dc, now, &mask, none, 1)
               : 0;
    if (code != 0)
        return unsolicited(c, code);
    smtp__conn_batch_compact(c);

    int index = find_work(c);
    if (index >= 0) {
        txn_begin(c, index);
        return SMTP_STATE_SKIP;
    }
    if (smtp__draining(c->sched) || c->messages_started >=
        smtp__config(c->sched)->max_messages_per_connection) {
        smtp__jump(c, SMTP_STATE_QUIT, now);
        return 0;
    }
    return go_idle(c);
}

int smtp__transaction_callback(SMTP__CALLBACK_PARAMS)
{
    struct smtp__conn *c = smtp__conn_of(conn);
    static const int none[] = {0};
    int mask = SMTP_WANT_READ;

    (void)e, (void)domain, (void)binding_slot, (void)am;
    if (events & E_READ) {
        int code = read_smtp_codes(dc, now, &mask, none, 1);
        if (code != 0)
            return unsolicited(c, code);
    }
    if (events & E_TIMEOUT) {
        smtp__jump(c, SMTP_STATE_QUIT, now);
        return SMTP_WANT_READ;
    }
    if (events & E_ASYNC) {
        smtp__conn_mark_idle(c, false);
        smtp_next_state(dc, connh, conn->state, now);
        return SMTP_WANT_READ;
    }
    return mask;
}

/* ---- MAIL FROM ----------------------------------------------------------- */

/* Opens a file body; false when it is not a readable regular file (the
 * message then fails transiently and the connection moves on).  The file
 * is read in chunks while the body is sent, never mapped: a file cut
 * short meanwhile ends the body early instead of killing the process,
 * and O_NONBLOCK keeps a FIFO from blocking the loop. */
static bool body_open(struct smtp__conn *c, struct smtp__msg *msg)
{
    struct stat st;
    int fd;

    if (msg->m->path == NULL) {
        c->txn.body = msg->m->data;
        c->txn.body_len = msg->m->data ? msg->m->len : 0;
        return true;
    }
    fd = open(msg->m->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    if (fd < 0)
        return false;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return false;
    }
    c->txn.body_fd = fd;
    c->txn.body_len = (size_t)st.st_size;
    c->txn.file_off = 0;
    return true;
}

/* " SIZE=<n>" into out[0..32), as decimal digits without printf. */
static const char *size_param(char out[32], size_t n)
{
    char *p = out + 31;

    *p = '\0';
    do
        *--p = (char)('0' + n % 10);
    while ((n /= 10) != 0);
    p -= 6;
    memcpy(p, " SIZE=", 6);
    return p;
}

static bool send_mail_group(struct smtp__conn *c, struct smtp__msg *msg);

int smtp__mail_setup(const smtp_state *self, delivery_construct *dc,
                     connection_handle *connh, struct timeval *now)
{
    struct smtp__conn *c = smtp__conn_of(connh->conn);
    struct smtp__msg *msg = smtp__txn_msg(c);

    (void)self;
    if (msg == NULL) {
        smtp__jump(c, SMTP_STATE_TRANSACTION, now);
        return 0;
    }
    if (c->txn.group_sent)
        return SMTP_WANT_READ;
    if (!body_open(c, msg)) {
        c->error = SMTP_EIO;
        strcpy(c->error_text, "the message file is not a readable regular "
               "file");
        smtp_outcome_set(dc, c->txn.msg, -1, SMTP_OUTCOME_TRANSIENT, NULL,
                         SMTP_STAGE_MAIL_FROM);
        c->error = 0;
        c->error_text[0] = '\0';
        smtp__jump(c, SMTP_STATE_TRANSACTION, now);
        return 0;
    }
    return send_mail_group(c, msg) ? SMTP_WANT_READ : SMTP_ESTATE;
}

/* MAIL FROM for the open transaction and, with PIPELINING, its RCPTs and
 * DATA in the same write; the replies are then read in order by MAIL
 * FROM, RCPT TO and DATA.  False when the connection failed. */
static bool send_mail_group(struct smtp__conn *c, struct smtp__msg *msg)
{
    char size_buf[32];
    const char *size = "";

    if (c->pub.capabilities & SMTP_CAP_SIZE)
        size = size_param(size_buf, c->txn.body_len);

    const char *mail[] = {"MAIL FROM:<", msg->m->sender, ">", size, "\r\n",
                          NULL};
    static const char *const data[] = {SMTP__DATA_LINE, NULL};
    if (!smtp__send_joined(c, mail))
        return false;
    msg->began_in = c->pub.session_id;
    if (!c->txn.pipelined)
        return true;
    if (!smtp__send_rcpts(c, true) || !smtp__send_joined(c, data))
        return false;
    c->txn.data_due = true;
    return true;
}

/* The message find_work would take next, when its group can go out now:
 * not the message still open, and with its body in memory (a file is
 * opened when its own transaction starts).  One from the queue joins the
 * batch only then, so a message left queued can still go to another
 * connection. */
static int chain_pick(struct smtp__conn *c)
{
    for (size_t i = 0; i < c->batch_len; i++) {
        struct smtp__msg *msg = c->batch[i];
        if (msg == NULL || msg->next_rcpt >= msg->nrcpt)
            continue;
        if ((int)i == c->txn.msg || msg->m->path != NULL)
            return -1;
        return (int)i;
    }

    struct smtp__msg *head = c->dest->queue_head;
    if (head == NULL || head->m->path != NULL ||
        c->messages_started >= smtp__config(c->sched)
                                   ->max_messages_per_connection)
        return -1;
    return find_work(c);
}

void smtp__chain_next_transaction(struct smtp__conn *c)
{
    if (!c->txn.pipelined || c->has_next || c->need_rset || c->peer_closed ||
        smtp__conn_has_unread(c) || !anchor_leads_to_mail())
        return;

    int index = chain_pick(c);
    if (index < 0)
        return;
    struct smtp__msg *msg = c->batch[index];

    struct smtp__txn current = c->txn;
    int current_index = c->dc.current;

    memset(&c->txn, 0, sizeof(c->txn));
    c->txn.body_fd = -1;
    txn_begin(c, index);
    body_open(c, msg);
    c->chaining = true;
    bool sent = send_mail_group(c, msg);
    c->chaining = false;
    if (sent) {
        c->txn.group_sent = true;
        c->next_txn = c->txn;
        c->next_msg = msg;
        c->has_next = true;
    }
    c->txn = current;
    c->dc.current = current_index;
}

int smtp__mail_callback(SMTP__CALLBACK_PARAMS)
{
    struct smtp__conn *c = smtp__conn_of(conn);
    static const int ok[] = {250};
    int code, ret;

    (void)e, (void)domain, (void)binding_slot, (void)am;
    if (!smtp__await_reply(c, events, ok, 1, &code, &ret))
        return ret;
    c->transactions++;
    if (code > 0) {
        c->txn.open = true;
        smtp_next_state(dc, connh, NULL, now);
        return SMTP_WANT_READ;
    }
    /* The sender was refused: no transaction is open, no RSET needed.
     * Under PIPELINING the RCPT and DATA replies are still due; RCPT TO
     * and DATA read them and change nothing. */
    smtp_outcome_set(dc, c->txn.msg, -1,
                     -code >= 500 ? SMTP_OUTCOME_PERMANENT
                                  : SMTP_OUTCOME_TRANSIENT,
                     &dc->last_reply, SMTP_STAGE_MAIL_FROM);
    if (c->txn.pipelined) {
        c->txn.mail_refused = true;
        smtp_next_state(dc, connh, NULL, now);
        return SMTP_WANT_READ;
    }
    smtp__jump(c, SMTP_STATE_TRANSACTION, now);
    return SMTP_WANT_READ;
}

