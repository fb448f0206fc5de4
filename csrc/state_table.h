/*
 * state_table.h - the table's entry points for the engine's own files.
 */
#ifndef SMTPSTATE_STATE_TABLE_H
#define SMTPSTATE_STATE_TABLE_H

#include "internal.h"

/* insert_after value for a built-in entered only by a jump (RSET, QUIT):
 * registered, but linked from nothing. */
#define SMTP__UNLINKED (-2)

struct state_slot;

/* The slot of a registered table entry, or NULL for any other pointer. */
struct state_slot *smtp__state_slot(const smtp_state *state);

/* Sets the default next of built-in `id` (0: none).  Initialisation only. */
void smtp__state_set_next(int id, int next_id);

/* Counts a connection entering or leaving `state`, a table entry; a state
 * with connections in it cannot be unregistered. */
void smtp__state_enter(smtp_state *state);
void smtp__state_leave(smtp_state *state);

/* The registered state with `id`, or NULL: smtp_get_state for the
 * engine's own use on the owner thread, without its checks and error
 * bookkeeping (it runs several times a message). */
smtp_state *smtp__state_by_id(int id);

/* True for a table entry declared with smtp_state_set_observer.  Asked
 * on every state entered, write and read: a built-in, never an observer,
 * is told by its id without a call. */
bool smtp__custom_state_is_observer(const smtp_state *state);

static inline bool smtp__state_is_observer(const smtp_state *state)
{
    return state != NULL && state->id > SMTP_BUILTIN_ID_MAX &&
           smtp__custom_state_is_observer(state);
}

#endif /* SMTPSTATE_STATE_TABLE_H */
