/*
 * scheduler.c - the loop that drives every connection.
 *
 * One turn of the loop is a fixed sequence of phases: wait for readiness
 * (no longer than the earliest deadline), hand each ready connection to
 * its state, fire the deadlines that are due, deliver wake-ups and
 * replies already buffered, open connections for queued work, and free
 * the connections closed during the turn.  A closed connection is freed
 * only at the end of a turn, so a pointer held during a phase stays
 * valid.  The scheduler owns each submitted message until its last
 * recipient has an outcome; `pending` counts them and bounds submission.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "deadlines.h"
#include "engine.h"
#include "state_table.h"

#define EPOLL_BATCH 256
#define ADDRESS_MAX 254 /* RFC 5321 4.5.3.1.3: a path is 256 octets */

struct smtp_scheduler {
    smtp_config cfg;
    int epfd;
    struct smtp__dest *dests;
    struct smtp__conn *conns;      /* every open connection */
    struct smtp__conn *wake_head;  /* connections with pending_events */
    struct smtp__conn *dead;       /* closed this turn, freed at its end */
    struct smtp__msg *released;    /* settled this turn, freed at its end */
    struct smtp__msg *free_msgs;   /* records to reuse, linked by next */
    struct smtp__deadlines deadlines;
    size_t pending;                /* messages not yet settled */
    unsigned connections;
    bool draining;                 /* no new work: submit refused */
    bool finishing;                /* run(): QUIT connections when idle */
    size_t reply_high_water;       /* largest receive buffer held */
    char *scratch;                 /* smtp__scratch, allocated on first use */
    uint64_t next_session;
};

/* The scheduler whose loop turn is running, NULL between turns.  Every
 * callback (state, outcome, event) runs inside a turn on the owner
 * thread, the only thread that may run one, so a plain variable will do.
 * A turn started from inside another would run the same states again,
 * recursively, and free what the outer turn still holds. */
static smtp_scheduler *turn_running;

static int refuse_reentry(const char *func)
{
    return smtp__fail(SMTP_EBUSY, "%s: called from inside a turn of the "
                      "loop (a state, outcome or event callback) (rule: "
                      "the loop is not re-entrant)", func);
}

uint64_t smtp__now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void smtp__timeval_now(struct timeval *tv)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    tv->tv_sec = ts.tv_sec;
    tv->tv_usec = ts.tv_nsec / 1000;
}

SMTP_API void smtp_config_init(smtp_config *cfg)
{
    static const unsigned seconds[SMTP_TIMEOUT_COUNT] = {
        [SMTP_TIMEOUT_CONNECT] = 30, [SMTP_TIMEOUT_BANNER] = 300,
        [SMTP_TIMEOUT_EHLO] = 300,   [SMTP_TIMEOUT_MAIL] = 300,
        [SMTP_TIMEOUT_RCPT] = 300,   [SMTP_TIMEOUT_DATA] = 120,
        [SMTP_TIMEOUT_BODY] = 180,   [SMTP_TIMEOUT_CONFIRM] = 600,
        [SMTP_TIMEOUT_RSET] = 30,    [SMTP_TIMEOUT_QUIT] = 30,
        [SMTP_TIMEOUT_TLS] = 300,    [SMTP_TIMEOUT_IDLE] = 5,
        [SMTP_TIMEOUT_CUSTOM] = 300,
    };

    memset(cfg, 0, sizeof(*cfg));
    cfg->queue_capacity = 10000;
    cfg->max_connections = 100;
    cfg->max_connections_per_destination = 20;
    cfg->max_messages_per_connection = 100;
    cfg->max_recipients_per_transaction = 100;
    for (int i = 0; i < SMTP_TIMEOUT_COUNT; i++)
        cfg->timeout_ms[i] = seconds[i] * 1000u;
}

const smtp_config *smtp__config(const smtp_scheduler *sched)
{
    return &sched->cfg;
}

char *smtp__scratch(smtp_scheduler *sched)
{
    if (sched->scratch == NULL)
        sched->scratch = malloc(2 * SMTP__SCRATCH_HALF);
    return sched->scratch;
}

bool smtp__draining(const smtp_scheduler *sched)
{
    return sched->draining || sched->finishing;
}

