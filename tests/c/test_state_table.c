/*
 * test_state_table.c - the state table from a C program, no Python.
 *
 * Every refusal is checked against a snapshot of the whole table (each
 * id's name and next, the chain's order, and the id the next successful
 * registration receives) taken before and after the refused call.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ctest.h"
#include "smtp.h"

#define MAX_CHAIN 128

struct snapshot {
    int chain[MAX_CHAIN];
    int chain_len;
    char names[SMTP_MAX_STATES][SMTP_STATE_NAME_MAX + 1];
    int next_of[SMTP_MAX_STATES];
    int next_id;
};

static int noop_callback(delivery_construct *dc, Event *e, connection *conn,
                         connection_handle *connh, domain_record *domain,
                         ec_binding_slot binding_slot, address_metrics *am,
                         struct timeval *now, int events)
{
    (void)dc, (void)e, (void)conn, (void)connh, (void)domain;
    (void)binding_slot, (void)am, (void)now, (void)events;
    return SMTP_WANT_READ;
}

static smtp_state make_state(char *name)
{
    smtp_state s = {
        .sizeof_smtp_state = sizeof(smtp_state),
        .name = name,
        .callback = noop_callback,
    };
    return s;
}

static int register_named(const char *name, int after)
{
    char buf[SMTP_STATE_NAME_MAX + 1];
    smtp_state s;

    snprintf(buf, sizeof(buf), "%s", name);
    s = make_state(buf);
    return register_smtp_client_state(&s, after);
}

/* The id the next registration receives, found by registering a probe
 * and removing it again (which spends that id: ids are never reused). */
static int probe_next_id(void)
{
    static int probes;
    char name[32];
    int id;

    snprintf(name, sizeof(name), "probe-%d", probes++);
    id = register_named(name, SMTP_STATE_QUIT);
    smtp_unregister_client_state(id);
    return id;
}

static void take_snapshot(struct snapshot *snap)
{
    memset(snap, 0, sizeof(*snap));
    for (smtp_state *s = smtp_get_state_machine(); s != NULL;
         s = smtp_state_next(s)) {
        if (snap->chain_len == MAX_CHAIN)
            break;
        snap->chain[snap->chain_len++] = s->id;
    }
    for (int id = 1; id < SMTP_MAX_STATES; id++) {
        smtp_state *s = smtp_get_state(id);
        if (s == NULL)
            continue;
        snprintf(snap->names[id], sizeof(snap->names[id]), "%s", s->name);
        snap->next_of[id] = s->next ? s->next->id : 0;
    }
    snap->next_id = probe_next_id();
}

/* Equal when nothing but the probe's own spent id differs. */
static int snapshots_equal(const struct snapshot *a, const struct snapshot *b)
{
    if (a->chain_len != b->chain_len)
        return 0;
    if (memcmp(a->chain, b->chain, sizeof(a->chain)) != 0)
        return 0;
    if (memcmp(a->names, b->names, sizeof(a->names)) != 0)
        return 0;
    if (memcmp(a->next_of, b->next_of, sizeof(a->next_of)) != 0)
        return 0;
    return b->next_id == a->next_id + 1;
}

static struct snapshot before, after;

/* `rule` is the text naming the broken rule: a refusal for one reason
 * must not be reported under another. */
#define CHECK_REFUSED(call, code, rule)                                    \
    do {                                                                   \
        take_snapshot(&before);                                            \
        CHECK((call) == -1);                                               \
        CHECK(smtp_last_error_code() == (code));                           \
        CHECK(strstr(smtp_last_error(), "(rule: " rule) != NULL);          \
        take_snapshot(&after);                                             \
        CHECK(snapshots_equal(&before, &after));                           \
    } while (0)

