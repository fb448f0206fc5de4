/*
 * smtpstate-send - a pure-C driver of the engine: sends RFC 5322 files,
 * or generated messages, to one server and prints one line per recipient
 * outcome.  The tests and benchmarks use it; it shows an embedder how to
 * submit with backpressure, step the loop and read outcomes and events.
 *
 *   smtpstate-send --port 2525 --from a@x --to b@y [--to ...] FILE...
 *   smtpstate-send --port 2525 --from a@x --to b@y --count 1000 --size 1024
 *
 * Generated messages carry Message-ID <N.T@smtpstate.test>, N the
 * message's id (1 up) and T the start time, so a server's log names the
 * message; with --vary-recipients message N goes to the first
 * 1 + (N - 1) mod K of the K --to addresses.  They are built one at a
 * time as they are submitted and freed at their last outcome, so a run
 * of any length holds only what the engine's queue holds: by default four
 * per connection and at least 128, as the Python API's window, so that the
 * messages on their way are still in the cache (--queue N sets it).
 * --progress N
 * prints a "progress" line on stderr every N outcomes (elapsed and CPU
 * time, resident size), which benchmarks/scale.py reads.  --noop-after
 * and --quit-after STATE insert a C state after the named one: one that
 * sends NOOP, one that ends the session by jumping to QUIT.
 *
 * Exit status: 0 all delivered, 75 only transient failures, 1 any
 * permanent failure, 64 usage error (with its reason); --help prints the
 * usage and exits 0.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "smtp.h"

#define MAX_RECIPIENTS 1024

struct totals {
    unsigned long delivered, transient, permanent;
    unsigned long sessions, closes, max_open, noops, refused;
    int quiet, trace, wire;
    unsigned long progress;   /* a progress line every this many outcomes */
    struct timespec start;
};

/* A generated message: its record and bytes, one allocation that lives
 * until its last outcome, which frees it. */
struct generated {
    smtp_message m;
    size_t unsettled;
    char data[];
};

#define HEADER_MAX 512

/* The lines after a header of each length, built once (body_after). */
struct bodies {
    char *text[HEADER_MAX];
    size_t len[HEADER_MAX];
};

struct options {
    smtp_destination dest;
    const char *from;
    const char *to[MAX_RECIPIENTS];
    size_t nto;
    long count;
    size_t size;
    const char *noop_after;
    const char *quit_after;
    long linger_ms;
    size_t pause_after;   /* submit this many, settle them, then pause */
    long pause_ms;
    size_t drain_after;   /* submit this many, then drain */
    int poll_mode;        /* step the loop from poll(2), as an embedder */
    int vary_recipients;  /* message N: the first 1 + (N-1) mod K of --to */
    int queue_given;      /* --queue named the queue's capacity */
    long stamp;           /* the start time, in generated Message-IDs */
    struct bodies *bodies;
    struct totals *totals;
    smtp_config cfg;
};

static const char *kind_name(int kind)
{
    switch (kind) {
    case SMTP_OUTCOME_DELIVERED:
        return "delivered";
    case SMTP_OUTCOME_PERMANENT:
        return "permanent";
    default:
        return "transient";
    }
}

/* Prints text as a quoted value with its control bytes escaped. */
static void print_quoted(const char *text)
{
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        if (*p == '"' || *p == '\\')
            printf("\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", stdout);
        else if (*p < 0x20 || *p == 0x7f)
            printf("\\x%02x", *p);
        else
            putchar(*p);
    }
    putchar('"');
}

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

static long long us_between(const struct timespec *a,
                            const struct timespec *b)
{
    return (b->tv_sec - a->tv_sec) * 1000000LL +
           (b->tv_nsec - a->tv_nsec) / 1000;
}

