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
    int port;         /* 0: the listener's */
    const char *host; /* NULL: 127.0.0.1 */
};

static void refused(smtp_scheduler *sched, int port, const struct case_ *c)
{
    const char *rcpts[] = {"good@server.test", c->rcpt};
    const char *body = "Subject: x\r\n\r\nbody\r\n";
    smtp_destination dest = {c->host ? c->host : "127.0.0.1",
                             c->port ? c->port : port, c->helo, NULL};
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
    static char longest_addr[300];
    char dir[] = "/tmp/submit-rules-XXXXXX";
    char fifo[64];
    int port;
    int listener = listen_loopback(&port);
    smtp_config cfg;
    smtp_scheduler *sched;

    memset(long_addr, 'a', 250);
    memcpy(long_addr + 250, "@b.cc", 6); /* 255 octets */
    memset(longest_addr, 'a', 249);
    memcpy(longest_addr + 249, "@b.cc", 6); /* 254 octets: allowed */
    if (mkdtemp(dir) == NULL)
        return 2;
    snprintf(fifo, sizeof(fifo), "%s/fifo", dir);
    if (mkfifo(fifo, 0600) != 0)
        return 2;

    const struct case_ cases[] = {
        {.what = "CR in sender", .rule = "rule: address",
         .sender = "a\r@b", .rcpt = "r@x", .nrcpt = 2},
        {.what = "LF in sender", .rule = "rule: address",
         .sender = "a\n@b", .rcpt = "r@x", .nrcpt = 2},
        {.what = "CRLF in recipient", .rule = "rule: address",
         .sender = "s@x", .rcpt = "r\r\nRCPT TO:<e@v>", .nrcpt = 2},
        {.what = "control byte in recipient", .rule = "rule: address",
         .sender = "s@x", .rcpt = "r\x01@x", .nrcpt = 2},
        {.what = "angle bracket", .rule = "rule: address",
         .sender = "s@x", .rcpt = "<r@x>", .nrcpt = 2},
        {.what = "space outside quotes", .rule = "rule: address",
         .sender = "s@x", .rcpt = "r x@y", .nrcpt = 2},
        {.what = "unclosed quote", .rule = "rule: address",
         .sender = "s@x", .rcpt = "\"r x@y", .nrcpt = 2},
        {.what = "DEL in sender", .rule = "rule: address",
         .sender = "s\x7f@x", .rcpt = "r@x", .nrcpt = 2},
        {.what = "address over 254 octets", .rule = "rule: address",
         .sender = "s@x", .rcpt = long_addr, .nrcpt = 2},
        {.what = "empty recipient", .rule = "rule: address",
         .sender = "s@x", .rcpt = "", .nrcpt = 2},
        {.what = "NULL sender", .rule = "rule: address",
         .rcpt = "r@x", .nrcpt = 2},
        {.what = "no recipients", .rule = "rule: at least one recipient",
         .sender = "s@x", .rcpt = "r@x"},
        {.what = "missing file", .rule = "rule: body",
         .sender = "s@x", .rcpt = "r@x", .nrcpt = 2, .path = "/nonexistent/m"},
        {.what = "directory as file", .rule = "rule: body",
         .sender = "s@x", .rcpt = "r@x", .nrcpt = 2, .path = "/tmp"},
        {.what = "fifo as file", .rule = "rule: body",
         .sender = "s@x", .rcpt = "r@x", .nrcpt = 2, .path = fifo},
        {.what = "CR in EHLO name", .rule = "rule: EHLO",
         .sender = "s@x", .rcpt = "r@x", .nrcpt = 2, .helo = "client\r.test"},
        {.what = "LF in EHLO name", .rule = "rule: EHLO",
         .sender = "s@x", .rcpt = "r@x", .nrcpt = 2, .helo = "client\nQUIT"},
        {.what = "space in EHLO name", .rule = "rule: EHLO",
         .sender = "s@x", .rcpt = "r@x", .nrcpt = 2, .helo = "a b"},
        {.what = "TAB in EHLO name", .rule = "rule: EHLO",
         .sender = "s@x", .rcpt = "r@x", .nrcpt = 2, .helo = "client\t.test"},
        {.what = "control byte in EHLO name", .rule = "rule: EHLO",
         .sender = "s@x", .rcpt = "r@x", .nrcpt = 2,
         .helo = "client\x1b.test"},
        {.what = "empty EHLO name", .rule = "rule: EHLO",
         .sender = "s@x", .rcpt = "r@x", .nrcpt = 2, .helo = ""},
        {.what = "CRLF in host", .rule = "rule: host",
         .sender = "s@x", .rcpt = "r@x", .nrcpt = 2, .host = "127.0.0.1\r\nx"},
        {.what = "port out of range", .rule = "rule: port",
         .sender = "s@x", .rcpt = "r@x", .nrcpt = 2, .port = 70000},
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
        const char *rcpts[] = {"r@x", longest_addr, "\"r x\"@y.z"};
        smtp_destination dest = {"127.0.0.1", port, NULL, NULL};
        smtp_message msg = {"s@x", rcpts, 3, "x\r\n", 3, NULL, 2, NULL};
        CHECK(smtp_scheduler_submit(sched, &dest, &msg) == 0);
        for (int i = 0; i < 50 && smtp_scheduler_connections(sched) == 0;
             i++)
            smtp_scheduler_run_once(sched, 10);
        usleep(50 * 1000);
        CHECK(accepted(listener) == 1);
    }
    smtp_scheduler_free(sched); /* settles the good message transiently */
    CHECK(outcomes == 3);
    close(listener);
    unlink(fifo);
    rmdir(dir);
    CTEST_END();
}