static void test_builtin_chain(void)
{
    static const struct { int id; const char *name; } expected[] = {
        {SMTP_STATE_BANNER, "banner"},
        {SMTP_STATE_EHLO, "ehlo"},
        {SMTP_STATE_STARTTLS, "starttls"},
        {SMTP_STATE_AUTH, "auth"},
        {SMTP_STATE_XCLIENT, "xclient"},
        {SMTP_STATE_SESSION_READY, "session-ready"},
        {SMTP_STATE_TRANSACTION, "transaction"},
        {SMTP_STATE_MAIL_FROM, "mail-from"},
        {SMTP_STATE_RCPT_TO, "rcpt-to"},
        {SMTP_STATE_DATA, "data"},
        {SMTP_STATE_BODY, "body"},
        {SMTP_STATE_CONFIRMATION, "confirmation"},
    };
    size_t n = 0;

    for (smtp_state *s = smtp_get_state_machine(); s != NULL;
         s = smtp_state_next(s), n++) {
        if (n >= sizeof(expected) / sizeof(expected[0]))
            break;
        CHECK(s->id == expected[n].id);
        CHECK(strcmp(s->name, expected[n].name) == 0);
        CHECK(s->sizeof_smtp_state == sizeof(smtp_state));
    }
    CHECK(n == sizeof(expected) / sizeof(expected[0]));

    smtp_state *rset = smtp_get_state(SMTP_STATE_RSET);
    smtp_state *quit = smtp_get_state(SMTP_STATE_QUIT);
    CHECK(rset != NULL && strcmp(rset->name, "rset") == 0);
    CHECK(rset != NULL && rset->next == smtp_get_state(SMTP_STATE_TRANSACTION));
    CHECK(quit != NULL && strcmp(quit->name, "quit") == 0);
    CHECK(quit != NULL && quit->next == NULL);
    CHECK(smtp_get_state(15) == NULL);
    CHECK(smtp_last_error_code() == SMTP_ENOSTATE);
    CHECK(strcmp(smtp_stage_name(SMTP_STAGE_MAIL_FROM),
                 "during MAIL FROM") == 0);
}

static int chain_position(int id)
{
    int pos = 0;

    for (smtp_state *s = smtp_get_state_machine(); s != NULL;
         s = smtp_state_next(s), pos++) {
        if (s->id == id)
            return pos;
    }
    return -1;
}

static void test_insert_and_unregister(void)
{
    struct snapshot start, end;
    take_snapshot(&start);

    /* A heap record and name, freed right after: the table owns copies. */
    smtp_state *heap = malloc(sizeof(*heap));
    char *name = strdup("c-probe");
    int closure_target = 7;
    *heap = make_state(name);
    heap->id = 999;
    heap->next = heap;
    heap->closure = &closure_target;
    int id = register_smtp_client_state(heap, SMTP_STATE_SESSION_READY);
    CHECK(id == start.next_id + 1);
    CHECK(heap->id == 999 && heap->next == heap); /* nothing written back */
    free(name);
    free(heap);

    smtp_state *entry = smtp_get_state(id);
    CHECK(entry != NULL && strcmp(entry->name, "c-probe") == 0);
    CHECK(entry != NULL && entry->closure == &closure_target);
    CHECK(entry != NULL && entry->id == id);
    CHECK(chain_position(id) == chain_position(SMTP_STATE_SESSION_READY) + 1);
    CHECK(entry != NULL &&
          entry->next == smtp_get_state(SMTP_STATE_TRANSACTION));

    /* Later registration after the same id runs first. */
    int later = register_named("c-later", SMTP_STATE_SESSION_READY);
    CHECK(later == id + 1);
    CHECK(chain_position(later) ==
          chain_position(SMTP_STATE_SESSION_READY) + 1);
    CHECK(chain_position(id) == chain_position(later) + 1);

    /* -1 puts a state before the banner; a second -1 goes before it. */
    int first = register_named("c-first", -1);
    CHECK(smtp_get_state_machine()->id == first);
    CHECK(smtp_state_next(smtp_get_state_machine())->id == SMTP_STATE_BANNER);
    int firster = register_named("c-firster", -1);
    CHECK(smtp_get_state_machine()->id == firster);
    CHECK(chain_position(first) == 1);

    /* A state after a custom state, and after an off-chain built-in. */
    int chained = register_named("c-chained", id);
    CHECK(chain_position(chained) == chain_position(id) + 1);
    int after_rset = register_named("c-after-rset", SMTP_STATE_RSET);
    CHECK(smtp_get_state(SMTP_STATE_RSET)->next == smtp_get_state(after_rset));
    CHECK(chain_position(after_rset) == -1);

    /* Unregistering in any order restores the chain exactly. */
    CHECK(smtp_unregister_client_state(id) == 0);
    CHECK(chain_position(chained) == chain_position(later) + 1);
    CHECK(smtp_unregister_client_state(first) == 0);
    CHECK(smtp_unregister_client_state(later) == 0);
    CHECK(smtp_unregister_client_state(firster) == 0);
    CHECK(smtp_unregister_client_state(chained) == 0);
    CHECK(smtp_unregister_client_state(after_rset) == 0);
    take_snapshot(&end);
    CHECK(start.chain_len == end.chain_len);
    CHECK(memcmp(start.chain, end.chain, sizeof(start.chain)) == 0);
    CHECK(memcmp(start.names, end.names, sizeof(start.names)) == 0);
    CHECK(memcmp(start.next_of, end.next_of, sizeof(start.next_of)) == 0);

    /* The name is free again; the id is not reused. */
    int again = register_named("c-probe", SMTP_STATE_SESSION_READY);
    CHECK(again == end.next_id + 1);
    CHECK(smtp_unregister_client_state(again) == 0);
}

