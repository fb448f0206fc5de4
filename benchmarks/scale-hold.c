/*
 * scale-hold - holds N connections of one scheduler past EHLO, reports
 * the process's resident size with none and with all of them open, then
 * lets them go on and deliver one message each.
 *
 *   scale-hold --port P --connections N [--host H] [--wait-ms MS]
 *              [--ramp K]
 *
 * A custom state after session-ready parks every connection: it sends
 * nothing and waits for a wake-up, so a parked connection has read the
 * server's 250 to EHLO and holds exactly what the engine keeps for an
 * idle session.  Connections open K at a time (1,000 by default), the
 * next K once the last are parked: opening all at once would overflow
 * the server's accept queue (somaxconn), and a connection whose final
 * ACK the server dropped looks open to the client but never gets a
 * banner.  The program talks to benchmarks/scale.py through lines on
 * stdout and stdin:
 *
 *   ready messages=N rss_kib=R            messages built, no connection
 *   held parked=P open=O rss_kib=R        all parked, or the wait ran out
 *   (a line on stdin: the benchmark has looked at the server's side)
 *   summary delivered=D transient=T permanent=X parked_total=P
 *
 * The descriptor limit is the caller's: the benchmark raises it before
 * starting this program, as the library never touches it.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smtp.h"

struct hold {
    connection **parked;  /* slot per connection, NULL once it left */
    size_t cap;           /* slots: one per connection at most */
    size_t used;          /* slots handed out */
    size_t now_parked;    /* connections in the state now */
    unsigned long delivered, transient, permanent;
};

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;

    if (f == NULL)
        return -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kib = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kib;
}

static long elapsed_ms(const struct timespec *start)
{
    struct timespec now;

    clock_gettime(CLOCK_MONOTONIC, &now);
    return (now.tv_sec - start->tv_sec) * 1000 +
           (now.tv_nsec - start->tv_nsec) / 1000000;
}

static void on_outcome(const smtp_outcome *o, void *arg)
{
    struct hold *h = arg;

    if (o->kind == SMTP_OUTCOME_DELIVERED)
        h->delivered++;
    else if (o->kind == SMTP_OUTCOME_PERMANENT)
        h->permanent++;
    else
        h->transient++;
}

/* ---- the parking state ------------------------------------------------ */

/* The slot index is kept in state_closure, one past it, so that the
 * free callback can forget a connection that closes while parked. */
static int park_setup(const smtp_state *self, delivery_construct *dc,
                      connection_handle *connh, struct timeval *now)
{
    struct hold *h = self->closure;
    connection *conn = connh->conn;

    (void)dc, (void)now;
    if (h->used == h->cap)
        return SMTP_ESTATE;
    h->parked[h->used] = conn;
    conn->state_closure = (void *)(h->used + 1);
    h->used++;
    h->now_parked++;
    return SMTP_WANT_READ;
}

static void park_free(const smtp_state *self, connection *conn)
{
    struct hold *h = self->closure;
    size_t slot = (size_t)conn->state_closure;

    if (slot == 0)
        return;
    h->parked[slot - 1] = NULL;
    conn->state_closure = NULL;
    h->now_parked--;
}

/* Only the wake-up moves on; a reply while parked (a 421 from a server
 * that timed the session out) or the deadline ends the connection. */
static int park_callback(delivery_construct *dc, Event *e, connection *conn,
                         connection_handle *connh, domain_record *domain,
                         ec_binding_slot binding_slot, address_metrics *am,
                         struct timeval *now, int events)
{
    if (events & E_ASYNC) {
        smtp_next_state(dc, connh, NULL, now);
        return SMTP_WANT_READ;
    }
    (void)e, (void)domain, (void)binding_slot, (void)am;
    return smtp_conn_fail(conn, events & E_TIMEOUT ? SMTP_ETIMEOUT
                                                   : SMTP_EPROTO,
                          "the server spoke, or the wait ran out, while "
                          "the connection was parked");
}

static int register_park(struct hold *h)
{
    smtp_state s = {
        .sizeof_smtp_state = sizeof(smtp_state),
        .name = "scale-park",
        .setup = park_setup,
        .callback = park_callback,
        .free = park_free,
        .closure = h,
    };

    if (register_smtp_client_state(&s, SMTP_STATE_SESSION_READY) < 0) {
        fprintf(stderr, "scale-hold: %s\n", smtp_last_error());
        return -1;
    }
    return 0;
}

/* ---- the run ------------------------------------------------------------ */

static int usage(void)
{
    fprintf(stderr, "usage: scale-hold --port P --connections N [--host H] "
            "[--wait-ms MS] [--ramp K]\n");
    return 64;
}