/* Time and memory so far, for benchmarks that watch a long run. */
static void print_progress(const struct totals *t)
{
    struct timespec now;
    struct rusage ru;

    clock_gettime(CLOCK_MONOTONIC, &now);
    getrusage(RUSAGE_SELF, &ru);
    long long cpu_us = (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000000LL +
                       ru.ru_utime.tv_usec + ru.ru_stime.tv_usec;
    fprintf(stderr, "progress outcomes=%lu elapsed_us=%lld cpu_us=%lld "
            "rss_kib=%ld\n", t->delivered + t->transient + t->permanent,
            us_between(&t->start, &now), cpu_us, rss_kib());
}

static void on_outcome(const smtp_outcome *o, void *arg)
{
    struct totals *t = arg;

    if (o->kind == SMTP_OUTCOME_DELIVERED)
        t->delivered++;
    else if (o->kind == SMTP_OUTCOME_PERMANENT)
        t->permanent++;
    else
        t->transient++;
    if (t->quiet)
        return;
    printf("id=%" PRIu64 " rcpt=%s result=%s code=%d enhanced=%s stage=%d "
           "state=%s class=%d error=%s session=%" PRIx64 " text=",
           o->message->id, o->message->recipients[o->rcpt],
           kind_name(o->kind), o->code, o->enhanced[0] ? o->enhanced : "-",
           o->stage, o->state[0] ? o->state : "-", o->bounce_class,
           o->error ? smtp_error_name(o->error) : "-", o->session_id);
    print_quoted(o->text);
    putchar('\n');
}

/* Counts and prints (on_outcome), then the progress line, and frees a
 * generated message at its last outcome. */
static void on_settled(const smtp_outcome *o, void *arg)
{
    struct totals *t = arg;
    struct generated *g = o->message->user;

    on_outcome(o, arg);
    if (t->progress > 0 &&
        (t->delivered + t->transient + t->permanent) % t->progress == 0)
        print_progress(t);
    if (g != NULL && --g->unsettled == 0)
        free(g);
}

static const char *event_name(int type)
{
    static const char *names[] = {"?", "connect", "state", "reply",
                                  "outcome", "close", "wire"};
    return type > 0 && type <= SMTP_EVENT_WIRE ? names[type] : "?";
}

static void on_event(const smtp_event *ev, void *arg)
{
    struct totals *t = arg;

    if (ev->type == SMTP_EVENT_CONNECT) {
        t->sessions++;
        if (ev->connections > t->max_open)
            t->max_open = ev->connections;
    } else if (ev->type == SMTP_EVENT_CLOSE) {
        t->closes++;
    }
    if (!t->trace || (ev->type == SMTP_EVENT_WIRE && !t->wire))
        return;
    printf("event=%s session=%" PRIx64 " state=%s", event_name(ev->type),
           ev->session_id, ev->state[0] ? ev->state : "-");
    if (ev->type == SMTP_EVENT_STATE)
        printf(" from=%s", ev->from[0] ? ev->from : "-");
    if (ev->type == SMTP_EVENT_REPLY)
        printf(" code=%d", ev->code);
    if (ev->type == SMTP_EVENT_CLOSE)
        printf(" error=%s", ev->error ? smtp_error_name(ev->error) : "-");
    if (ev->type == SMTP_EVENT_WIRE)
        printf(" dir=%s len=%zu", ev->sent ? "sent" : "received", ev->len);
    printf(" open=%u", ev->connections);
    if (ev->type == SMTP_EVENT_WIRE && ev->len < 4096) {
        char *copy = malloc(ev->len + 1);
        if (copy != NULL) {
            memcpy(copy, ev->text, ev->len);
            copy[ev->len] = '\0';
            fputs(" text=", stdout);
            print_quoted(copy);
            free(copy);
        }
    }
    if (ev->type == SMTP_EVENT_CLOSE || ev->type == SMTP_EVENT_REPLY) {
        fputs(" text=", stdout);
        print_quoted(ev->text);
    }
    putchar('\n');
}

/* ---- a state from C: NOOP, once per pass through its place ----------
 *
 * Its setup sends nothing: it asks for a wake-up, as a state waiting on
 * an outside lookup would, and sends NOOP when E_ASYNC arrives.  A 250
 * or 252 reply moves on; anything else fails the connection's messages
 * with the reply (5xx permanent, else transient).
 */

static int noop_setup(const smtp_state *self, delivery_construct *dc,
                      connection_handle *connh, struct timeval *now)
{
    (void)self, (void)dc, (void)now;
    smtp_conn_wake(connh->conn);
    return SMTP_WANT_READ;
}

static int noop_callback(delivery_construct *dc, Event *e, connection *conn,
                         connection_handle *connh, domain_record *domain,
                         ec_binding_slot binding_slot, address_metrics *am,
                         struct timeval *now, int events)
{
    struct totals *t = conn->state->closure;
    int mask = SMTP_WANT_READ;
    int r;

    if (events & E_TIMEOUT)
        CLOSECONN
    if (events & E_ASYNC) {
        if (smtp_conn_write(conn, "NOOP\r\n", 6) != 0)
            CLOSECONN
        return SMTP_WANT_READ;
    }
    r = read_smtp2(dc, 250, now, &mask, 252, 0);
    if (r == 0)
        return mask;
    if (r < 0) {
        smtp_outcome_set(dc, -1, -1, r <= -500 && r > -600
                                         ? SMTP_OUTCOME_PERMANENT
                                         : SMTP_OUTCOME_TRANSIENT,
                         r > -1000 ? &dc->last_reply : NULL,
                         conn->state->tostage(conn->state, conn));
        CLOSECONN
    }
    t->noops++;
    smtp_next_state(dc, connh, NULL, now);
    return SMTP_WANT_READ;
}

static int noop_tostage(const smtp_state *self, connection *conn)
{
    (void)self, (void)conn;
    return SMTP_STAGE_CUSTOM + 1;
}

static const char *noop_tostring(const smtp_state *self, int stage)
{
    (void)self;
    return stage == SMTP_STAGE_CUSTOM + 1 ? "during NOOP"
                                          : smtp_stage_name(stage);
}

/* ---- a state from C that ends the session: --quit-after STATE --------
 *
 * Its setup jumps straight to QUIT, as a policy state that refuses the
 * session would.  Every message still on the connection must then get
 * an outcome; none may be handed to a new connection for ever.
 */

static int quit_setup(const smtp_state *self, delivery_construct *dc,
                      connection_handle *connh, struct timeval *now)
{
    (void)self;
    smtp_next_state(dc, connh, smtp_get_state(SMTP_STATE_QUIT), now);
    return 0;
}

static int quit_callback(delivery_construct *dc, Event *e, connection *conn,
                         connection_handle *connh, domain_record *domain,
                         ec_binding_slot binding_slot, address_metrics *am,
                         struct timeval *now, int events)
{
    (void)events;
    CLOSECONN
}

/* Registers `s` after the state named `after`. */
static int register_after(const char *after, smtp_state *s)
{
    int id = -1;

    for (smtp_state *st = smtp_get_state_machine(); st;
         st = smtp_state_next(st)) {
        if (strcmp(st->name, after) == 0)
            id = st->id;
    }
    if (id < 0) {
        fprintf(stderr, "smtpstate-send: no state named %s\n", after);
        return -1;
    }
    if (register_smtp_client_state(s, id) < 0) {
        fprintf(stderr, "smtpstate-send: %s\n", smtp_last_error());
        return -1;
    }
    return 0;
}

static int register_noop(const char *after, struct totals *t)
{
    smtp_state s = {
        .sizeof_smtp_state = sizeof(smtp_state),
        .name = "c-noop",
        .setup = noop_setup,
        .callback = noop_callback,
        .tostage = noop_tostage,
        .tostring = noop_tostring,
        .closure = t,
    };

    return register_after(after, &s);
}

static int register_quit(const char *after)
{
    smtp_state s = {
        .sizeof_smtp_state = sizeof(smtp_state),
        .name = "c-quit",
        .setup = quit_setup,
        .callback = quit_callback,
    };

    return register_after(after, &s);
}

/* ---- messages ---------------------------------------------------------- */

/* The decimal digits of n, written to end just before `end`; returns
 * where they start. */
static char *put_decimal(char *end, unsigned long n)
{
    do
        *--end = (char)('0' + n % 10);
    while ((n /= 10) != 0);
    return end;
}

/* Message n's header, without printf (it is built once per message):
 * returns its length. */
static size_t header(char *out, long n, long stamp)
{
    static const char from[] = "From: sender@example.com\r\nTo: "
                               "rcpt@example.com\r\nSubject: message ";
    static const char id[] = "\r\nMessage-ID: <";
    static const char end[] = "@smtpstate.test>\r\n\r\n";
    char digits[24], *d;
    size_t at = sizeof(from) - 1;

    memcpy(out, from, at);
    d = put_decimal(digits + sizeof(digits), (unsigned long)n);
    memcpy(out + at, d, (size_t)(digits + sizeof(digits) - d));
    at += (size_t)(digits + sizeof(digits) - d);
    memcpy(out + at, id, sizeof(id) - 1);
    at += sizeof(id) - 1;
    memcpy(out + at, d, (size_t)(digits + sizeof(digits) - d));
    at += (size_t)(digits + sizeof(digits) - d);
    out[at++] = '.';
    d = put_decimal(digits + sizeof(digits), (unsigned long)stamp);
    memcpy(out + at, d, (size_t)(digits + sizeof(digits) - d));
    at += (size_t)(digits + sizeof(digits) - d);
    memcpy(out + at, end, sizeof(end) - 1);
    return at + sizeof(end) - 1;
}

/* The lines that follow a header of `head` octets in a message of about
 * `size`: 78 letters each, the letter set by the line's offset in the
 * message, CRLF after each that fits.  They depend on head alone, so
 * they are laid out once per header length. */
static const char *body_after(struct bodies *b, size_t head, size_t size,
                              size_t *len)
{
    if (b->text[head] == NULL) {
        char *buf = malloc(size > head ? size - head + 1 : 1);
        size_t at = head;

        if (buf == NULL)
            return NULL;
        while (at < size) {
            size_t line = size - at < 78 ? size - at : 78;
            memset(buf + at - head, 'a' + (char)(at % 26), line);
            at += line;
            if (at + 2 <= size) {
                memcpy(buf + at - head, "\r\n", 2);
                at += 2;
            }
        }
        b->text[head] = buf;
        b->len[head] = at - head;
    }
    *len = b->len[head];
    return b->text[head];
}

/* Message i of a --count run, built when it is submitted. */
static smtp_message *generate_one(const struct options *o, size_t i)
{
    char head[HEADER_MAX];
    size_t head_len = header(head, (long)i + 1, o->stamp);
    size_t body_len = 0;
    const char *body = body_after(o->bodies, head_len, o->size, &body_len);
    struct generated *g =
        body ? malloc(sizeof(*g) + head_len + body_len) : NULL;

    if (g == NULL)
        return NULL;
    memset(&g->m, 0, sizeof(g->m));
    memcpy(g->data, head, head_len);
    memcpy(g->data + head_len, body, body_len);
    g->m.data = g->data;
    g->m.len = head_len + body_len;
    g->m.sender = o->from;
    g->m.recipients = o->to;
    g->m.nrecipients = o->vary_recipients ? 1 + i % o->nto : o->nto;
    g->m.id = i + 1;
    g->m.user = g;
    g->unsettled = g->m.nrecipients;
    return &g->m;
}

static void free_generated(smtp_message *msg)
{
    free(msg->user);
}

/* Steps the loop as an embedder would, without finishing: idle
 * connections stay open until their idle deadline QUITs them. */
static int linger(smtp_scheduler *sched, long ms)
{
    struct timespec start, now;

    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long spent = (now.tv_sec - start.tv_sec) * 1000 +
                     (now.tv_nsec - start.tv_nsec) / 1000000;
        if (smtp_scheduler_pending(sched) == 0 &&
            smtp_scheduler_connections(sched) == 0)
            return 0;
        if (spent >= ms)
            return 0;
        if (smtp_scheduler_run_once(sched, (int)(ms - spent)) < 0)
            return -1;
    }
}

