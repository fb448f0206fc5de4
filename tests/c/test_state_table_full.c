/*
 * test_state_table_full.c - filling the table, in a process of its own.
 *
 * Ids are never reused, so once every custom id is spent the table stays
 * full, even after states are removed; the refusal changes nothing.
 */
#include <string.h>

#include "ctest.h"
#include "smtp.h"

static int noop_callback(delivery_construct *dc, Event *e, connection *conn,
                         connection_handle *connh, domain_record *domain,
                         ec_binding_slot binding_slot, address_metrics *am,
                         struct timeval *now, int events)
{
    (void)dc, (void)e, (void)conn, (void)connh, (void)domain;
    (void)binding_slot, (void)am, (void)now, (void)events;
    return SMTP_WANT_READ;
}

static int try_register(int n)
{
    char name[32];
    smtp_state s = {
        .sizeof_smtp_state = sizeof(smtp_state),
        .name = name,
        .callback = noop_callback,
    };

    snprintf(name, sizeof(name), "filler-%d", n);
    return register_smtp_client_state(&s, SMTP_STATE_EHLO);
}

static int chain_length(void)
{
    int n = 0;

    for (smtp_state *s = smtp_get_state_machine(); s; s = smtp_state_next(s))
        n++;
    return n;
}

/* The whole table: the chain's order and every id's name and next.  The
 * id the next registration receives cannot be probed here, as every
 * registration is refused; that the counter did not move is shown by the
 * refusal that follows an unregistration. */
struct snapshot {
    int chain[SMTP_MAX_STATES];
    int chain_len;
    char names[SMTP_MAX_STATES][SMTP_STATE_NAME_MAX + 1];
    int next_of[SMTP_MAX_STATES];
};

static struct snapshot before, after;

static void take_snapshot(struct snapshot *snap)
{
    memset(snap, 0, sizeof(*snap));
    for (smtp_state *s = smtp_get_state_machine(); s != NULL;
         s = smtp_state_next(s)) {
        if (snap->chain_len == SMTP_MAX_STATES)
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
}

static int snapshots_equal(void)
{
    return memcmp(&before, &after, sizeof(before)) == 0;
}

int main(void)
{
    int registered = 0, last = -1;

    for (int n = 0; n < SMTP_MAX_STATES; n++) {
        int id = try_register(n);
        if (id < 0)
            break;
        CHECK(id == SMTP_FIRST_CUSTOM_ID + n);
        last = id;
        registered++;
    }
    CHECK(registered == SMTP_MAX_STATES - SMTP_FIRST_CUSTOM_ID);
    CHECK(last == SMTP_MAX_STATES - 1);

    int len = chain_length();
    take_snapshot(&before);
    CHECK(try_register(100000) == -1);
    CHECK(smtp_last_error_code() == SMTP_EFULL);
    CHECK(strstr(smtp_last_error(), "rule: table capacity") != NULL);
    take_snapshot(&after);
    CHECK(snapshots_equal());
    CHECK(chain_length() == len);
    CHECK(smtp_get_state(SMTP_MAX_STATES - 1) != NULL);

    CHECK(smtp_unregister_client_state(last) == 0);
    CHECK(chain_length() == len - 1);
    take_snapshot(&before);
    CHECK(try_register(100001) == -1);
    CHECK(smtp_last_error_code() == SMTP_EFULL);
    take_snapshot(&after);
    CHECK(snapshots_equal());
    CHECK(chain_length() == len - 1);
    CTEST_END();
}
