/*
 * builtin_states.c - the one list of built-in states.
 *
 * Each built-in is registered at library initialisation through the same
 * validation a plugin goes through, with its fixed id.  The default chain
 * is the order of this list; RSET and QUIT are registered but linked from
 * nothing, since the engine enters them only by a jump.
 */
#include <stdio.h>
#include <stdlib.h>

#include "client_states.h"
#include "state_table.h"

struct builtin {
    int id;
    const char *name;
    int link_after;  /* -1 first, SMTP__UNLINKED, or the previous id */
    int stage;
    int timeout;     /* SMTP_TIMEOUT_* on entering the state */
    SMTPStateSetup setup;
    SMTPStateCallback callback;
    SMTPStateFree free;
};

#define STATE(name) smtp__##name##_setup, smtp__##name##_callback

static const struct builtin builtins[] = {
    {SMTP_STATE_BANNER, "banner", -1, SMTP_STAGE_BANNER,
     SMTP_TIMEOUT_BANNER, STATE(banner), NULL},
    {SMTP_STATE_EHLO, "ehlo", SMTP_STATE_BANNER, SMTP_STAGE_EHLO,
     SMTP_TIMEOUT_EHLO, STATE(ehlo), NULL},
    {SMTP_STATE_STARTTLS, "starttls", SMTP_STATE_EHLO, SMTP_STAGE_STARTTLS,
     SMTP_TIMEOUT_TLS, STATE(skip), NULL},
    {SMTP_STATE_AUTH, "auth", SMTP_STATE_STARTTLS, SMTP_STAGE_AFTER_EHLO,
     SMTP_TIMEOUT_CUSTOM, STATE(skip), NULL},
    {SMTP_STATE_XCLIENT, "xclient", SMTP_STATE_AUTH, SMTP_STAGE_XCLIENT,
     SMTP_TIMEOUT_CUSTOM, STATE(skip), NULL},
    {SMTP_STATE_SESSION_READY, "session-ready", SMTP_STATE_XCLIENT,
     SMTP_STAGE_AFTER_EHLO, SMTP_TIMEOUT_CUSTOM, STATE(skip), NULL},
    {SMTP_STATE_TRANSACTION, "transaction", SMTP_STATE_SESSION_READY,
     SMTP_STAGE_IDLE, SMTP_TIMEOUT_IDLE, STATE(transaction), NULL},
    {SMTP_STATE_MAIL_FROM, "mail-from", SMTP_STATE_TRANSACTION,
     SMTP_STAGE_MAIL_FROM, SMTP_TIMEOUT_MAIL, STATE(mail), NULL},
    {SMTP_STATE_RCPT_TO, "rcpt-to", SMTP_STATE_MAIL_FROM, SMTP_STAGE_RCPT_TO,
     SMTP_TIMEOUT_RCPT, STATE(rcpt), NULL},
    {SMTP_STATE_DATA, "data", SMTP_STATE_RCPT_TO, SMTP_STAGE_DATA,
     SMTP_TIMEOUT_DATA, STATE(data), NULL},
    {SMTP_STATE_BODY, "body", SMTP_STATE_DATA, SMTP_STAGE_BODY,
     SMTP_TIMEOUT_BODY, STATE(body), smtp__body_free},
    {SMTP_STATE_CONFIRMATION, "confirmation", SMTP_STATE_BODY,
     SMTP_STAGE_CONFIRMATION, SMTP_TIMEOUT_CONFIRM, STATE(confirmation),
     NULL},
    {SMTP_STATE_RSET, "rset", SMTP__UNLINKED, SMTP_STAGE_RSET,
     SMTP_TIMEOUT_RSET, STATE(rset), NULL},
    {SMTP_STATE_QUIT, "quit", SMTP__UNLINKED, SMTP_STAGE_IDLE,
     SMTP_TIMEOUT_QUIT, STATE(quit), NULL},
};

#define BUILTIN_COUNT (sizeof(builtins) / sizeof(builtins[0]))

static const struct builtin *builtin_of(const smtp_state *state)
{
    if (state->id < 1 || state->id > SMTP_BUILTIN_ID_MAX)
        return NULL;
    return state->closure;
}

unsigned smtp__state_timeout_kind(const smtp_state *state)
{
    const struct builtin *b = builtin_of(state);

    return b ? (unsigned)b->timeout : SMTP_TIMEOUT_CUSTOM;
}

static int builtin_tostage(const smtp_state *self, connection *conn)
{
    const struct builtin *b = self->closure;

    (void)conn;
    return b->stage;
}

static const char *builtin_tostring(const smtp_state *self, int stage)
{
    (void)self;
    return smtp_stage_name(stage);
}

void smtp__builtin_states_register(void)
{
    for (size_t i = 0; i < BUILTIN_COUNT; i++) {
        const struct builtin *b = &builtins[i];
        smtp_state record = {
            .sizeof_smtp_state = sizeof(smtp_state),
            .name = (char *)b->name,
            .setup = b->setup,
            .callback = b->callback,
            .free = b->free,
            .tostage = builtin_tostage,
            .tostring = builtin_tostring,
            .closure = (void *)b,
        };

        if (smtp__state_table_insert(&record, b->link_after, b->id,
                                     "builtin") != b->id) {
            fprintf(stderr, "smtpstate: built-in state %s refused: %s\n",
                    b->name, smtp_last_error());
            abort();
        }
    }
    smtp__state_set_next(SMTP_STATE_RSET, SMTP_STATE_TRANSACTION);
}