static void test_registration_refusals(void)
{
    char long_name[SMTP_STATE_NAME_MAX + 2];
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';

    smtp_state s = make_state("fine-name");
    CHECK_REFUSED(register_smtp_client_state(NULL, -1), SMTP_ENULL,
                  "a state record is required");

    s.sizeof_smtp_state = sizeof(smtp_state) - sizeof(void *);
    CHECK_REFUSED(register_smtp_client_state(&s, -1), SMTP_ESIZE,
                  "record built against");
    s.sizeof_smtp_state = sizeof(smtp_state) + sizeof(void *);
    CHECK_REFUSED(register_smtp_client_state(&s, -1), SMTP_ESIZE,
                  "record built against");
    s.sizeof_smtp_state = sizeof(smtp_state);

    static char *bad_names[] = {"", "has space", "new\nline", "colon:",
                                "\xc3\xa9t\xc3\xa9", NULL};
    for (int i = 0; bad_names[i] != NULL; i++) {
        s.name = bad_names[i];
        CHECK_REFUSED(register_smtp_client_state(&s, -1), SMTP_ENAME,
                      "name of 1-");
    }
    s.name = NULL;
    CHECK_REFUSED(register_smtp_client_state(&s, -1), SMTP_ENAME,
                  "name of 1-");
    s.name = long_name;
    CHECK_REFUSED(register_smtp_client_state(&s, -1), SMTP_ENAME,
                  "name of 1-");
    long_name[SMTP_STATE_NAME_MAX] = '\0'; /* exactly 63 bytes is fine */
    int ok = register_smtp_client_state(&s, -1);
    CHECK(ok > 0);
    CHECK(smtp_unregister_client_state(ok) == 0);

    s.name = "banner";
    CHECK_REFUSED(register_smtp_client_state(&s, -1), SMTP_EDUPNAME,
                  "unique name");
    int held = register_named("held", SMTP_STATE_EHLO);
    s.name = "held";
    CHECK_REFUSED(register_smtp_client_state(&s, -1), SMTP_EDUPNAME,
                  "unique name");
    s.name = "Held"; /* names are case-sensitive */
    ok = register_smtp_client_state(&s, -1);
    CHECK(ok > 0);
    CHECK(smtp_unregister_client_state(ok) == 0);

    s.name = "no-callback";
    s.callback = NULL;
    CHECK_REFUSED(register_smtp_client_state(&s, -1), SMTP_ENOCALLBACK,
                  "callback required");
    s.callback = noop_callback;

    static const int bad_after[] = {0, -2, -3, 15, 31, 999, SMTP_MAX_STATES,
                                    1 << 30};
    for (size_t i = 0; i < sizeof(bad_after) / sizeof(bad_after[0]); i++)
        CHECK_REFUSED(register_smtp_client_state(&s, bad_after[i]),
                      SMTP_ENOSTATE, "insert_after must be");
    int gone = register_named("gone", SMTP_STATE_EHLO);
    CHECK(smtp_unregister_client_state(gone) == 0);
    CHECK_REFUSED(register_smtp_client_state(&s, gone), SMTP_ENOSTATE,
                  "insert_after must be");

    CHECK(smtp_unregister_client_state(held) == 0);
}