/* Settles what was submitted, keeping connections open, then sleeps
 * without running the loop, as a busy embedder might. */
static int settle_then_pause(smtp_scheduler *sched, long ms)
{
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000};

    while (smtp_scheduler_pending(sched) > 0) {
        if (smtp_scheduler_run_once(sched, -1) < 0)
            return -1;
    }
    nanosleep(&pause, NULL);
    return 0;
}

/* Drives the engine from poll(2) on its descriptor, with its next
 * deadline as the timeout, the way an embedder's own loop would. */
static int run_from_poll(smtp_scheduler *sched)
{
    int draining = 0;

    while (smtp_scheduler_pending(sched) > 0 ||
           smtp_scheduler_connections(sched) > 0) {
        struct pollfd pfd = {smtp_scheduler_fd(sched), POLLIN, 0};
        if (!draining && smtp_scheduler_pending(sched) == 0) {
            smtp_scheduler_drain(sched);
            draining = 1;
        }
        if (poll(&pfd, 1, smtp_scheduler_next_deadline(sched)) < 0 &&
            errno != EINTR)
            return -1;
        if (smtp_scheduler_run_once(sched, 0) < 0)
            return -1;
    }
    return 0;
}

static int submit_one(smtp_scheduler *sched, struct options *o,
                      smtp_message *msg, struct totals *t)
{
    int r;

    /* Waiting for room before submitting spares the engine checking and
     * refusing the message once per turn (SMTP_EAGAIN stays the rule). */
    while (smtp_scheduler_pending(sched) >= o->cfg.queue_capacity) {
        if (smtp_scheduler_run_once(sched, -1) < 0)
            return -1;
    }
    while ((r = smtp_scheduler_submit(sched, &o->dest, msg)) == SMTP_EAGAIN) {
        if (smtp_scheduler_run_once(sched, -1) < 0)
            return -1;
    }
    if (r == SMTP_ECLOSED) {
        printf("id=%" PRIu64 " refused=%s\n", msg->id, smtp_error_name(r));
        t->refused++;
        return 1;
    }
    if (r != 0) {
        fprintf(stderr, "smtpstate-send: %s\n", smtp_last_error());
        return -1;
    }
    return 0;
}

