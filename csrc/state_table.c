/*
 * state_table.c - the one state table of the process.
 *
 * The table is a fixed array of slots indexed by state id.  A slot is
 * written once, when its state registers, and never freed or reused, so
 * a smtp_state pointer handed out stays valid for the life of the
 * process.  The chain is the singly linked list from `chain_head` through
 * each record's `next`; only the owner thread changes it, and it does so
 * with release stores after the new record is complete, so a walk on any
 * thread sees either the old chain or the new one, never a torn record.
 * A refused request is checked in full before anything is written.
 */
#include <stdatomic.h>
#include <string.h>

#include "internal.h"
#include "state_table.h"

struct state_slot {
    smtp_state rec; /* first member: a slot's address is its record's */
    char name[SMTP_STATE_NAME_MAX + 1];
    bool registered;
    bool observer;   /* smtp_state_set_observer */
    int connections; /* connections now in the state */
};

static struct state_slot slots[SMTP_MAX_STATES];
static _Atomic(smtp_state *) chain_head;
static int next_custom_id = SMTP_FIRST_CUSTOM_ID;

static smtp_state *load_next(const smtp_state *state)
{
    return __atomic_load_n(&state->next, __ATOMIC_ACQUIRE);
}

static void store_next(smtp_state *state, smtp_state *next)
{
    __atomic_store_n(&state->next, next, __ATOMIC_RELEASE);
}

static struct state_slot *registered_slot(int id)
{
    if (id <= 0 || id >= SMTP_MAX_STATES || !slots[id].registered)
        return NULL;
    return &slots[id];
}

struct state_slot *smtp__state_slot(const smtp_state *state)
{
    uintptr_t base = (uintptr_t)slots;
    uintptr_t addr = (uintptr_t)state;

    if (addr < base || addr >= base + sizeof(slots))
        return NULL;
    if ((addr - base) % sizeof(slots[0]) != 0)
        return NULL;
    return registered_slot((int)((addr - base) / sizeof(slots[0])));
}

