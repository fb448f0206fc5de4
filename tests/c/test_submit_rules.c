/*
 * test_submit_rules.c - bad input from the caller, at the C entry point.
 *
 * The Python binding checks envelopes before they reach C, so these rules
 * are proven here without it: every bad message or destination handed to
 * smtp_scheduler_submit is refused with SMTP_EINVAL and a reason naming its
 * rule, nothing is queued, and a listening socket of the test's own sees no
 * connection even after the loop has run.  A good message sent afterwards
 * does connect, so the listener would have seen a leak.
 */
#define _POSIX_C_SOURCE 200809L

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "smtp.h"
#include "ctest.h"

static int outcomes;

static void on_outcome(const smtp_outcome *o, void *arg)
{
    (void)o;
    (void)arg;
    outcomes++;
}

/* A loopback listener that never answers: it only tells whether anyone
 * connected. */
static int listen_loopback(int *port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(fd, 16) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        perror("listener");
        exit(2);
    }
    *port = ntohs(sa.sin_port);
    return fd;
}

static int accepted(int listener)
{
    int n = 0;
    int fd;

    while ((fd = accept(listener, NULL, NULL)) >= 0) {
        close(fd);
        n++;
    }
    return n;
}

struct case_ {
    const char *what;
    const char *rule; /* what smtp_last_error() must name */
    const char *sender;
    const char *rcpt;
    size_t nrcpt;
    const char *path;
    const char *helo;
    int port; /* 0: the listener's */
};

static void refused(smtp_scheduler *sched, int port, const struct case_ *c)
{
    const char *rcpts[] = {"good@server.test", c->rcpt};
    const char *body = "Subject: x\r\n\r\nbody\r\n";
    smtp_destination dest = {"127.0.0.1", c->port ? c->port : port, c->helo,
                             NULL};
    smtp_message msg = {
        .sender = c->sender,
        .recipients = rcpts,
        .nrecipients = c->nrcpt,
        .data = c->path ? NULL : body,
        .len = c->path ? 0 : strlen(body),
        .path = c->path,
        .id = 1,
    };
    int rc = smtp_scheduler_submit(sched, &dest, &msg);
    int ok = rc == SMTP_EINVAL &&
             smtp_last_error_code() == SMTP_EINVAL &&
             strstr(smtp_last_error(), c->rule) != NULL &&
             smtp_scheduler_pending(sched) == 0;

    if (!ok)
        fprintf(stderr, "case %s: rc=%d error=%s\n", c->what, rc,
                smtp_last_error());
    CHECK(ok);
}

int main(void)
{
    static char long_addr[300];
    char dir[] = "/tmp/submit-rules-XXXXXX";
    char fifo[64];
    int port;
    int listener = listen_loopback(&port);
    smtp_config cfg;
    smtp_scheduler *sched;

    memset(long_addr, 'a', 250);
    memcpy(long_addr + 250, "@b.cc", 6); /* 255 octets */
    if (mkdtemp(dir) == NULL)
        return 2;
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    if (mkfifo(fifo, 0600) != 0)
        return 2;

    const struct case_ cases[] = {
        {"CR in sender", "rule: address", "a\r@b", "r@x", 2, NULL, NULL, 0},
        {"LF in sender", "rule: address", "a\n@b", "r@x", 2, NULL, NULL, 0},
        {"CRLF in recipient", "rule: address", "s@x", "r\r\nRCPT TO:<e@v>",
         2, NULL, NULL, 0},
        {"control byte in recipient", "rule: address", "s@x",
         "r\x01@x", 2, NULL, NULL, 0},
        {"angle bracket", "rule: address", "s@x", "<r@x>", 2, NULL, NULL, 0},
        {"space outside quotes", "rule: address", "s@x", "r x@y", 2, NULL,
         NULL, 0},
        {"address over 254 octets", "rule: address", "s@x", long_addr, 2,
         NULL, NULL, 0},
        {"empty recipient", "rule: address", "s@x", "", 2, NULL, NULL, 0},
        {"NULL sender", "rule: address", NULL, "r@x", 2, NULL, NULL, 0},
        {"no recipients", "rule: at least one recipient", "s@x", "r@x", 0,
         NULL, NULL, 0},
        {"missing file", "rule: body", "s@x", "r@x", 2, "/nonexistent/m",
         NULL, 0},
        {"directory as file", "rule: body", "s@x", "r@x", 2, "/tmp", NULL,
         0},
        {"fifo as file", "rule: body", "s@x", "r@x", 2, fifo, NULL, 0},
        {"CR in EHLO name", "rule: EHLO", "s@x", "r@x", 2, NULL,
         "client\r.test", 0},
        {"LF in EHLO name", "rule: EHLO", "s@x", "r@x", 2, NULL,
         "client\nQUIT", 0},
        {"space in EHLO name", "rule: EHLO", "s@x", "r@x", 2, NULL, "a b",
         0},
        {"empty EHLO name", "rule: EHLO", "s@x", "r@x", 2, NULL, "", 0},
        {"port out of range", "rule: port", "s@x", "r@x", 2, NULL, NULL,
         70000},
    };

    smtp_config_init(&cfg);
    cfg.on_outcome = on_outcome;
    sched = smtp_scheduler_new(&cfg);
    CHECK(sched != NULL);
    if (sched == NULL)
        return 1;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        refused(sched, port, &cases[i]);

    /* The loop has nothing to do: no connection, no outcome. */
    CHECK(smtp_scheduler_run_once(sched, 50) >= 0);
    CHECK(smtp_scheduler_connections(sched) == 0);
    CHECK(outcomes == 0);
    usleep(50 * 1000);
    CHECK(accepted(listener) == 0);

    /* The same scheduler still takes good work, and that does connect. */
    {
        const char *rcpts[] = {"r@x"};
        smtp_destination dest = {"127.0.0.1", port, NULL, NULL};
        smtp_message msg = {"s@x", rcpts, 1, "x\r\n", 3, NULL, 2, NULL};
        CHECK(smtp_scheduler_submit(sched, &dest, &msg) == 0);
        for (int i = 0; i < 50 && smtp_scheduler_connections(sched) == 0;
             i++)
            smtp_scheduler_run_once(sched, 10);
        usleep(50 * 1000);
        CHECK(accepted(listener) == 1);
    }
    smtp_scheduler_free(sched); /* settles the good message transiently */
    CHECK(outcomes == 1);
    close(listener);
    unlink(fifo);
    rmdir(dir);
    CTEST_END();
}