static bool config_is_valid(const smtp_config *cfg)
{
    if (cfg == NULL || cfg->on_outcome == NULL)
        return false;
    if (cfg->queue_capacity == 0 || cfg->max_connections == 0 ||
        cfg->max_connections_per_destination == 0 ||
        cfg->max_messages_per_connection == 0 ||
        cfg->max_recipients_per_transaction == 0)
        return false;
    for (int i = 0; i < SMTP_TIMEOUT_COUNT; i++) {
        if (cfg->timeout_ms[i] == 0)
            return false;
    }
    return true;
}

SMTP_API smtp_scheduler *smtp_scheduler_new(const smtp_config *cfg)
{
    if (!smtp__require_owner("smtp_scheduler_new"))
        return NULL;
    if (!config_is_valid(cfg)) {
        smtp__fail(SMTP_EINVAL, "smtp_scheduler_new: the config needs "
                   "on_outcome and non-zero limits and timeouts (rule: "
                   "valid config)");
        return NULL;
    }

    smtp_scheduler *sched = calloc(1, sizeof(*sched));
    if (sched == NULL) {
        smtp__fail(SMTP_ENOMEM, "smtp_scheduler_new: out of memory");
        return NULL;
    }
    sched->cfg = *cfg;
    sched->next_session = ((uint64_t)getpid() << 32) + 1;
    sched->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (sched->epfd < 0) {
        free(sched);
        smtp__fail(SMTP_EIO, "smtp_scheduler_new: epoll_create1: %s",
                   strerror(errno));
        return NULL;
    }
    smtp__succeed();
    return sched;
}

/* ---- events ---------------------------------------------------------- */

static const char *state_name(const struct smtp__conn *c)
{
    return c->pub.state ? c->pub.state->name : "";
}

void smtp__emit(struct smtp__conn *c, int type, int code, int error,
                const char *text, size_t len)
{
    smtp_scheduler *sched = c->sched;

    if (sched->cfg.on_event == NULL)
        return;

    smtp_event ev = {
        .type = type,
        .session_id = c->pub.session_id,
        .state = state_name(c),
        .from = "",
        .stage = smtp__conn_stage(c),
        .code = code,
        .error = error,
        .text = text ? text : "",
        .len = text ? len : 0,
        .peer = c->dest->peer,
        .connections = sched->connections,
    };
    sched->cfg.on_event(&ev, sched->cfg.event_arg);
}

void smtp__emit_state(struct smtp__conn *c, const smtp_state *from)
{
    smtp_scheduler *sched = c->sched;

    if (sched->cfg.on_event == NULL)
        return;

    smtp_event ev = {
        .type = SMTP_EVENT_STATE,
        .session_id = c->pub.session_id,
        .state = state_name(c),
        .from = from ? from->name : "",
        .stage = smtp__conn_stage(c),
        .text = "",
        .peer = c->dest->peer,
        .connections = sched->connections,
    };
    sched->cfg.on_event(&ev, sched->cfg.event_arg);
}

void smtp__emit_wire(struct smtp__conn *c, const char *bytes, size_t len,
                     int sent)
{
    smtp_scheduler *sched = c->sched;

    if (sched->cfg.on_event == NULL)
        return;

    smtp_event ev = {
        .type = SMTP_EVENT_WIRE,
        .session_id = c->pub.session_id,
        .state = state_name(c),
        .from = "",
        .stage = smtp__conn_stage(c),
        .text = bytes,
        .len = len,
        .sent = sent,
        .peer = c->dest->peer,
        .connections = sched->connections,
    };
    sched->cfg.on_event(&ev, sched->cfg.event_arg);
}

/* ---- destinations and their queues ------------------------------------ */

/* A host, EHLO name or source address goes on the wire or into
 * getaddrinfo as one token: printable ASCII without space or brackets. */
static bool token_is_clean(const char *s, size_t max)
{
    size_t len = strnlen(s, max + 1);

    if (len == 0 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '<' || ch == '>')
            return false;
    }
    return true;
}

static int check_destination(const smtp_destination *dest)
{
    const char *func = "smtp_scheduler_submit";

    if (dest == NULL || dest->host == NULL ||
        !token_is_clean(dest->host, 255))
        return smtp__fail(SMTP_EINVAL, "%s: destination host is missing "
                          "or malformed (rule: host)", func);
    if (dest->port < 1 || dest->port > 65535)
        return smtp__fail(SMTP_EINVAL, "%s: destination port %d is out of "
                          "range (rule: port 1-65535)", func, dest->port);
    if (dest->helo != NULL && !token_is_clean(dest->helo, 255))
        return smtp__fail(SMTP_EINVAL, "%s: EHLO name is empty, too long "
                          "or holds a control byte, space or angle bracket "
                          "(rule: EHLO name)", func);
    if (dest->source != NULL && !token_is_clean(dest->source, 64))
        return smtp__fail(SMTP_EINVAL, "%s: source address is malformed "
                          "(rule: source)", func);
    return 0;
}

