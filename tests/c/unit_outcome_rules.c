/*
 * unit_outcome_rules.c - what smtp_outcome_set (csrc/outcome.c) lets a
 * state decide: TRANSIENT or PERMANENT only.  DELIVERED is the engine's,
 * on a 2xx to the end of the data (DESIGN 8), and any other kind is
 * refused; a refusal settles nothing and names the rule.
 *
 * The connection is a record made by hand on a real scheduler that
 * never runs its loop: the rule is the function's, whatever the server.
 */
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "engine.h"

struct seen {
    int outcomes;
    int kind;
};

static void on_outcome(const smtp_outcome *o, void *arg)
{
    struct seen *s = arg;

    s->outcomes++;
    s->kind = o->kind;
}

int main(void)
{
    static const char *rcpts[] = {"a@x.test", "b@x.test"};
    static const smtp_message pub = {.sender = "s@x.test",
                                     .recipients = rcpts,
                                     .nrecipients = 2, .data = "x",
                                     .len = 1, .id = 1};
    static const smtp_destination nowhere = {.host = "127.0.0.1",
                                             .port = 9};
    static const int refused[] = {SMTP_OUTCOME_DELIVERED, 0, 4, 42, -1};
    struct seen seen = {0};
    smtp_config cfg;

    smtp_config_init(&cfg);
    cfg.on_outcome = on_outcome;
    cfg.outcome_arg = &seen;
    smtp_scheduler *sched = smtp_scheduler_new(&cfg);
    CHECK(sched != NULL);
    /* Really submitted, so the scheduler counts it pending. */
    CHECK(smtp_scheduler_submit(sched, &nowhere, &pub) == 0);

    struct smtp__dest *d = calloc(1, sizeof(*d));
    struct smtp__msg *msg = calloc(1, sizeof(*msg));
    struct smtp__conn *c = calloc(1, sizeof(*c));
    msg->m = &pub;
    msg->dest = d;
    msg->nrcpt = 2;
    msg->unsettled = 2;
    msg->rcpt_status = calloc(2, 1);
    c->sched = sched;
    c->dest = d;
    c->handle.conn = &c->pub;
    c->dc.conn_handle = &c->handle;
    c->txn.msg = -1;
    smtp__conn_batch_add(c, msg);

    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        for (int message = -1; message <= 0; message++) {
            for (int rcpt = -1; rcpt <= 1; rcpt++) {
                smtp_outcome_set(&c->dc, message, rcpt, refused[i], NULL,
                                 SMTP_STAGE_CUSTOM);
                CHECK(smtp_last_error_code() == SMTP_EINVAL);
                CHECK(strstr(smtp_last_error(), "TRANSIENT or PERMANENT")
                      != NULL);
            }
        }
    }
    CHECK(seen.outcomes == 0);
    CHECK(msg->unsettled == 2 && !msg->released);

    /* What a state may decide is decided, recipient by recipient. */
    smtp_outcome_set(&c->dc, 0, 1, SMTP_OUTCOME_PERMANENT, NULL,
                     SMTP_STAGE_CUSTOM);
    CHECK(smtp_last_error_code() == 0);
    CHECK(seen.outcomes == 1 && seen.kind == SMTP_OUTCOME_PERMANENT);
    smtp_outcome_set(&c->dc, -1, -1, SMTP_OUTCOME_TRANSIENT, NULL,
                     SMTP_STAGE_CUSTOM);
    CHECK(smtp_last_error_code() == 0);
    CHECK(seen.outcomes == 2 && seen.kind == SMTP_OUTCOME_TRANSIENT);
    CHECK(msg->released);

    free(c->batch);
    free(c->batch_pub);
    free(c);
    /* Frees the released message and settles the submitted one. */
    smtp_scheduler_free(sched);
    CHECK(seen.outcomes == 4);
    free(d);
    CTEST_END();
}
