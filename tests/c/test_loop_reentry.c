/*
 * test_loop_reentry.c - the loop is not re-entrant: smtp_scheduler_run
 * and smtp_scheduler_run_once called while a turn of the loop is running
 * on this thread (from a state, an outcome or an event callback) return
 * SMTP_EBUSY and do nothing, whichever scheduler they are given, and
 * smtp_scheduler_free refuses the scheduler whose turn is running.
 *
 * The callback here is the outcome callback of a message whose
 * connection is refused: a real loopback connect to a bound port that
 * does not listen.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctest.h"
#include "smtp.h"

struct nest {
    smtp_scheduler *self;
    smtp_scheduler *other;
    int outcomes;
    int run_once_self, run_once_other, run_self;
    int free_error;
};

static void on_outcome(const smtp_outcome *o, void *arg)
{
    struct nest *n = arg;

    (void)o;
    if (n->outcomes++ > 0)
        return;
    n->run_once_self = smtp_scheduler_run_once(n->self, 0);
    n->run_once_other = smtp_scheduler_run_once(n->other, 0);
    n->run_self = smtp_scheduler_run(n->self);
    smtp_scheduler_free(n->self);
    n->free_error = smtp_last_error_code();
}

static void on_other_outcome(const smtp_outcome *o, void *arg)
{
    (void)o, (void)arg;
}

int main(void)
{
    struct nest n = {0};
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    smtp_config cfg;

    /* Bound, never listening: a connect to it is refused. */
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);

    smtp_config_init(&cfg);
    cfg.on_outcome = on_other_outcome;
    n.other = smtp_scheduler_new(&cfg);
    cfg.on_outcome = on_outcome;
    cfg.outcome_arg = &n;
    n.self = smtp_scheduler_new(&cfg);
    CHECK(n.self != NULL && n.other != NULL);

    static const char *to[] = {"a@x.test", "b@x.test"};
    smtp_message m = {.sender = "s@x.test", .recipients = to,
                      .nrecipients = 2, .data = "x", .len = 1, .id = 1};
    smtp_destination d = {.host = "127.0.0.1", .port = ntohs(sa.sin_port)};
    CHECK(smtp_scheduler_submit(n.self, &d, &m) == 0);

    CHECK(smtp_scheduler_run(n.self) == 0);
    CHECK(n.outcomes == 2);
    CHECK(n.run_once_self == SMTP_EBUSY);
    CHECK(n.run_once_other == SMTP_EBUSY);
    CHECK(n.run_self == SMTP_EBUSY);
    CHECK(n.free_error == SMTP_EBUSY);

    /* Outside the loop, both work as before. */
    CHECK(smtp_scheduler_run_once(n.other, 0) == 0);
    CHECK(smtp_scheduler_pending(n.self) == 0);
    smtp_scheduler_free(n.self);
    smtp_scheduler_free(n.other);
    close(fd);
    CTEST_END();
}