/* An envelope address: no control bytes or angle brackets, at most max
 * octets, and spaces only inside a quoted local part. */
static bool address_is_clean(const char *s, size_t max)
{
    bool quoted = false;

    /* At most max octets and the NUL are read. */
    for (size_t i = 0; i <= max; i++) {
        unsigned char ch = (unsigned char)s[i];

        /* Letters, "@" and "_" are most of an address, and all above
         * ">": one comparison each (DEL aside). */
        if (ch > '>') {
            if (ch == 0x7f)
                return false;
            continue;
        }
        if (ch == '\0')
            return !quoted;
        if (ch < 0x20 || ch == '<' || ch == '>')
            return false;
        if (ch == '"')
            quoted = !quoted;
        else if (ch == ' ' && !quoted)
            return false;
    }
    return false;
}

static int check_message(const smtp_message *msg)
{
    const char *func = "smtp_scheduler_submit";

    if (msg == NULL)
        return smtp__fail(SMTP_EINVAL, "%s: message is NULL (rule: "
                          "message required)", func);
    if (msg->sender == NULL || !address_is_clean(msg->sender, ADDRESS_MAX))
        return smtp__fail(SMTP_EINVAL, "%s: sender is missing, too long or "
                          "holds a control byte, angle bracket or space "
                          "(rule: address)", func);
    if (msg->nrecipients == 0 || msg->recipients == NULL)
        return smtp__fail(SMTP_EINVAL, "%s: no recipients (rule: at least "
                          "one recipient)", func);
    for (size_t i = 0; i < msg->nrecipients; i++) {
        const char *rcpt = msg->recipients[i];
        if (rcpt == NULL || rcpt[0] == '\0' ||
            !address_is_clean(rcpt, ADDRESS_MAX))
            return smtp__fail(SMTP_EINVAL, "%s: recipient %zu is empty, too "
                              "long or holds a control byte, angle bracket "
                              "or space (rule: address)", func, i);
    }
    if (msg->path == NULL && msg->data == NULL && msg->len > 0)
        return smtp__fail(SMTP_EINVAL, "%s: message has a length but no "
                          "data (rule: body)", func);
    if (msg->path != NULL) {
        struct stat st;
        if (stat(msg->path, &st) != 0 || access(msg->path, R_OK) != 0)
            return smtp__fail(SMTP_EINVAL, "%s: cannot read %s: %s (rule: "
                              "body)", func, msg->path, strerror(errno));
        if (!S_ISREG(st.st_mode))
            return smtp__fail(SMTP_EINVAL, "%s: %s is not a regular file "
                              "(rule: body)", func, msg->path);
    }
    return 0;
}

static void dest_resolve(struct smtp__dest *d)
{
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    char port[8];

    snprintf(port, sizeof(port), "%d", d->port);
    if (getaddrinfo(d->host, port, &hints, &res) != 0 || res == NULL)
        return;
    d->addr = malloc(sizeof(*d->addr));
    if (d->addr != NULL) {
        memcpy(d->addr, res->ai_addr, res->ai_addrlen);
        d->addrlen = (unsigned)res->ai_addrlen;
    }
    freeaddrinfo(res);
}

static void dest_free(struct smtp__dest *d)
{
    free(d->host);
    free(d->helo);
    free(d->source);
    free(d->addr);
    free(d);
}

static struct smtp__dest *dest_create(const smtp_destination *dest)
{
    struct smtp__dest *d = calloc(1, sizeof(*d));

    if (d == NULL)
        return NULL;
    d->host = strdup(dest->host);
    d->helo = strdup(dest->helo ? dest->helo : "localhost");
    d->helo_given = dest->helo != NULL;
    d->source = dest->source ? strdup(dest->source) : NULL;
    d->port = dest->port;
    if (d->host == NULL || d->helo == NULL ||
        (dest->source != NULL && d->source == NULL)) {
        dest_free(d);
        return NULL;
    }
    snprintf(d->peer, sizeof(d->peer), "%s:%d", d->host, d->port);
    d->domain.name = d->host;
    d->domain.host = d->host;
    d->domain.port = d->port;
    d->domain.helo = d->helo;
    dest_resolve(d);
    return d;
}