static void test_unregister_refusals(void)
{
    static const int builtin_ids[] = {SMTP_STATE_BANNER, SMTP_STATE_BODY,
                                      SMTP_STATE_QUIT};
    for (size_t i = 0; i < 3; i++) {
        take_snapshot(&before);
        CHECK(smtp_unregister_client_state(builtin_ids[i]) == SMTP_EBUILTIN);
        CHECK(strstr(smtp_last_error(), "(rule: built-in states stay)"));
        take_snapshot(&after);
        CHECK(snapshots_equal(&before, &after));
    }
    static const int unknown_ids[] = {-1, 0, 15, 63, 5000};
    for (size_t i = 0; i < 5; i++) {
        take_snapshot(&before);
        CHECK(smtp_unregister_client_state(unknown_ids[i]) == SMTP_ENOSTATE);
        CHECK(strstr(smtp_last_error(), "(rule: known id)") != NULL);
        take_snapshot(&after);
        CHECK(snapshots_equal(&before, &after));
    }
    int twice = register_named("twice", SMTP_STATE_DATA);
    CHECK(smtp_unregister_client_state(twice) == 0);
    take_snapshot(&before);
    CHECK(smtp_unregister_client_state(twice) == SMTP_ENOSTATE);
    take_snapshot(&after);
    CHECK(snapshots_equal(&before, &after));
}

/* Unregistering a state while a connection is in it: the state goes
 * first in the chain, so its setup runs as soon as the loopback connect
 * completes (the listener never accepts; the kernel finishes the
 * handshake), and from there tries to remove itself. */
struct in_use {
    int id;
    int setups;
    int unregister_ret;
    char text[256];
    int unchanged;
    int outcomes;
};

static struct in_use in_use;

static int in_use_setup(const smtp_state *self, delivery_construct *dc,
                        connection_handle *connh, struct timeval *now)
{
    (void)self, (void)dc, (void)connh, (void)now;
    in_use.setups++;
    take_snapshot(&before);
    in_use.unregister_ret = smtp_unregister_client_state(in_use.id);
    snprintf(in_use.text, sizeof(in_use.text), "%s", smtp_last_error());
    take_snapshot(&after);
    in_use.unchanged = snapshots_equal(&before, &after);
    return SMTP_ESTATE; /* fail the message: no server will answer */
}

static void in_use_outcome(const smtp_outcome *o, void *arg)
{
    (void)o, (void)arg;
    in_use.outcomes++;
}

static void test_unregister_in_use(void)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0);
    CHECK(listen(fd, 4) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);

    smtp_state s = make_state("in-use");
    s.setup = in_use_setup;
    in_use.id = register_smtp_client_state(&s, -1);
    CHECK(in_use.id > 0);

    smtp_config cfg;
    smtp_config_init(&cfg);
    cfg.on_outcome = in_use_outcome;
    smtp_scheduler *sched = smtp_scheduler_new(&cfg);
    static const char *to[] = {"a@x.test"};
    smtp_message m = {.sender = "s@x.test", .recipients = to,
                      .nrecipients = 1, .data = "x", .len = 1, .id = 1};
    smtp_destination d = {.host = "127.0.0.1", .port = ntohs(sa.sin_port)};
    CHECK(sched != NULL && smtp_scheduler_submit(sched, &d, &m) == 0);
    CHECK(smtp_scheduler_run(sched) == 0);
    smtp_scheduler_free(sched);
    close(fd);

    CHECK(in_use.setups == 1 && in_use.outcomes == 1);
    CHECK(in_use.unregister_ret == SMTP_EBUSY);
    CHECK(strstr(in_use.text, "(rule: not while in use)") != NULL);
    CHECK(in_use.unchanged);
    CHECK(chain_position(in_use.id) == 0);
    /* Once no connection is in it, the same call succeeds. */
    CHECK(smtp_unregister_client_state(in_use.id) == 0);
    CHECK(chain_position(in_use.id) == -1);
}