/* Submits the files' messages, or (msgs NULL) n generated ones. */
static int submit_all(smtp_scheduler *sched, struct options *o,
                      smtp_message *msgs, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (o->pause_after > 0 && i == o->pause_after &&
            settle_then_pause(sched, o->pause_ms) != 0)
            return -1;
        if (o->drain_after > 0 && i == o->drain_after)
            smtp_scheduler_drain(sched);

        smtp_message *msg = msgs ? &msgs[i] : generate_one(o, i);
        if (msg == NULL) {
            fprintf(stderr, "smtpstate-send: out of memory\n");
            return -1;
        }
        int r = submit_one(sched, o, msg, o->totals);
        if (r > 0 && msgs == NULL)
            free_generated(msg); /* refused: no outcome will free it */
        if (r < 0)
            return -1;
    }
    if (o->linger_ms > 0)
        return linger(sched, o->linger_ms);
    if (o->poll_mode)
        return run_from_poll(sched);
    return smtp_scheduler_run(sched);
}

/* ---- options ------------------------------------------------------------ */

static const char *timeout_names[SMTP_TIMEOUT_COUNT] = {
    "connect", "banner", "ehlo", "mail", "rcpt", "data", "body",
    "confirm", "rset", "quit", "tls", "idle", "custom",
};

