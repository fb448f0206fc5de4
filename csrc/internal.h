/*
 * internal.h - declarations shared by the library's own files.
 *
 * Names here carry the smtp__ prefix and are hidden from the exported
 * symbol table; nothing outside csrc/ may rely on them.
 */
#ifndef SMTPSTATE_INTERNAL_H
#define SMTPSTATE_INTERNAL_H

#include <stdbool.h>

#include "smtp.h"

/* Runs the one-time initialisation if no thread has yet. */
void smtp__ensure_init(void);

/* True when the calling thread is the library's owner thread. */
bool smtp__on_owner_thread(void);

/*
 * Checks the owner-thread rule for `func`; on another thread records
 * SMTP_ETHREAD and returns false.
 */
bool smtp__require_owner(const char *func);

/* Records `code` and a formatted reason as this thread's last error;
 * returns `code`. */
int smtp__fail(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Clears this thread's last error after a successful call. */
void smtp__succeed(void);

/*
 * Validates and inserts `state` after `insert_after`.  `fixed_id` is 0
 * for a custom state (the table assigns the next custom id) or the
 * built-in id to use.  Returns the id, or -1 with the reason recorded.
 */
int smtp__state_table_insert(const smtp_state *state, int insert_after,
                             int fixed_id, const char *func);

/* Registers the built-in states in their order; aborts if one fails. */
void smtp__builtin_states_register(void);

#endif /* SMTPSTATE_INTERNAL_H */
