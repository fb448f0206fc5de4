/*
 * client_states.h - the built-in states' functions and the helpers they
 * share.  The list that registers them is builtin_states.c.
 */
#ifndef SMTPSTATE_CLIENT_STATES_H
#define SMTPSTATE_CLIENT_STATES_H

#include "engine.h"

/* DATA as sent: alone, or closing a pipelined group, whose RCPTs leave
 * room for it (smtp__send_rcpts). */
#define SMTP__DATA_LINE "DATA\r\n"

/* The parameter list every state callback has (dns_ds.h). */
#define SMTP__CALLBACK_PARAMS                                              \
    delivery_construct *dc, Event *e, connection *conn,                    \
        connection_handle *connh, domain_record *domain,                   \
        ec_binding_slot binding_slot, address_metrics *am,                 \
        struct timeval *now, int events

#define SMTP__DECLARE_STATE(name)                                          \
    int smtp__##name##_setup(const smtp_state *self, delivery_construct *dc, \
                             connection_handle *connh, struct timeval *now); \
    int smtp__##name##_callback(SMTP__CALLBACK_PARAMS)

SMTP__DECLARE_STATE(banner);
SMTP__DECLARE_STATE(ehlo);
SMTP__DECLARE_STATE(skip);
SMTP__DECLARE_STATE(transaction);
SMTP__DECLARE_STATE(mail);
SMTP__DECLARE_STATE(rcpt);
SMTP__DECLARE_STATE(data);
SMTP__DECLARE_STATE(body);
SMTP__DECLARE_STATE(confirmation);
SMTP__DECLARE_STATE(rset);
SMTP__DECLARE_STATE(quit);
void smtp__body_free(const smtp_state *self, connection *conn);

/* Queues a formatted command; on failure the connection is failed and
 * false returned. */
bool smtp__send_command(struct smtp__conn *c, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* As smtp__send_command, for a command that is its parts joined (the
 * array ends with NULL): the per-message commands, without printf. */
bool smtp__send_joined(struct smtp__conn *c, const char *const parts[]);

/* Joins `parts` (ended by NULL) into out[0..cap) with a NUL after them.
 * Returns their length, or cap when they do not fit. */
size_t smtp__join(char *out, size_t cap, const char *const parts[]);

/*
 * Reads the reply a built-in waits for.  Returns true with *code set
 * (> 0: one of `codes`, < 0: minus another code) when a reply arrived.
 * Returns false when the callback must return *ret instead: still
 * waiting, or the connection was failed (deadline, transport, malformed
 * reply, or a 421, which settles everything unsettled with its reply).
 */
bool smtp__await_reply(struct smtp__conn *c, int events, const int *codes,
                       size_t n, int *code, int *ret);

/* The server is closing with the 421 in dc->last_reply (DESIGN 8): every
 * unsettled message fails transiently with it, and the connection closes.
 * Returns 0, what a callback then returns. */
int smtp__server_closing(struct smtp__conn *c);

/*
 * For bytes that came when no reply was due, or a write the server's
 * close made fail: when they are a complete 421, the server is closing,
 * and that decides rather than the protocol or transport error (DESIGN 9:
 * unexpected bytes are a protocol error, except a 421).  Returns true
 * when it settled and closed the connection; false leaves the failure to
 * the caller (a reply other than 421 that was read is consumed).
 */
bool smtp__take_421(struct smtp__conn *c);

/* Moves to built-in `id` (a jump, not the default next). */
void smtp__jump(struct smtp__conn *c, int id, struct timeval *now);

/* Settles everything unsettled by the last reply and QUITs. */
int smtp__session_refused(struct smtp__conn *c, int kind,
                          struct timeval *now);

/* Queues RCPT TO for the transaction's next pending recipient, or (all)
 * for every one of them; false when the connection failed. */
bool smtp__send_rcpts(struct smtp__conn *c, bool all);

/* Decides every recipient the open transaction's RCPTs accepted. */
void smtp__settle_accepted(struct smtp__conn *c, int kind, int stage);

/* The message of the open transaction. */
struct smtp__msg *smtp__txn_msg(struct smtp__conn *c);

/*
 * For a close (EOF or reset) met while reading a reply: when it came in
 * MAIL FROM before any byte of its reply, on a connection that has served
 * a transaction, it is the server closing a connection between messages
 * (DESIGN 8): nothing of this transaction can have been delivered, so its
 * message goes back to the queue with the rest of the batch, and the
 * connection closes.  Returns true when it did so.
 */
bool smtp__closed_before_mail_reply(struct smtp__conn *c);
/* Right after the end of data went out: with PIPELINING and only built-in
 * states between the anchor and DATA, sends the next message's MAIL,
 * RCPTs and DATA now, so that its replies come with the body's. */
void smtp__chain_next_transaction(struct smtp__conn *c);

#endif /* SMTPSTATE_CLIENT_STATES_H */