/* A usage error: says why on stderr; the caller prints the usage. */
static int bad_usage(const char *fmt, ...)
{
    va_list ap;

    fputs("smtpstate-send: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return -1;
}

/* A whole decimal number in [min, max]: atoi would take "abc" as 0 and
 * "70000" as a port, and say nothing. */
static int number(const char *option, const char *text, long long min,
                  long long max, long long *out)
{
    char *end;
    long long v;

    errno = 0;
    v = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || v < min || v > max)
        return bad_usage("--%s %s: use %lld to %lld", option, text, min,
                         max);
    *out = v;
    return 0;
}

static int set_timeout(smtp_config *cfg, const char *spec)
{
    const char *eq = strchr(spec, '=');
    long long ms;

    for (int i = 0; eq && i < SMTP_TIMEOUT_COUNT; i++) {
        if (strlen(timeout_names[i]) == (size_t)(eq - spec) &&
            strncmp(spec, timeout_names[i], (size_t)(eq - spec)) == 0) {
            char *end;

            errno = 0;
            ms = strtoll(eq + 1, &end, 10);
            if (errno != 0 || end == eq + 1 || *end != '\0' || ms < 1 ||
                ms > 86400000)
                return bad_usage("bad --timeout %s: milliseconds from 1 "
                                 "to 86400000", spec);
            cfg->timeout_ms[i] = (unsigned)ms;
            return 0;
        }
    }
    return bad_usage("bad --timeout %s: use KIND=MS, KIND one of connect, "
                     "banner, ehlo, mail, rcpt, data, body, confirm, rset, "
                     "quit, tls, idle, custom", spec);
}

