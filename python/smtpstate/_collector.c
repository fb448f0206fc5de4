/*
 * _collector.c - compiled into the binding: submits messages from a pool
 * of records, runs turns of the loop, and gathers outcomes and events in
 * C meanwhile, so Python is entered once per batch of outcomes to read
 * them all, never once per reply or per recipient.
 *
 * Strings are copied into one text arena, since the engine's pointers
 * are valid only during its callback.  An outcome is a row of integers
 * (its strings as places in the arena), so Python reads a whole turn's
 * outcomes with one ffi.unpack instead of a cdata access per field.  A
 * failed allocation sets `failed` and drops the record; the binding then
 * raises rather than lose it.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* The records below are also the binding's declarations (_build.py reads
 * them from here), so they are written once. */
/* cdef-begin */
/* The columns of an outcome's row in `outcomes`; *_AT and *_LEN place a
 * string in the text arena. */
#define SMTPSTATE_PY_MESSAGE_ID 0
#define SMTPSTATE_PY_RCPT 1
#define SMTPSTATE_PY_KIND 2
#define SMTPSTATE_PY_CODE 3
#define SMTPSTATE_PY_ENHANCED_AT 4
#define SMTPSTATE_PY_ENHANCED_LEN 5
#define SMTPSTATE_PY_TEXT_AT 6
#define SMTPSTATE_PY_TEXT_LEN 7
#define SMTPSTATE_PY_STAGE 8
#define SMTPSTATE_PY_STATE_AT 9
#define SMTPSTATE_PY_STATE_LEN 10
#define SMTPSTATE_PY_BOUNCE_CLASS 11
#define SMTPSTATE_PY_ERROR 12
#define SMTPSTATE_PY_SESSION_ID 13
#define SMTPSTATE_PY_OUTCOME_COLUMNS 14

struct smtpstate_py_event {
    int type, stage, code, error, sent;
    unsigned connections;
    uint64_t session_id;
    char state[64];
    char from[64];
    size_t text_at, text_len;
};

struct smtpstate_py_collector {
    int64_t *outcomes; /* n_outcomes rows of OUTCOME_COLUMNS */
    size_t n_outcomes, cap_outcomes;
    struct smtpstate_py_event *events;
    size_t n_events, cap_events;
    char *text;
    size_t text_len, text_cap;
    int failed;
    /* The message records smtpstate_py_submit fills (private to C). */
    void *records_free, *records_done, *record_chunks;
    uint64_t last_id;
    /* Where and what smtpstate_py_submit sends (smtpstate_py_use): set
     * once per destination and per envelope, not once per message. */
    smtp_scheduler *sched;
    const smtp_destination *dest;
    const char *sender;
    const char *const *recipients;
    size_t nrecipients;
};
/* cdef-end */

/* A message's record as the engine holds it, and how many of its
 * recipients' outcomes are still to come.  Records come from chunks and
 * go back to the free list once Python has read the last outcome, so
 * submitting allocates nothing in the steady state. */
struct py_record {
    smtp_message msg; /* first: an outcome's message is its record */
    size_t due;
    struct py_record *next;
};

#define PY_RECORDS_PER_CHUNK 256

struct py_record_chunk {
    struct py_record_chunk *next;
    struct py_record records[PY_RECORDS_PER_CHUNK];
};

static struct py_record *record_take(struct smtpstate_py_collector *c)
{
    struct py_record *r = c->records_free;

    if (r == NULL) {
        struct py_record_chunk *chunk = malloc(sizeof(*chunk));
        if (chunk == NULL)
            return NULL;
        chunk->next = c->record_chunks;
        c->record_chunks = chunk;
        for (size_t i = 0; i < PY_RECORDS_PER_CHUNK; i++) {
            chunk->records[i].next = r;
            r = &chunk->records[i];
        }
    }
    c->records_free = r->next;
    return r;
}

static void record_give_back(struct smtpstate_py_collector *c,
                             struct py_record *r)
{
    r->next = c->records_free;
    c->records_free = r;
}

static int collector_grow(void **items, size_t *cap, size_t need,
                          size_t size)
{
    if (need <= *cap)
        return 0;

    size_t n = *cap ? *cap : 64;
    while (n < need)
        n *= 2;
    void *grown = realloc(*items, n * size);
    if (grown == NULL)
        return -1;
    *items = grown;
    *cap = n;
    return 0;
}

static int collector_text(struct smtpstate_py_collector *c, const char *s,
                          size_t len, size_t *at)
{
    if (collector_grow((void **)&c->text, &c->text_cap, c->text_len + len + 1,
                       1) != 0)
        return -1;
    memcpy(c->text + c->text_len, s, len);
    *at = c->text_len;
    c->text_len += len;
    c->text[c->text_len] = '\0';
    return 0;
}

