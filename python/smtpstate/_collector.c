/*
 * _collector.c - compiled into the binding: gathers outcomes and events
 * in C while the loop runs, so Python is entered once per loop turn to
 * read them all, never once per reply or per recipient.
 *
 * Strings are copied into one text arena, since the engine's pointers
 * are valid only during its callback.  A failed allocation sets `failed`
 * and drops the record; the binding then raises rather than lose it.
 */
#include <stdlib.h>
#include <string.h>

/* The records below are also the binding's declarations (_build.py reads
 * them from here), so they are written once. */
/* cdef-begin */
struct smtpstate_py_outcome {
    uint64_t message_id;
    size_t rcpt;
    int kind, code, stage, bounce_class, error;
    uint64_t session_id;
    char enhanced[16];
    char state[64];
    size_t text_at, text_len;
};

struct smtpstate_py_event {
    int type, stage, code, error, sent;
    unsigned connections;
    uint64_t session_id;
    char state[64];
    char from[64];
    size_t text_at, text_len;
};

struct smtpstate_py_collector {
    struct smtpstate_py_outcome *outcomes;
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

static void smtpstate_py_on_outcome(const smtp_outcome *o, void *arg)
{
    struct smtpstate_py_collector *c = arg;
    struct smtpstate_py_outcome *r;

    if (collector_grow((void **)&c->outcomes, &c->cap_outcomes,
                       c->n_outcomes + 1, sizeof(*r)) != 0) {
        c->failed = 1;
        return;
    }
    r = &c->outcomes[c->n_outcomes];
    r->message_id = o->message->id;
    r->rcpt = o->rcpt;
    r->kind = o->kind;
    r->code = o->code;
    r->stage = o->stage;
    r->bounce_class = o->bounce_class;
    r->error = o->error;
    r->session_id = o->session_id;
    copy_name(r->enhanced, sizeof(r->enhanced), o->enhanced);
    copy_name(r->state, sizeof(r->state), o->state);
    r->text_len = strlen(o->text);
    if (collector_text(c, o->text, r->text_len, &r->text_at) != 0) {
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