static bool same_text(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") == 0;
}

/* Whether `dest` names `d`: the same host, port, source and EHLO name,
 * a default EHLO name being distinct from any given one. */
static bool dest_matches(const struct smtp__dest *d,
                         const smtp_destination *dest)
{
    return d->port == dest->port && strcmp(d->host, dest->host) == 0 &&
           d->helo_given == (dest->helo != NULL) &&
           (!d->helo_given || strcmp(d->helo, dest->helo) == 0) &&
           same_text(d->source, dest->source);
}

static struct smtp__dest *dest_intern(smtp_scheduler *sched,
                                      const smtp_destination *dest)
{
    for (struct smtp__dest *d = sched->dests; d != NULL; d = d->next) {
        if (dest_matches(d, dest))
            return d;
    }

    struct smtp__dest *d = dest_create(dest);
    if (d == NULL)
        return NULL;
    d->next = sched->dests;
    sched->dests = d;
    return d;
}

static void dest_push_back(struct smtp__dest *d, struct smtp__msg *msg)
{
    msg->next = NULL;
    if (d->queue_tail)
        d->queue_tail->next = msg;
    else
        d->queue_head = msg;
    d->queue_tail = msg;
    d->queued++;
}

void smtp__dest_push_front(struct smtp__dest *d, struct smtp__msg *msg)
{
    msg->next = d->queue_head;
    d->queue_head = msg;
    if (d->queue_tail == NULL)
        d->queue_tail = msg;
    d->queued++;
}

struct smtp__msg *smtp__dest_pop(struct smtp__dest *d)
{
    struct smtp__msg *msg = d->queue_head;

    if (msg == NULL)
        return NULL;
    d->queue_head = msg->next;
    if (d->queue_head == NULL)
        d->queue_tail = NULL;
    d->queued--;
    msg->next = NULL;
    return msg;
}

/* ---- submission --------------------------------------------------------- */

/* A zeroed message record with room for n recipients' status: from the
 * scheduler's free list, and inside the record for a few recipients, so
 * submitting costs no allocation once the loop runs. */
static struct smtp__msg *msg_alloc(smtp_scheduler *sched, size_t n)
{
    struct smtp__msg *m = sched->free_msgs;
    unsigned char *status;

    if (m != NULL)
        sched->free_msgs = m->next;
    else if ((m = malloc(sizeof(*m))) == NULL)
        return NULL;
    memset(m, 0, offsetof(struct smtp__msg, inline_status));
    status = m->inline_status;
    if (n > SMTP__INLINE_RCPTS && (status = malloc(n)) == NULL) {
        m->next = sched->free_msgs;
        sched->free_msgs = m;
        return NULL;
    }
    memset(status, 0, n);
    m->rcpt_status = status;
    return m;
}

static void msg_recycle(smtp_scheduler *sched, struct smtp__msg *m)
{
    if (m->rcpt_status != m->inline_status)
        free(m->rcpt_status);
    m->next = sched->free_msgs;
    sched->free_msgs = m;
}

SMTP_API int smtp_scheduler_submit(smtp_scheduler *sched,
                                   const smtp_destination *dest,
                                   const smtp_message *msg)
{
    const char *func = "smtp_scheduler_submit";

    if (!smtp__require_owner(func))
        return SMTP_ETHREAD;
    if (sched == NULL)
        return smtp__fail(SMTP_EINVAL, "%s: scheduler is NULL", func);
    if (sched->draining)
        return smtp__fail(SMTP_ECLOSED, "%s: the scheduler is draining "
                          "(rule: no work after drain)", func);
    if (check_destination(dest) != 0 || check_message(msg) != 0)
        return SMTP_EINVAL;
    if (sched->pending >= sched->cfg.queue_capacity)
        return smtp__fail(SMTP_EAGAIN, "%s: %zu messages are unsettled, the "
                          "queue capacity (rule: backpressure)", func,
                          sched->pending);

    struct smtp__dest *d = dest_intern(sched, dest);
    struct smtp__msg *m = d ? msg_alloc(sched, msg->nrecipients) : NULL;
    if (m == NULL)
        return smtp__fail(SMTP_ENOMEM, "%s: out of memory", func);
    m->m = msg;
    m->nrcpt = msg->nrecipients;
    m->dest = d;
    m->unsettled = msg->nrecipients;
    dest_push_back(d, m);
    sched->pending++;
    smtp__succeed();
    return 0;
}