/* Submits the messages `ramp` at a time, each wave once the last one is
 * parked (or failed), and steps the loop until all are parked or the
 * wait runs out. */
static int hold_all(smtp_scheduler *sched, struct hold *h,
                    const smtp_destination *dest, smtp_message *msgs,
                    size_t n, size_t ramp, long wait_ms)
{
    struct timespec start;
    size_t submitted = 0;

    clock_gettime(CLOCK_MONOTONIC, &start);
    while (elapsed_ms(&start) < wait_ms) {
        size_t failed = h->delivered + h->transient + h->permanent;
        if (h->now_parked + failed >= submitted) {
            if (submitted == n)
                break;
            for (size_t end = submitted + ramp; submitted < n &&
                 submitted < end; submitted++) {
                if (smtp_scheduler_submit(sched, dest, &msgs[submitted])) {
                    fprintf(stderr, "scale-hold: %s\n", smtp_last_error());
                    return -1;
                }
            }
        }
        if (smtp_scheduler_run_once(sched, 100) < 0)
            return -1;
    }
    return 0;
}

static void release_all(struct hold *h)
{
    for (size_t i = 0; i < h->used; i++) {
        if (h->parked[i] != NULL)
            smtp_conn_wake(h->parked[i]);
    }
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"host", 1, 0, 'h'}, {"port", 1, 0, 'p'},
        {"connections", 1, 0, 'n'}, {"wait-ms", 1, 0, 'w'},
        {"ramp", 1, 0, 'r'},
        {0, 0, 0, 0},
    };
    smtp_destination dest = {.host = "127.0.0.1"};
    static const char body[] = "From: a@example.com\r\nTo: b@example.com\r\n"
                               "Subject: held\r\n\r\nOne line.\r\n";
    static const char *const to[] = {"b@example.com"};
    struct hold h = {0};
    long n = 0, wait_ms = 120000, ramp = 1000;
    char line[16];
    smtp_config cfg;
    int ch;

    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'h': dest.host = optarg; break;
        case 'p': dest.port = atoi(optarg); break;
        case 'n': n = atol(optarg); break;
        case 'w': wait_ms = atol(optarg); break;
        case 'r': ramp = atol(optarg); break;
        default: return usage();
        }
    }
    if (n <= 0 || dest.port <= 0 || wait_ms <= 0 || ramp <= 0)
        return usage();

    smtp_message *msgs = calloc((size_t)n, sizeof(*msgs));
    h.parked = calloc((size_t)n, sizeof(*h.parked));
    h.cap = (size_t)n;
    if (msgs == NULL || h.parked == NULL || register_park(&h) != 0)
        return 1;

    /* One message per connection: each opens its own.  The parked
     * state's deadline must outlast the benchmark's look. */
    smtp_config_init(&cfg);
    cfg.on_outcome = on_outcome;
    cfg.outcome_arg = &h;
    cfg.queue_capacity = (size_t)n;
    cfg.max_connections = (unsigned)n;
    cfg.max_connections_per_destination = (unsigned)n;
    cfg.timeout_ms[SMTP_TIMEOUT_CUSTOM] = (unsigned)wait_ms * 2;
    smtp_scheduler *sched = smtp_scheduler_new(&cfg);
    if (sched == NULL) {
        fprintf(stderr, "scale-hold: %s\n", smtp_last_error());
        return 1;
    }
    for (long i = 0; i < n; i++)
        msgs[i] = (smtp_message){.sender = "a@example.com",
                                 .recipients = to, .nrecipients = 1,
                                 .data = body, .len = sizeof(body) - 1,
                                 .id = (uint64_t)i + 1};

    printf("ready messages=%ld rss_kib=%ld\n", n, rss_kib());
    fflush(stdout);
    if (hold_all(sched, &h, &dest, msgs, (size_t)n, (size_t)ramp,
                 wait_ms) != 0)
        return 1;
    printf("held parked=%zu open=%u rss_kib=%ld\n", h.now_parked,
           smtp_scheduler_connections(sched), rss_kib());
    fflush(stdout);

    if (fgets(line, sizeof(line), stdin) == NULL)
        fprintf(stderr, "scale-hold: stdin closed; releasing anyway\n");
    release_all(&h);
    int r = smtp_scheduler_run(sched);
    smtp_scheduler_free(sched);
    printf("summary delivered=%lu transient=%lu permanent=%lu "
           "parked_total=%zu rss_kib=%ld\n", h.delivered, h.transient,
           h.permanent, h.used, rss_kib());
    free(h.parked);
    free(msgs);
    return r == 0 && h.delivered == (unsigned long)n ? 0 : 1;
}
