/*
 * outcome.c - the one place where a recipient's fate is decided.
 *
 * A recipient is settled exactly once: the first outcome wins and every
 * later one is ignored, so a close after a partial failure cannot
 * overwrite what a reply already decided.  When a message's last
 * recipient is settled the scheduler lets go of it, and the caller may
 * free its buffers from the outcome callback on.
 */
#include <stdio.h>
#include <string.h>

#include "engine.h"
#include "internal.h"

static bool text_has(const char *text, const char *word)
{
    return text != NULL && strcasestr(text, word) != NULL;
}

/* True when the enhanced code's subject.detail is `detail` ("2.2"). */
static bool enhanced_is(const char *enh, const char *detail)
{
    size_t len = strnlen(enh, 15);

    return len >= 5 && enh[1] == '.' && strcmp(enh + 2, detail) == 0;
}

/* A first guess at the bounce class from the reply's codes and words;
 * good enough for logs, refined by classifiers later. */
int smtp__bounce_class(int kind, const smtp_reply *reply, int error,
                       int stage)
{
    const char *text = reply ? reply->text : NULL;
    const char *enh = reply ? reply->enhanced : "";

    if (kind == SMTP_OUTCOME_DELIVERED)
        return 0;
    if (error == SMTP_ETIMEOUT)
        return SMTP_BOUNCE_TIMEOUT;
    if (reply == NULL || reply->code == 0)
        return kind == SMTP_OUTCOME_PERMANENT ? SMTP_BOUNCE_GENERIC
                                              : SMTP_BOUNCE_TRANSIENT;
    if (enhanced_is(enh, "2.2") || text_has(text, "quota") ||
        text_has(text, "mailbox full"))
        return SMTP_BOUNCE_MAILBOX_FULL;
    if (enhanced_is(enh, "3.4") || reply->code == 552)
        return SMTP_BOUNCE_TOO_LARGE;
    if (text_has(text, "relay"))
        return SMTP_BOUNCE_RELAY_DENIED;
    if (text_has(text, "spam"))
        return SMTP_BOUNCE_SPAM_BLOCK;
    if (kind == SMTP_OUTCOME_TRANSIENT)
        return SMTP_BOUNCE_SOFT;
    if (enhanced_is(enh, "1.1") ||
        (stage == SMTP_STAGE_RCPT_TO &&
         (reply->code == 550 || reply->code == 553 ||
          text_has(text, "unknown user"))))
        return SMTP_BOUNCE_INVALID_RECIPIENT;
    return SMTP_BOUNCE_GENERIC;
}

static void report(smtp_scheduler *sched, struct smtp__conn *c,
                   struct smtp__msg *msg, size_t rcpt, int kind,
                   const smtp_reply *reply, int stage, int error,
                   const char *why)
{
    const smtp_config *cfg = smtp__config(sched);
    bool by_reply = reply != NULL && reply->code != 0;
    smtp_outcome out = {
        .message = msg->m,
        .rcpt = rcpt,
        .kind = kind,
        .code = by_reply ? reply->code : 0,
        .enhanced = by_reply ? reply->enhanced : "",
        .text = by_reply ? reply->text : why,
        .stage = stage,
        .state = c && c->pub.state ? c->pub.state->name : "",
        .bounce_class = smtp__bounce_class(kind, reply, error, stage),
        .error = by_reply ? 0 : (error ? error : SMTP_ECLOSED),
        .session_id = c ? c->pub.session_id : 0,
    };

    cfg->on_outcome(&out, cfg->outcome_arg);
    if (c != NULL)
        smtp__emit(c, SMTP_EVENT_OUTCOME, out.code, out.error, out.text,
                   strlen(out.text));
}

static void count(address_metrics *am, int kind)
{
    if (kind == SMTP_OUTCOME_DELIVERED)
        am->delivered++;
    else if (kind == SMTP_OUTCOME_TRANSIENT)
        am->transient++;
    else
        am->permanent++;
}

static bool is_settled(unsigned char status)
{
    status &= (unsigned char)~RCPT_REPLY_DUE;
    return status >= SMTP_OUTCOME_DELIVERED &&
           status <= SMTP_OUTCOME_PERMANENT;
}

/* Marks one recipient; returns true when it was the message's last.  One
 * whose RCPT reply is still due keeps its place in the replies' order, so
 * that reply is not taken for the next recipient's. */