static void usage(FILE *out)
{
    fputs("usage: smtpstate-send [--host H] --port P --from A --to B "
          "[--to C ...]\n"
          "         (FILE... | --count N [--size BYTES])\n"
          "         [--concurrency C] [--per-connection N] "
          "[--rcpt-per-transaction N]\n"
          "         [--queue N] [--timeout KIND=MS] [--noop-after STATE]\n"
          "         [--quit-after STATE] [--linger MS] [--pause-after N:MS]\n"
          "         [--drain-after N] [--poll] [--vary-recipients]\n"
          "         [--quiet] [--trace] [--wire] [--progress N] [--help]\n",
          out);
}

/* The options into `o` and `t`: 0, 1 for --help, -1 for a usage error
 * (its reason already printed). */
static int parse(int argc, char **argv, struct options *o, struct totals *t)
{
    static const struct option longopts[] = {
        {"host", 1, 0, 'h'}, {"port", 1, 0, 'p'}, {"helo", 1, 0, 'e'},
        {"from", 1, 0, 'f'}, {"to", 1, 0, 't'}, {"count", 1, 0, 'n'},
        {"size", 1, 0, 's'}, {"concurrency", 1, 0, 'c'},
        {"per-connection", 1, 0, 'm'}, {"timeout", 1, 0, 'T'},
        {"noop-after", 1, 0, 'N'}, {"quit-after", 1, 0, 'X'},
        {"quiet", 0, 0, 'q'},
        {"trace", 0, 0, 'v'}, {"rcpt-per-transaction", 1, 0, 'r'},
        {"linger", 1, 0, 'L'}, {"pause-after", 1, 0, 'P'},
        {"queue", 1, 0, 'Q'}, {"drain-after", 1, 0, 'D'},
        {"poll", 0, 0, 'O'}, {"wire", 0, 0, 'W'},
        {"vary-recipients", 0, 0, 'V'}, {"progress", 1, 0, 'G'},
        {"help", 0, 0, 'H'}, {0, 0, 0, 0},
    };
    const long long big = 1000000000LL; /* beyond any useful run */
    long long v = 0;
    int ch, end = 0;

    o->dest.host = "127.0.0.1";
    smtp_config_init(&o->cfg);
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        const char *name = NULL;
        long long min = 1, max = big;

        switch (ch) {
        case 'H': return 1;
        case 'h': o->dest.host = optarg; continue;
        case 'e': o->dest.helo = optarg; continue;
        case 'f': o->from = optarg; continue;
        case 't':
            if (o->nto == MAX_RECIPIENTS)
                return bad_usage("more than %d --to", MAX_RECIPIENTS);
            o->to[o->nto++] = optarg;
            continue;
        case 'T':
            if (set_timeout(&o->cfg, optarg) != 0)
                return -1;
            continue;
        case 'N': o->noop_after = optarg; continue;
        case 'X': o->quit_after = optarg; continue;
        case 'O': o->poll_mode = 1; continue;
        case 'V': o->vary_recipients = 1; continue;
        case 'W':
            t->trace = t->wire = 1;
            o->cfg.wire_trace = 1;
            continue;
        case 'q': t->quiet = 1; continue;
        case 'v': t->trace = 1; continue;
        case 'P':
            if (sscanf(optarg, "%zu:%ld%n", &o->pause_after, &o->pause_ms,
                       &end) != 2 || optarg[end] != '\0' ||
                o->pause_after == 0 || o->pause_ms < 0)
                return bad_usage("--pause-after %s: use N:MS, N above 0",
                                 optarg);
            continue;
        case 'p': name = "port", max = 65535; break;
        case 'n': name = "count"; break;
        case 's': name = "size", min = 0, max = 1LL << 30; break;
        case 'c': name = "concurrency", max = 100000; break;
        case 'm': name = "per-connection"; break;
        case 'r': name = "rcpt-per-transaction"; break;
        case 'L': name = "linger", min = 0, max = 86400000; break;
        case 'Q': name = "queue"; break;
        case 'D': name = "drain-after", min = 0; break;
        case 'G': name = "progress", min = 0; break;
        default: return -1; /* getopt said why */
        }
        if (number(name, optarg, min, max, &v) != 0)
            return -1;
        switch (ch) {
        case 'p': o->dest.port = (int)v; break;
        case 'n': o->count = (long)v; break;
        case 's': o->size = (size_t)v; break;
        case 'c':
            o->cfg.max_connections = (unsigned)v;
            o->cfg.max_connections_per_destination = (unsigned)v;
            break;
        case 'm': o->cfg.max_messages_per_connection = (unsigned)v; break;
        case 'r': o->cfg.max_recipients_per_transaction = (unsigned)v; break;
        case 'L': o->linger_ms = (long)v; break;
        case 'Q':
            o->cfg.queue_capacity = (size_t)v;
            o->queue_given = 1;
            break;
        case 'D': o->drain_after = (size_t)v; break;
        default: t->progress = (unsigned long)v; break;
        }
    }
    if (o->dest.port == 0)
        return bad_usage("--port is required");
    if (o->from == NULL)
        return bad_usage("--from is required");
    if (o->nto == 0)
        return bad_usage("at least one --to is required");
    if (o->count > 0 && optind < argc)
        return bad_usage("--count generates the messages: give FILE... or "
                         "--count N, not both");
    if (o->count == 0 && optind == argc)
        return bad_usage("give FILE... or --count N");
    if (!o->queue_given) {
        size_t per_conn = 4 * (size_t)o->cfg.max_connections;
        size_t window = per_conn > 128 ? per_conn : 128;
        if (window < o->cfg.queue_capacity)
            o->cfg.queue_capacity = window;
    }
    return 0;
}