static void copy_name(char *dst, size_t cap, const char *src)
{
    size_t len = strnlen(src, cap - 1);

    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* Copies s into the arena and fills its two columns; -1 when out of
 * memory.  A string equal to the same column's in the row before keeps
 * that row's place: the enhanced code and the state repeat from row to
 * row, and Python then decodes each once a batch (Engine._read). */
static int collector_column(struct smtpstate_py_collector *c, int64_t *row,
                            int at_column, const char *s, size_t len)
{
    size_t at;

    if (c->n_outcomes > 0) {
        const int64_t *prev = row - SMTPSTATE_PY_OUTCOME_COLUMNS;
        if ((size_t)prev[at_column + 1] == len &&
            memcmp(c->text + prev[at_column], s, len) == 0) {
            row[at_column] = prev[at_column];
            row[at_column + 1] = (int64_t)len;
            return 0;
        }
    }
    if (collector_text(c, s, len, &at) != 0)
        return -1;
    row[at_column] = (int64_t)at;
    row[at_column + 1] = (int64_t)len;
    return 0;
}

/* The scheduler and destination of the next submissions. */
static void smtpstate_py_use_destination(struct smtpstate_py_collector *c,
                                         smtp_scheduler *sched,
                                         const smtp_destination *dest)
{
    c->sched = sched;
    c->dest = dest;
}

/* The envelope of the next submissions, until the next call. */
static void smtpstate_py_use_envelope(struct smtpstate_py_collector *c,
                                      const char *sender,
                                      const char *const *recipients,
                                      size_t nrecipients)
{
    c->sender = sender;
    c->recipients = recipients;
    c->nrecipients = nrecipients;
}

/*
 * Fills a record from the collector's pool with the current envelope and
 * this body (data/len, or the file at path when path is non-NULL) and
 * submits it.  Returns the message's id (1 and up, echoed in its
 * outcomes' rows), or the negative SMTP_E* code of smtp_scheduler_submit
 * (the record goes back; nothing was queued), or SMTP_ENOMEM.  The caller
 * keeps every pointer valid until the message's last outcome row is read.
 */
static int64_t smtpstate_py_submit(struct smtpstate_py_collector *c,
                                   const char *data, size_t len,
                                   const char *path)
{
    struct py_record *r = record_take(c);

    if (r == NULL)
        return SMTP_ENOMEM;
    r->msg = (smtp_message){
        .sender = c->sender,
        .recipients = c->recipients,
        .nrecipients = c->nrecipients,
        .data = data,
        .len = len,
        .path = path,
        .id = c->last_id + 1,
    };
    r->due = c->nrecipients;

    int rc = smtp_scheduler_submit(c->sched, c->dest, &r->msg);
    if (rc != 0) {
        record_give_back(c, r);
        return rc;
    }
    c->last_id++;
    return (int64_t)r->msg.id;
}

static void smtpstate_py_on_outcome(const smtp_outcome *o, void *arg)
{
    struct smtpstate_py_collector *c = arg;
    int64_t *row;

    /* Every message of this collector's scheduler came through
     * smtpstate_py_submit, so its record holds it. */
    struct py_record *r = (struct py_record *)(void *)o->message;
    if (--r->due == 0) {
        r->next = c->records_done;
        c->records_done = r;
    }

    if (collector_grow((void **)&c->outcomes, &c->cap_outcomes,
                       c->n_outcomes + 1,
                       SMTPSTATE_PY_OUTCOME_COLUMNS * sizeof(*row)) != 0) {
        c->failed = 1;
        return;
    }
    row = c->outcomes + c->n_outcomes * SMTPSTATE_PY_OUTCOME_COLUMNS;
    row[SMTPSTATE_PY_MESSAGE_ID] = (int64_t)o->message->id;
    row[SMTPSTATE_PY_RCPT] = (int64_t)o->rcpt;
    row[SMTPSTATE_PY_KIND] = o->kind;
    row[SMTPSTATE_PY_CODE] = o->code;
    row[SMTPSTATE_PY_STAGE] = o->stage;
    row[SMTPSTATE_PY_BOUNCE_CLASS] = o->bounce_class;
    row[SMTPSTATE_PY_ERROR] = o->error;
    row[SMTPSTATE_PY_SESSION_ID] = (int64_t)o->session_id;
    if (collector_column(c, row, SMTPSTATE_PY_ENHANCED_AT, o->enhanced,
                         strnlen(o->enhanced, 15)) != 0 ||
        collector_column(c, row, SMTPSTATE_PY_TEXT_AT, o->text,
                         strlen(o->text)) != 0 ||
        collector_column(c, row, SMTPSTATE_PY_STATE_AT, o->state,
                         strnlen(o->state, 63)) != 0) {
        c->failed = 1;
        return;
    }
    c->n_outcomes++;
}

static void smtpstate_py_on_event(const smtp_event *e, void *arg)
{
    struct smtpstate_py_collector *c = arg;
    struct smtpstate_py_event *r;

    if (collector_grow((void **)&c->events, &c->cap_events, c->n_events + 1,
                       sizeof(*r)) != 0) {
        c->failed = 1;
        return;
    }
    r = &c->events[c->n_events];
    r->type = e->type;
    r->stage = e->stage;
    r->code = e->code;
    r->error = e->error;
    r->sent = e->sent;
    r->connections = e->connections;
    r->session_id = e->session_id;
    copy_name(r->state, sizeof(r->state), e->state);
    copy_name(r->from, sizeof(r->from), e->from);
    r->text_len = e->len;
    if (collector_text(c, e->text, e->len, &r->text_at) != 0) {
        c->failed = 1;
        return;
    }
    c->n_events++;
}

/* Set by a Python state that caught an interrupt (KeyboardInterrupt,
 * SystemExit): the turns below stop so Python can raise it.  The loop and
 * its states run on the owner thread only, so no other thread touches it. */
static int py_stop_requested;

static void smtpstate_py_request_stop(void)
{
    py_stop_requested = 1;
}

/* The collector's text above this makes Python read it before the next
 * turn: a wire trace can add a whole body per turn. */
#define PY_TEXT_HIGH_WATER (1u << 20)

/* The longest a turn after the first may wait, and how long turns may go
 * on after the first.  A signal that arrives while a turn is busy, not
 * waiting, interrupts no wait: Python sees it when these turns return.
 * Busy turns can follow one another without end (a large body to a fast
 * server handles writes each turn, settling nothing), so the time
 * bounds how late Ctrl-C can be, not the count of turns. */
#define PY_LATER_WAIT_MS 50

static uint64_t py_now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * Runs turns of the loop so that Python is entered once per batch of
 * outcomes rather than once per turn: the first turn waits up to
 * timeout_ms, later ones up to PY_LATER_WAIT_MS.  Stops after a turn when
 * the collector holds `want` outcomes or events (0: after one turn) or
 * much text, when no more than `refill_at` messages are unsettled (the
 * caller has more to submit), when a turn handled nothing (a timeout or a
 * signal), when PY_LATER_WAIT_MS have passed since the first turn ended,
 * or when a Python state caught an interrupt.  Returns the connections
 * handled, or the first negative SMTP_E* code.
 */
static int smtpstate_py_run(smtp_scheduler *sched,
                            struct smtpstate_py_collector *c, int timeout_ms,
                            size_t want, size_t refill_at)
{
    int wait = timeout_ms;
    int handled = 0;
    uint64_t until = 0;

    py_stop_requested = 0;
    for (;;) {
        int rc = smtp_scheduler_run_once(sched, wait);

        if (rc < 0)
            return rc;
        handled += rc;
        if (rc == 0 || py_stop_requested || c->failed ||
            c->n_outcomes >= want || c->n_events >= want ||
            c->text_len >= PY_TEXT_HIGH_WATER ||
            smtp_scheduler_pending(sched) <= refill_at)
            return handled;
        if (until == 0)
            until = py_now_ms() + PY_LATER_WAIT_MS;
        else if (py_now_ms() >= until)
            return handled;
        if (wait < 0 || wait > PY_LATER_WAIT_MS)
            wait = PY_LATER_WAIT_MS;
    }
}

/* Python has read every row: the records of the messages settled since
 * the last reset can be reused. */
static void smtpstate_py_collector_reset(struct smtpstate_py_collector *c)
{
    struct py_record *r = c->records_done;

    while (r != NULL) {
        struct py_record *next = r->next;
        record_give_back(c, r);
        r = next;
    }
    c->records_done = NULL;
    c->n_outcomes = 0;
    c->n_events = 0;
    c->text_len = 0;
}

/* After smtp_scheduler_free: no record is in the engine's hands. */
static void smtpstate_py_collector_free(struct smtpstate_py_collector *c)
{
    struct py_record_chunk *chunk = c->record_chunks;

    while (chunk != NULL) {
        struct py_record_chunk *next = chunk->next;
        free(chunk);
        chunk = next;
    }
    free(c->outcomes);
    free(c->events);
    free(c->text);
    memset(c, 0, sizeof(*c));
}
