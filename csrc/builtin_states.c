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

#include "internal.h"
#include "state_table.h"

struct builtin {
    int id;
    const char *name;
    int link_after; /* -1 first, SMTP__UNLINKED, or the previous id */
    int stage;
};

static const struct builtin builtins[] = {
    {SMTP_STATE_BANNER, "banner", -1, SMTP_STAGE_BANNER},
    {SMTP_STATE_EHLO, "ehlo", SMTP_STATE_BANNER, SMTP_STAGE_EHLO},
    {SMTP_STATE_STARTTLS, "starttls", SMTP_STATE_EHLO,
     SMTP_STAGE_STARTTLS},
    {SMTP_STATE_AUTH, "auth", SMTP_STATE_STARTTLS, SMTP_STAGE_AFTER_EHLO},
    {SMTP_STATE_XCLIENT, "xclient", SMTP_STATE_AUTH, SMTP_STAGE_XCLIENT},
    {SMTP_STATE_SESSION_READY, "session-ready", SMTP_STATE_XCLIENT,
     SMTP_STAGE_AFTER_EHLO},
    {SMTP_STATE_TRANSACTION, "transaction", SMTP_STATE_SESSION_READY,
     SMTP_STAGE_IDLE},
    {SMTP_STATE_MAIL_FROM, "mail-from", SMTP_STATE_TRANSACTION,
     SMTP_STAGE_MAIL_FROM},
    {SMTP_STATE_RCPT_TO, "rcpt-to", SMTP_STATE_MAIL_FROM,
     SMTP_STAGE_RCPT_TO},
    {SMTP_STATE_DATA, "data", SMTP_STATE_RCPT_TO, SMTP_STAGE_DATA},
    {SMTP_STATE_BODY, "body", SMTP_STATE_DATA, SMTP_STAGE_BODY},
    {SMTP_STATE_CONFIRMATION, "confirmation", SMTP_STATE_BODY,
     SMTP_STAGE_CONFIRMATION},
    {SMTP_STATE_RSET, "rset", SMTP__UNLINKED, SMTP_STAGE_RSET},
    {SMTP_STATE_QUIT, "quit", SMTP__UNLINKED, SMTP_STAGE_UNKNOWN},
};

#define BUILTIN_COUNT (sizeof(builtins) / sizeof(builtins[0]))

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

/* The protocol work of each built-in lands with the scheduler that drives
 * connections; until then no connection can enter a state, so this only
 * keeps the record valid. */
static int builtin_not_driven_yet(delivery_construct *dc, Event *e,
                                  connection *conn,
                                  connection_handle *connh,
                                  domain_record *domain,
                                  ec_binding_slot binding_slot,
                                  address_metrics *am, struct timeval *now,
                                  int events)
{
    (void)dc, (void)e, (void)conn, (void)connh, (void)domain;
    (void)binding_slot, (void)am, (void)now, (void)events;
    return SMTP_WANT_READ;
}

void smtp__builtin_states_register(void)
{
    for (size_t i = 0; i < BUILTIN_COUNT; i++) {
        const struct builtin *b = &builtins[i];
        smtp_state record = {
            .sizeof_smtp_state = sizeof(smtp_state),
            .name = (char *)b->name,
            .callback = builtin_not_driven_yet,
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