/* A settled message is only marked here: code that settled it may still
 * hold the pointer, so it is freed when the turn ends. */
void smtp__msg_release(smtp_scheduler *sched, struct smtp__msg *msg)
{
    msg->released = true;
    msg->next = sched->released;
    sched->released = msg;
    sched->pending--;
}

static void free_released(smtp_scheduler *sched)
{
    struct smtp__msg *msg = sched->released;

    sched->released = NULL;
    while (msg != NULL) {
        struct smtp__msg *next = msg->next;
        msg_recycle(sched, msg);
        msg = next;
    }
}

/* ---- connections ------------------------------------------------------ */

void smtp__deadline_set(struct smtp__conn *c, uint64_t at_ms)
{
    if (smtp__deadlines_set(&c->sched->deadlines, c, at_ms) != 0)
        smtp__conn_fail(c, SMTP_ENOMEM, "no memory for a deadline");
}

/*
 * Registers what the connection waits for.  A socket counts as writable
 * until a send falls short, so EPOLLOUT is registered only after one did;
 * until then dispatch delivers E_WRITE itself (connection.c).  EPOLLIN
 * stays registered when a state stops reading for a while (DATA to the
 * body and back costs no epoll_ctl); `strict` drops it once it fires
 * unwanted, so it cannot fire turn after turn.  EPOLLRDHUP, the server's
 * close, is watched until it has been seen once (peer_closed).
 */
static void conn_interest(struct smtp__conn *c, int want, bool strict)
{
    int interest = 0;
    struct epoll_event ev;

    if (c->closed)
        return;
    c->want = want;
    if (want & SMTP_WANT_READ)
        interest |= EPOLLIN;
    if (c->wstart < c->wend || c->connecting ||
        ((want & SMTP_WANT_WRITE) &&
         (c->write_blocked || (c->interest & EPOLLOUT))))
        interest |= EPOLLOUT;
    if (!strict)
        interest |= c->interest & EPOLLIN;
    if (!c->peer_closed)
        interest |= EPOLLRDHUP;
    if (interest == c->interest)
        return;
    ev.events = (uint32_t)interest;
    ev.data.ptr = c;
    if (epoll_ctl(c->sched->epfd, EPOLL_CTL_MOD, c->pub.fd, &ev) != 0) {
        smtp__conn_fail(c, SMTP_EIO, "epoll_ctl: %s", strerror(errno));
        return;
    }
    c->interest = interest;
}

void smtp__conn_want(struct smtp__conn *c, int want)
{
    conn_interest(c, want, false);
}

void smtp__wake(struct smtp__conn *c, int events)
{
    smtp_scheduler *sched = c->sched;

    c->pending_events |= events;
    if (c->on_wake_list)
        return;
    c->on_wake_list = true;
    c->wake_next = sched->wake_head;
    sched->wake_head = c;
}

SMTP_API void smtp_conn_wake(connection *conn)
{
    struct smtp__conn *c = smtp__conn_of(conn);

    if (!c->closed)
        smtp__wake(c, E_ASYNC);
}

/* Doubly linked, so marking is O(1) with thousands of idle connections. */
void smtp__conn_mark_idle(struct smtp__conn *c, bool idle)
{
    struct smtp__dest *d = c->dest;

    if (c->on_idle_list) {
        if (c->idle_prev != NULL)
            c->idle_prev->idle_next = c->idle_next;
        else
            d->idle = c->idle_next;
        if (c->idle_next != NULL)
            c->idle_next->idle_prev = c->idle_prev;
        c->idle_next = c->idle_prev = NULL;
        c->on_idle_list = false;
    }
    if (idle) {
        c->idle_next = d->idle;
        if (d->idle != NULL)
            d->idle->idle_prev = c;
        d->idle = c;
        c->on_idle_list = true;
    }
}

/* Called by connection.c after a close, with the engine's lists still
 * naming c: unlink it everywhere and park it until the turn ends. */
void smtp__sched_forget(struct smtp__conn *c)
{
    smtp_scheduler *sched = c->sched;

    smtp__conn_mark_idle(c, false);
    smtp__deadlines_set(&sched->deadlines, c, 0);
    if (c->all_prev)
        c->all_prev->all_next = c->all_next;
    else
        sched->conns = c->all_next;
    if (c->all_next)
        c->all_next->all_prev = c->all_prev;
    c->dest->connections--;
    sched->connections--;
    c->all_next = sched->dead;
    sched->dead = c;
}