static bool mark(struct smtp__msg *msg, size_t rcpt, int kind)
{
    msg->rcpt_status[rcpt] =
        (unsigned char)(kind | (msg->rcpt_status[rcpt] == RCPT_SENT
                                    ? RCPT_REPLY_DUE
                                    : 0));
    msg->unsettled--;
    return msg->unsettled == 0;
}

static void drop_from_batch(struct smtp__conn *c, struct smtp__msg *msg)
{
    for (size_t i = 0; i < c->batch_len; i++) {
        if (c->batch[i] == msg) {
            c->batch[i] = NULL;
            c->batch_pub[i] = NULL;
        }
    }
}

void smtp__settle(struct smtp__conn *c, struct smtp__msg *msg, size_t rcpt,
                  int kind, const smtp_reply *reply, int stage)
{
    if (msg == NULL || msg->released || rcpt >= msg->nrcpt ||
        is_settled(msg->rcpt_status[rcpt]))
        return;
    if (kind < SMTP_OUTCOME_DELIVERED || kind > SMTP_OUTCOME_PERMANENT)
        kind = SMTP_OUTCOME_TRANSIENT;

    bool last = mark(msg, rcpt, kind);
    const char *why = c->error_text;

    /* The error's text is needed only when no reply decides. */
    if (why[0] == '\0' && (reply == NULL || reply->code == 0))
        why = smtp_strerror(c->error);
    count(&c->dest->metrics, kind);
    report(c->sched, c, msg, rcpt, kind, reply, stage, c->error, why);
    if (last) {
        drop_from_batch(c, msg);
        smtp__msg_release(c->sched, msg);
    }
}

static void settle_message(struct smtp__conn *c, struct smtp__msg *msg,
                           int kind, const smtp_reply *reply, int stage)
{
    for (size_t r = 0; r < msg->nrcpt; r++)
        smtp__settle(c, msg, r, kind, reply, stage);
}

void smtp__settle_unsettled(struct smtp__conn *c, int kind,
                            const smtp_reply *reply, int stage)
{
    for (size_t i = 0; i < c->batch_len; i++) {
        if (c->batch[i] != NULL)
            settle_message(c, c->batch[i], kind, reply, stage);
    }
}

void smtp__settle_without_conn(smtp_scheduler *sched, struct smtp__msg *msg,
                               int error, const char *text)
{
    for (size_t r = 0; r < msg->nrcpt; r++) {
        if (is_settled(msg->rcpt_status[r]))
            continue;
        msg->rcpt_status[r] = SMTP_OUTCOME_TRANSIENT;
        msg->dest->metrics.transient++;
        report(sched, NULL, msg, r, SMTP_OUTCOME_TRANSIENT, NULL,
               SMTP_STAGE_NOT_CONNECTED, error, text);
    }
    smtp__msg_release(sched, msg);
}

/* A state may give up on a delivery, never claim one: only the engine's
 * confirmation, which has read a 2xx to the end of the data, decides
 * DELIVERED (through smtp__settle, not this entry point). */
SMTP_API void smtp_outcome_set(delivery_construct *dc, int message, int rcpt,
                               int kind, const smtp_reply *reply, int stage)
{
    if (kind != SMTP_OUTCOME_TRANSIENT && kind != SMTP_OUTCOME_PERMANENT) {
        smtp__fail(SMTP_EINVAL, "smtp_outcome_set: outcome kind %d refused; "
                   "a state decides TRANSIENT or PERMANENT only (rule: only "
                   "a 2xx to the end of the data makes DELIVERED)", kind);
        return;
    }
    smtp__succeed();

    struct smtp__conn *c = smtp__conn_of_dc(dc);
    /* Without a reply and without a failure of the connection, nothing
     * would explain the outcome ("unknown error"): name the state that
     * decided it, for this call only. */
    bool unexplained = (reply == NULL || reply->code == 0) &&
                       c->error == 0 && c->error_text[0] == '\0';

    if (unexplained) {
        c->error = SMTP_ESTATE;
        snprintf(c->error_text, sizeof(c->error_text),
                 "state %s decided the outcome without a reply",
                 c->pub.state ? c->pub.state->name : "?");
    }
    if (message < 0) {
        smtp__settle_unsettled(c, kind, reply, stage);
    } else if ((size_t)message < c->batch_len && c->batch[message] != NULL) {
        struct smtp__msg *msg = c->batch[message];

        if (rcpt < 0)
            settle_message(c, msg, kind, reply, stage);
        else
            smtp__settle(c, msg, (size_t)rcpt, kind, reply, stage);
    }
    if (unexplained) {
        c->error = 0;
        c->error_text[0] = '\0';
    }
}