struct thread_result {
    int register_ret;
    int register_code;
    char register_text[256];
    int unregister_ret;
    smtp_state *got_state;
    int get_code;
    int init_ret;
    int chain_len;
    int target_id;
};

static void *foreign_thread(void *arg)
{
    struct thread_result *r = arg;
    smtp_state s = make_state("from-thread");

    r->register_ret = register_smtp_client_state(&s, SMTP_STATE_EHLO);
    r->register_code = smtp_last_error_code();
    snprintf(r->register_text, sizeof(r->register_text), "%s",
             smtp_last_error());
    r->unregister_ret = smtp_unregister_client_state(r->target_id);
    r->got_state = smtp_get_state(SMTP_STATE_BANNER);
    r->get_code = smtp_last_error_code();
    r->init_ret = smtp_library_init();
    for (smtp_state *st = smtp_get_state_machine(); st != NULL;
         st = smtp_state_next(st))
        r->chain_len++;
    return NULL;
}

static void test_wrong_thread(void)
{
    struct thread_result r = {0};
    pthread_t t;
    int target = register_named("owned", SMTP_STATE_EHLO);

    r.target_id = target;
    take_snapshot(&before);
    CHECK(pthread_create(&t, NULL, foreign_thread, &r) == 0);
    pthread_join(t, NULL);
    take_snapshot(&after);
    CHECK(snapshots_equal(&before, &after));
    CHECK(r.register_ret == -1);
    CHECK(r.register_code == SMTP_ETHREAD);
    CHECK(strstr(r.register_text, "owner thread") != NULL);
    CHECK(r.unregister_ret == SMTP_ETHREAD);
    CHECK(r.got_state == NULL && r.get_code == SMTP_ETHREAD);
    CHECK(r.init_ret == SMTP_ETHREAD);
    CHECK(r.chain_len == before.chain_len); /* reading is allowed */
    /* The foreign thread's failure did not leak into this thread. */
    CHECK(smtp_library_init() == 0);
    CHECK(smtp_last_error_code() == 0);
    CHECK(smtp_unregister_client_state(target) == 0);
}

/* A reader on another thread walks the chain while the owner inserts and
 * removes states; every walk must see the built-ins in order and end. */
static atomic_int stop_reader;

static void *chain_reader(void *arg)
{
    long *bad_walks = arg;

    while (!stop_reader) {
        int last_builtin = 0, len = 0;
        for (smtp_state *s = smtp_get_state_machine(); s != NULL;
             s = smtp_state_next(s)) {
            if (++len > MAX_CHAIN || s->name == NULL) {
                (*bad_walks)++;
                break;
            }
            if (s->id <= SMTP_BUILTIN_ID_MAX) {
                if (s->id <= last_builtin)
                    (*bad_walks)++;
                last_builtin = s->id;
            }
        }
        if (last_builtin != SMTP_STATE_CONFIRMATION)
            (*bad_walks)++;
    }
    return NULL;
}

static void test_concurrent_readers(void)
{
    long bad_walks = 0;
    pthread_t t;

    stop_reader = 0;
    CHECK(pthread_create(&t, NULL, chain_reader, &bad_walks) == 0);
    for (int round = 0; round < 200; round++) {
        char name[32];
        snprintf(name, sizeof(name), "churn-%d", round);
        int id = register_named(name, round % 2 ? -1 : SMTP_STATE_DATA);
        CHECK(id > 0);
        CHECK(smtp_unregister_client_state(id) == 0);
    }
    stop_reader = 1;
    pthread_join(t, NULL);
    CHECK(bad_walks == 0);
}

int main(void)
{
    CHECK(smtp_library_init() == 0);
    test_builtin_chain();
    test_insert_and_unregister();
    test_registration_refusals();
    test_unregister_refusals();
    test_unregister_in_use();
    test_wrong_thread();
    test_concurrent_readers();
    CTEST_END();
}
