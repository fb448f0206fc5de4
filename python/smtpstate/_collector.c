/*
 * _collector.c - compiled into the binding: gathers outcomes and events
 * in C while the loop runs, so Python is entered once per loop turn to
 * read them all, never once per reply or per recipient.
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
};
/* cdef-end */

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
 * memory. */
static int collector_column(struct smtpstate_py_collector *c, int64_t *row,
                            int at_column, const char *s, size_t len)
{
    size_t at;

    if (collector_text(c, s, len, &at) != 0)
        return -1;
    row[at_column] = (int64_t)at;
    row[at_column + 1] = (int64_t)len;
    return 0;
}

static void smtpstate_py_on_outcome(const smtp_outcome *o, void *arg)
{
    struct smtpstate_py_collector *c = arg;
    int64_t *row;

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

static void smtpstate_py_collector_reset(struct smtpstate_py_collector *c)
{
    c->n_outcomes = 0;
    c->n_events = 0;
    c->text_len = 0;
}

static void smtpstate_py_collector_free(struct smtpstate_py_collector *c)
{
    free(c->outcomes);
    free(c->events);
    free(c->text);
    memset(c, 0, sizeof(*c));
}