static bool name_is_valid(const char *name)
{
    size_t len = strnlen(name, SMTP_STATE_NAME_MAX + 1);

    if (len == 0 || len > SMTP_STATE_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '_' || c == '.' ||
                  c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static bool name_is_taken(const char *name)
{
    for (int id = 1; id < SMTP_MAX_STATES; id++) {
        if (slots[id].registered && strcmp(slots[id].name, name) == 0)
            return true;
    }
    return false;
}

/* Every check of a registration, in order; nothing is written here. */
static int check_registration(const smtp_state *state, int insert_after,
                              int fixed_id, const char *func)
{
    if (state == NULL)
        return smtp__fail(SMTP_ENULL, "%s: state is NULL "
                          "(rule: a state record is required)", func);
    if (state->sizeof_smtp_state != sizeof(smtp_state))
        return smtp__fail(SMTP_ESIZE, "%s: sizeof_smtp_state is %u, this "
                          "library's smtp_state is %zu bytes (rule: record "
                          "built against the same layout)", func,
                          state->sizeof_smtp_state, sizeof(smtp_state));
    if (state->name == NULL || !name_is_valid(state->name))
        return smtp__fail(SMTP_ENAME, "%s: invalid state name (rule: name "
                          "of 1-%d bytes of [A-Za-z0-9_.-])", func,
                          SMTP_STATE_NAME_MAX);
    if (state->callback == NULL)
        return smtp__fail(SMTP_ENOCALLBACK, "%s: state \"%s\" has no "
                          "callback (rule: callback required)", func,
                          state->name);
    if (name_is_taken(state->name))
        return smtp__fail(SMTP_EDUPNAME, "%s: a state named \"%s\" is "
                          "already registered (rule: unique name)", func,
                          state->name);
    if (insert_after != -1 && insert_after != SMTP__UNLINKED &&
        registered_slot(insert_after) == NULL)
        return smtp__fail(SMTP_ENOSTATE, "%s: insert_after %d is not a "
                          "registered state id (rule: insert_after must be "
                          "-1 or a registered id)", func, insert_after);
    if (fixed_id == 0 && next_custom_id >= SMTP_MAX_STATES)
        return smtp__fail(SMTP_EFULL, "%s: the state table is full, %d "
                          "slots (rule: table capacity)", func,
                          SMTP_MAX_STATES);
    return 0;
}

/* Publishes `state` after `insert_after`: the record is complete before
 * the store that makes it reachable. */
static void link_after(smtp_state *state, int insert_after)
{
    if (insert_after == SMTP__UNLINKED)
        return;
    if (insert_after == -1) {
        state->next = atomic_load(&chain_head);
        atomic_store_explicit(&chain_head, state, memory_order_release);
        return;
    }
    smtp_state *prev = &slots[insert_after].rec;
    state->next = load_next(prev);
    store_next(prev, state);
}

int smtp__state_table_insert(const smtp_state *state, int insert_after,
                             int fixed_id, const char *func)
{
    if (check_registration(state, insert_after, fixed_id, func) != 0)
        return -1;

    int id = fixed_id != 0 ? fixed_id : next_custom_id++;
    struct state_slot *slot = &slots[id];

    slot->rec = *state;
    memcpy(slot->name, state->name, strlen(state->name) + 1);
    slot->rec.name = slot->name;
    slot->rec.id = id;
    slot->rec.next = NULL;
    slot->connections = 0;
    slot->observer = false;
    slot->registered = true;
    link_after(&slot->rec, insert_after);
    smtp__succeed();
    return id;
}

void smtp__state_set_next(int id, int next_id)
{
    store_next(&slots[id].rec, next_id ? &slots[next_id].rec : NULL);
}

void smtp__state_enter(smtp_state *state)
{
    smtp__state_slot(state)->connections++;
}

void smtp__state_leave(smtp_state *state)
{
    smtp__state_slot(state)->connections--;
}

SMTP_API int register_smtp_client_state(smtp_state *state, int insert_after)
{
    if (!smtp__require_owner("register_smtp_client_state"))
        return -1;
    if (insert_after == SMTP__UNLINKED) {
        smtp__fail(SMTP_ENOSTATE, "register_smtp_client_state: "
                   "insert_after %d is not a registered state id (rule: "
                   "insert_after must be -1 or a registered id)",
                   insert_after);
        return -1;
    }
    return smtp__state_table_insert(state, insert_after, 0,
                                    "register_smtp_client_state");
}

/* Points whatever links to `victim` (the head or one record) past it. */
static void unlink_state(smtp_state *victim)
{
    smtp_state *after = load_next(victim);
    smtp_state *head = atomic_load(&chain_head);

    if (head == victim) {
        atomic_store_explicit(&chain_head, after, memory_order_release);
        return;
    }
    for (int id = 1; id < SMTP_MAX_STATES; id++) {
        if (slots[id].registered && load_next(&slots[id].rec) == victim) {
            store_next(&slots[id].rec, after);
            return;
        }
    }
}

/* The slot of the registered custom state `id`, for `func` on the owner
 * thread; else NULL, with *error the refusal (recorded for
 * smtp_last_error), a built-in refused under `builtin_rule`. */
static struct state_slot *custom_slot(int id, const char *func,
                                      const char *builtin_rule, int *error)
{
    struct state_slot *slot;

    if (!smtp__require_owner(func)) {
        *error = SMTP_ETHREAD;
        return NULL;
    }
    slot = registered_slot(id);
    if (slot == NULL)
        *error = smtp__fail(SMTP_ENOSTATE, "%s: no registered state has id "
                            "%d (rule: known id)", func, id);
    else if (id <= SMTP_BUILTIN_ID_MAX)
        *error = smtp__fail(SMTP_EBUILTIN, "%s: \"%s\" is a built-in state "
                            "(rule: %s)", func, slot->name, builtin_rule);
    else
        return slot;
    return NULL;
}

SMTP_API int smtp_unregister_client_state(int id)
{
    const char *func = "smtp_unregister_client_state";
    int error = 0;
    struct state_slot *slot =
        custom_slot(id, func, "built-in states stay", &error);

    if (slot == NULL)
        return error;
    if (slot->connections > 0)
        return smtp__fail(SMTP_EBUSY, "%s: %d connection(s) are in state "
                          "\"%s\" (rule: not while in use)", func,
                          slot->connections, slot->name);
    unlink_state(&slot->rec);
    slot->registered = false;
    smtp__succeed();
    return 0;
}

SMTP_API int smtp_state_set_observer(int id)
{
    const char *func = "smtp_state_set_observer";
    int error = 0;
    struct state_slot *slot =
        custom_slot(id, func, "only a custom state is declared", &error);

    if (slot == NULL)
        return error;
    if (slot->rec.setup == NULL)
        return smtp__fail(SMTP_EINVAL, "%s: \"%s\" has no setup (rule: an "
                          "observer moves on in its setup)", func,
                          slot->name);
    slot->observer = true;
    smtp__succeed();
    return 0;
}

bool smtp__custom_state_is_observer(const smtp_state *state)
{
    const struct state_slot *slot = smtp__state_slot(state);

    return slot != NULL && slot->observer;
}

smtp_state *smtp__state_by_id(int id)
{
    struct state_slot *slot = registered_slot(id);

    return slot != NULL ? &slot->rec : NULL;
}

SMTP_API smtp_state *smtp_get_state(int id)
{
    if (!smtp__require_owner("smtp_get_state"))
        return NULL;

    struct state_slot *slot = registered_slot(id);

    if (slot == NULL) {
        smtp__fail(SMTP_ENOSTATE, "smtp_get_state: no registered state "
                   "has id %d (rule: known id)", id);
        return NULL;
    }
    smtp__succeed();
    return &slot->rec;
}

SMTP_API smtp_state *smtp_get_state_machine(void)
{
    smtp__ensure_init();
    return atomic_load_explicit(&chain_head, memory_order_acquire);
}

SMTP_API smtp_state *smtp_state_next(const smtp_state *state)
{
    return state ? load_next(state) : NULL;
}
