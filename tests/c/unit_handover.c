/*
 * unit_handover.c - the bound on hand-overs (csrc/connection.c,
 * smtp__conn_requeue_waiting): a message that connections keep giving
 * back before its transaction started is settled on the last allowed
 * hand-over, transiently and saying why, instead of going round for ever.
 *
 * No path through the built-in states alone hands one message over more
 * than once (a custom state's jump to QUIT settles at once), so the
 * guard is driven here directly, with connection records made by hand on
 * a real scheduler that never runs its loop.
 */
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "engine.h"

struct seen {
    int outcomes;
    int kind;
    int error;
    char text[200];
};

static void on_outcome(const smtp_outcome *o, void *arg)
{
    struct seen *s = arg;

    s->outcomes++;
    s->kind = o->kind;
    s->error = o->error;
    snprintf(s->text, sizeof(s->text), "%s", o->text);
}

static struct smtp__conn *fake_conn(smtp_scheduler *sched,
                                    struct smtp__dest *d, uint64_t session)
{
    struct smtp__conn *c = calloc(1, sizeof(*c));

    c->sched = sched;
    c->dest = d;
    c->pub.session_id = session;
    c->handle.conn = &c->pub;
    c->dc.conn_handle = &c->handle;
    c->txn.msg = -1;
    return c;
}

static void free_conn(struct smtp__conn *c)
{
    free(c->batch);
    free(c->batch_pub);
    free(c);
}

int main(void)
{
    static const char *rcpts[] = {"a@x.test", "b@x.test"};
    static const smtp_message pub = {.sender = "s@x.test",
                                     .recipients = rcpts,
                                     .nrecipients = 2, .data = "x",
                                     .len = 1, .id = 7};
    /* A message really submitted, so the scheduler counts one pending
     * for the hand-made one to release. */
    static const smtp_destination nowhere = {.host = "127.0.0.1",
                                             .port = 9};
    struct seen seen = {0};
    smtp_config cfg;

    smtp_config_init(&cfg);
    cfg.on_outcome = on_outcome;
    cfg.outcome_arg = &seen;
    smtp_scheduler *sched = smtp_scheduler_new(&cfg);
    CHECK(sched != NULL);
    CHECK(smtp_scheduler_submit(sched, &nowhere, &pub) == 0);

    struct smtp__dest *d = calloc(1, sizeof(*d));
    struct smtp__msg *msg = calloc(1, sizeof(*msg));
    msg->m = &pub;
    msg->dest = d;
    msg->nrcpt = 2;
    msg->unsettled = 2;
    msg->rcpt_status = calloc(2, 1);

    /* A connection on which the message's transaction began gives it
     * back without counting: it is a retry, not a hand-over. */
    struct smtp__conn *c = fake_conn(sched, d, 100);
    msg->began_in = 100;
    smtp__conn_batch_add(c, msg);
    smtp__conn_requeue_waiting(c, SMTP_ECLOSED, "why 0");
    CHECK(msg->handovers == 0);
    CHECK(d->queued == 1 && smtp__dest_pop(d) == msg);
    free_conn(c);

    /* Hand-overs below the bound go back to the queue. */
    for (unsigned i = 1; i < SMTP__MAX_HANDOVERS; i++) {
        c = fake_conn(sched, d, 100 + i);
        smtp__conn_batch_add(c, msg);
        smtp__conn_requeue_waiting(c, SMTP_ECLOSED, "why");
        CHECK(msg->handovers == i);
        CHECK(seen.outcomes == 0);
        CHECK(d->queued == 1 && smtp__dest_pop(d) == msg);
        CHECK(c->batch[0] == NULL);
        free_conn(c);
    }

    /* The last allowed one settles every recipient, transiently, with
     * the count and the last reason. */
    c = fake_conn(sched, d, 200);
    smtp__conn_batch_add(c, msg);
    smtp__conn_requeue_waiting(c, SMTP_ESTATE, "QUIT from state policy");
    CHECK(d->queued == 0);
    CHECK(seen.outcomes == 2);
    CHECK(seen.kind == SMTP_OUTCOME_TRANSIENT);
    CHECK(seen.error == SMTP_ESTATE);
    CHECK(strstr(seen.text, "ended before the transaction started, 3 "
                 "times (last: QUIT from state policy)") != NULL);
    CHECK(msg->released);
    free_conn(c);

    /* Frees the released message and settles the submitted one. */
    smtp_scheduler_free(sched);
    CHECK(seen.outcomes == 4);
    free(d);
    CTEST_END();
}