static struct smtp__conn *conn_alloc(smtp_scheduler *sched,
                                     struct smtp__dest *d)
{
    struct smtp__conn *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return NULL;
    c->sched = sched;
    c->dest = d;
    c->pub.fd = -1;
    c->pub.domain = &d->domain;
    c->pub.session_id = sched->next_session++;
    c->handle.conn = &c->pub;
    c->dc.e = &c->ev;
    c->dc.conn_handle = &c->handle;
    c->dc.current = -1;
    c->ev.fd = -1;
    c->txn.msg = -1;
    c->txn.body_fd = -1;
    return c;
}

/* On failure, *why explains it when errno cannot: a source address that
 * is not numeric, or not of the destination's family, sets no errno. */
static int open_socket(struct smtp__dest *d, const char **why)
{
    int fd = socket(d->addr->ss_family,
                    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;

    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (d->source != NULL) {
        struct addrinfo hints = {.ai_flags = AI_NUMERICHOST,
                                 .ai_family = d->addr->ss_family};
        struct addrinfo *res = NULL;
        int bad = getaddrinfo(d->source, NULL, &hints, &res) != 0;
        if (bad)
            *why = "the source address is not a numeric address of the "
                   "destination's family (rule: source)";
        else if (bind(fd, res->ai_addr, res->ai_addrlen) != 0)
            bad = 1;
        if (res)
            freeaddrinfo(res);
        if (bad) {
            close(fd);
            return -1;
        }
    }
    if (connect(fd, (struct sockaddr *)d->addr, d->addrlen) != 0 &&
        errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Opens a connection for `msg`; the message fails transiently when the
 * connection cannot even be started. */
static void conn_open(smtp_scheduler *sched, struct smtp__dest *d,
                      struct smtp__msg *msg)
{
    if (d->addr == NULL) {
        smtp__settle_without_conn(sched, msg, SMTP_ECONNECT,
                                  "cannot resolve the destination host");
        return;
    }

    struct smtp__conn *c = conn_alloc(sched, d);
    const char *why = NULL;
    int fd = c ? open_socket(d, &why) : -1;
    if (fd < 0) {
        char text[200];
        snprintf(text, sizeof(text), "cannot connect to %s: %s", d->peer,
                 why ? why : strerror(errno));
        free(c);
        smtp__settle_without_conn(sched, msg, SMTP_ECONNECT, text);
        return;
    }

    struct epoll_event ev = {.events = EPOLLOUT | EPOLLRDHUP, .data.ptr = c};
    c->pub.fd = fd;
    c->ev.fd = fd;
    c->connecting = true;
    c->interest = EPOLLOUT | EPOLLRDHUP;
    epoll_ctl(sched->epfd, EPOLL_CTL_ADD, fd, &ev);
    c->all_next = sched->conns;
    if (sched->conns)
        sched->conns->all_prev = c;
    sched->conns = c;
    d->connections++;
    sched->connections++;
    d->metrics.connections++;
    smtp__conn_batch_add(c, msg);
    smtp__deadline_set(c, smtp__now_ms() +
                       sched->cfg.timeout_ms[SMTP_TIMEOUT_CONNECT]);
}

static void connected(struct smtp__conn *c)
{
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(c->pub.fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        smtp__conn_fail(c, SMTP_ECONNECT, "cannot connect to %s: %s",
                        c->dest->peer, strerror(err));
        return;
    }
    c->connecting = false;
    c->pub.in_use = 1;
    smtp__emit(c, SMTP_EVENT_CONNECT, 0, 0, NULL, 0);
    smtp__conn_enter_first_state(c);
}

/* Hands queued messages to idle connections, then opens new ones. */
static void dest_dispatch(smtp_scheduler *sched, struct smtp__dest *d)
{
    while (d->queued > 0 && d->idle != NULL) {
        struct smtp__conn *c = d->idle;
        smtp__conn_mark_idle(c, false);
        smtp__conn_batch_add(c, smtp__dest_pop(d));
        smtp__wake(c, E_ASYNC);
    }
    while (d->queued > 0 &&
           d->connections < sched->cfg.max_connections_per_destination &&
           sched->connections < sched->cfg.max_connections)
        conn_open(sched, d, smtp__dest_pop(d));
}

static void open_connections(smtp_scheduler *sched)
{
    for (struct smtp__dest *d = sched->dests; d != NULL; d = d->next)
        dest_dispatch(sched, d);
}

/* ---- the loop's phases ------------------------------------------------ */

static void handle_ready(struct smtp__conn *c, uint32_t ready)
{
    int events = 0;

    if (c->closed)
        return;
    if (c->connecting) {
        connected(c);
        return;
    }
    if (ready & EPOLLOUT)
        c->write_blocked = false;
    if (ready & EPOLLRDHUP)
        c->peer_closed = true;
    if ((ready & EPOLLOUT) && c->wstart < c->wend) {
        int r = smtp__conn_flush(c);
        if (r < 0) {
            smtp__conn_fail(c, r, "write failed");
            return;
        }
    }
    if ((ready & EPOLLIN) && (c->want & SMTP_WANT_READ))
        events |= E_READ;
    if ((ready & EPOLLOUT) && (c->want & SMTP_WANT_WRITE) &&
        c->wstart == c->wend)
        events |= E_WRITE;
    if ((ready & (EPOLLERR | EPOLLHUP)) && !(ready & EPOLLIN))
        events |= E_EXCEPTION;
    if (events)
        smtp__conn_dispatch(c, events);
    else
        conn_interest(c, c->want, true);
}

static void fire_deadlines(smtp_scheduler *sched, uint64_t now)
{
    struct smtp__conn *c;

    while ((c = smtp__deadlines_first(&sched->deadlines)) != NULL &&
           c->deadline_ms <= now) {
        smtp__deadlines_set(&sched->deadlines, c, 0);
        if (c->connecting) {
            smtp__conn_fail(c, SMTP_ETIMEOUT, "connect to %s timed out",
                            c->dest->peer);
            continue;
        }
        smtp__conn_dispatch(c, E_TIMEOUT);
        if (!c->closed && c->deadline_ms == 0)
            smtp__conn_fail(c, SMTP_ETIMEOUT, "state %s kept the "
                            "connection after E_TIMEOUT without a new "
                            "deadline", state_name(c));
    }
}

static int deliver_wakes(smtp_scheduler *sched)
{
    struct smtp__conn *c = sched->wake_head;
    int handled = 0;

    sched->wake_head = NULL;
    while (c != NULL) {
        struct smtp__conn *next = c->wake_next;
        int events = c->pending_events;

        c->on_wake_list = false;
        c->pending_events = 0;
        /* A write asked for before the state moved on, or with output
         * still queued, is not due. */
        if (!(c->want & SMTP_WANT_WRITE) || c->wstart < c->wend)
            events &= ~E_WRITE;
        if (!c->closed && !c->connecting && events) {
            smtp__conn_dispatch(c, events);
            handled++;
        }
        c = next;
    }
    return handled;
}

static void free_dead(smtp_scheduler *sched)
{
    struct smtp__conn *c = sched->dead;

    free_released(sched);
    sched->dead = NULL;
    while (c != NULL) {
        struct smtp__conn *next = c->all_next;
        free(c->rbuf);
        free(c->wbuf);
        free(c->batch);
        free(c->batch_pub);
        free(c);
        c = next;
    }
}

static int wait_timeout(smtp_scheduler *sched, int timeout_ms)
{
    int due = smtp_scheduler_next_deadline(sched);

    /* With nothing open and nothing pending no event can come: waiting
     * would never end (a message failed before connecting ends here). */
    if (sched->connections == 0 && sched->pending == 0)
        return 0;
    if (due >= 0 && (timeout_ms < 0 || due < timeout_ms))
        return due;
    return timeout_ms;
}

SMTP_API int smtp_scheduler_run_once(smtp_scheduler *sched, int timeout_ms)
{
    struct epoll_event ready[EPOLL_BATCH];
    int handled = 0;

    if (!smtp__require_owner("smtp_scheduler_run_once"))
        return SMTP_ETHREAD;
    if (turn_running != NULL)
        return refuse_reentry("smtp_scheduler_run_once");
    turn_running = sched;
    open_connections(sched);

    int n = epoll_wait(sched->epfd, ready, EPOLL_BATCH,
                       wait_timeout(sched, timeout_ms));
    if (n < 0 && errno != EINTR) {
        turn_running = NULL;
        return smtp__fail(SMTP_EIO, "epoll_wait: %s", strerror(errno));
    }
    for (int i = 0; i < n; i++)
        handle_ready(ready[i].data.ptr, ready[i].events);
    handled += n > 0 ? n : 0;
    fire_deadlines(sched, smtp__now_ms());
    handled += deliver_wakes(sched);
    open_connections(sched);
    free_dead(sched);
    turn_running = NULL;
    return handled;
}

static void quit_idle_connections(smtp_scheduler *sched)
{
    for (struct smtp__dest *d = sched->dests; d != NULL; d = d->next) {
        while (d->idle != NULL) {
            struct smtp__conn *c = d->idle;
            smtp__conn_mark_idle(c, false);
            smtp__wake(c, E_ASYNC);
        }
    }
}

SMTP_API int smtp_scheduler_run(smtp_scheduler *sched)
{
    if (!smtp__require_owner("smtp_scheduler_run"))
        return SMTP_ETHREAD;
    if (turn_running != NULL)
        return refuse_reentry("smtp_scheduler_run");
    while (sched->pending > 0) {
        int r = smtp_scheduler_run_once(sched, -1);
        if (r < 0)
            return r;
    }
    sched->finishing = true;
    quit_idle_connections(sched);
    while (sched->connections > 0) {
        int r = smtp_scheduler_run_once(sched, -1);
        if (r < 0)
            break;
    }
    sched->finishing = false;
    free_dead(sched);
    smtp__succeed();
    return 0;
}

SMTP_API int smtp_scheduler_fd(smtp_scheduler *sched)
{
    return sched->epfd;
}

/* True when queued work could be handed out now: an embedder must call
 * run_once at once rather than wait on a descriptor nothing will wake. */
static bool dispatch_possible(const smtp_scheduler *sched)
{
    for (const struct smtp__dest *d = sched->dests; d != NULL; d = d->next) {
        if (d->queued == 0)
            continue;
        if (d->idle != NULL ||
            (d->connections < sched->cfg.max_connections_per_destination &&
             sched->connections < sched->cfg.max_connections))
            return true;
    }
    return false;
}

SMTP_API int smtp_scheduler_next_deadline(smtp_scheduler *sched)
{
    struct smtp__conn *first = smtp__deadlines_first(&sched->deadlines);

    if (sched->wake_head != NULL || dispatch_possible(sched))
        return 0;
    if (first == NULL)
        return -1;

    uint64_t now = smtp__now_ms();
    if (first->deadline_ms <= now)
        return 0;
    uint64_t left = first->deadline_ms - now;
    return left > 0x7fffffff ? 0x7fffffff : (int)left;
}

SMTP_API void smtp_scheduler_drain(smtp_scheduler *sched)
{
    sched->draining = true;
    quit_idle_connections(sched);
}

SMTP_API size_t smtp_scheduler_pending(const smtp_scheduler *sched)
{
    return sched->pending;
}

SMTP_API unsigned smtp_scheduler_connections(const smtp_scheduler *sched)
{
    return sched->connections;
}

void smtp__note_reply_buffer(smtp_scheduler *sched, size_t bytes)
{
    if (bytes > sched->reply_high_water)
        sched->reply_high_water = bytes;
}

SMTP_API size_t smtp_scheduler_reply_high_water(const smtp_scheduler *sched)
{
    return sched->reply_high_water;
}

SMTP_API void smtp_scheduler_free(smtp_scheduler *sched)
{
    if (sched == NULL)
        return;
    if (sched == turn_running) {
        refuse_reentry("smtp_scheduler_free");
        return;
    }
    while (sched->conns != NULL)
        smtp__conn_fail(sched->conns, SMTP_ECLOSED,
                        "the scheduler was freed");
    for (struct smtp__dest *d = sched->dests; d != NULL;) {
        struct smtp__dest *next = d->next;
        struct smtp__msg *msg;
        while ((msg = smtp__dest_pop(d)) != NULL)
            smtp__settle_without_conn(sched, msg, SMTP_ECLOSED,
                                      "the scheduler was freed");
        dest_free(d);
        d = next;
    }
    free_dead(sched);
    while (sched->free_msgs != NULL) {
        struct smtp__msg *next = sched->free_msgs->next;
        free(sched->free_msgs);
        sched->free_msgs = next;
    }
    smtp__deadlines_free(&sched->deadlines);
    close(sched->epfd);
    free(sched->scratch);
    free(sched);
}