/* The records of the files' messages; generated ones are built as they
 * are submitted (generate_one). */
static smtp_message *file_messages(struct options *o, int argc, char **argv,
                                   size_t *n)
{
    *n = (size_t)(argc - optind);

    smtp_message *msgs = calloc(*n, sizeof(*msgs));
    if (msgs == NULL)
        return NULL;
    for (size_t i = 0; i < *n; i++) {
        msgs[i].sender = o->from;
        msgs[i].recipients = o->to;
        msgs[i].nrecipients = o->vary_recipients ? 1 + i % o->nto : o->nto;
        msgs[i].id = i + 1;
        msgs[i].path = argv[optind + (int)i];
    }
    return msgs;
}

int main(int argc, char **argv)
{
    struct totals totals = {0};
    struct options opts = {0};
    static struct bodies bodies;
    size_t n = 0;

    int parsed = parse(argc, argv, &opts, &totals);
    if (parsed != 0) {
        usage(parsed > 0 ? stdout : stderr);
        return parsed > 0 ? 0 : 64;
    }
    if (opts.noop_after && register_noop(opts.noop_after, &totals) != 0)
        return 64;
    if (opts.quit_after && register_quit(opts.quit_after) != 0)
        return 64;
    opts.totals = &totals;
    opts.bodies = &bodies;
    opts.cfg.on_outcome = on_settled;
    opts.cfg.outcome_arg = &totals;
    opts.cfg.on_event = on_event;
    opts.cfg.event_arg = &totals;

    smtp_message *msgs = NULL;
    if (opts.count > 0)
        n = (size_t)opts.count;
    else if ((msgs = file_messages(&opts, argc, argv, &n)) == NULL) {
        fprintf(stderr, "smtpstate-send: out of memory\n");
        return 1;
    }
    smtp_scheduler *sched = smtp_scheduler_new(&opts.cfg);
    if (sched == NULL) {
        fprintf(stderr, "smtpstate-send: %s\n", smtp_last_error());
        free(msgs);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &totals.start);
    opts.stamp = (long)time(NULL);
    if (totals.progress > 0)
        print_progress(&totals);
    int failed = submit_all(sched, &opts, msgs, n) != 0;
    size_t high_water = smtp_scheduler_reply_high_water(sched);
    smtp_scheduler_free(sched); /* settles anything still unsettled */
    fprintf(stderr, "summary messages=%zu delivered=%lu transient=%lu "
            "permanent=%lu sessions=%lu closes=%lu max_open=%lu noops=%lu "
            "refused=%lu reply_high_water=%zu\n", n, totals.delivered,
            totals.transient, totals.permanent, totals.sessions, totals.closes,
            totals.max_open, totals.noops, totals.refused, high_water);
    free(msgs);
    for (size_t i = 0; i < HEADER_MAX; i++)
        free(bodies.text[i]);
    if (failed)
        return 64;
    if (totals.permanent)
        return 1;
    return totals.transient || totals.refused ? 75 : 0;
}
