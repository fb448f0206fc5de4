/*
 * smtp.h - the public API of the smtpstate client engine.
 *
 * The state machine is a chain of smtp_state records kept in one static
 * table per process.  Built-in states have fixed ids (SMTP_STATE_*); a
 * module inserts its own with register_smtp_client_state().  Functions
 * marked "owner thread" may only be called on the thread that initialised
 * the library; elsewhere they fail with SMTP_ETHREAD and change nothing.
 *
 * Failures return -1 or NULL (where the reference API fixes that) or a
 * negative SMTP_E* code, and leave a reason on the calling thread:
 * smtp_last_error_code() and smtp_last_error().
 */
#ifndef SMTPSTATE_SMTP_H
#define SMTPSTATE_SMTP_H

#include "dns_ds.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Version of this API; a plugin's init receives it. */
#define SMTP_API_VERSION 1

/* Slots in the state table; ids and slots are never reused. */
#define SMTP_MAX_STATES 1024

/* Built-in state ids (1-31 reserved for built-ins). */
#define SMTP_STATE_BANNER 1
#define SMTP_STATE_EHLO 2
#define SMTP_STATE_STARTTLS 3
#define SMTP_STATE_AUTH 4
#define SMTP_STATE_XCLIENT 5
#define SMTP_STATE_SESSION_READY 6
#define SMTP_STATE_TRANSACTION 7
#define SMTP_STATE_MAIL_FROM 8
#define SMTP_STATE_RCPT_TO 9
#define SMTP_STATE_DATA 10
#define SMTP_STATE_BODY 11
#define SMTP_STATE_CONFIRMATION 12
#define SMTP_STATE_RSET 13
#define SMTP_STATE_QUIT 14
#define SMTP_BUILTIN_ID_MAX 31
/* The id the first custom registration receives. */
#define SMTP_FIRST_CUSTOM_ID 64

/* Connection stages, as in the reference logs. */
#define SMTP_STAGE_NOT_CONNECTED 0
#define SMTP_STAGE_IDLE 1
#define SMTP_STAGE_MAIL_FROM 2
#define SMTP_STAGE_AFTER_MAIL_FROM 3
#define SMTP_STAGE_RCPT_TO 4
#define SMTP_STAGE_AFTER_RCPT_TO 5
#define SMTP_STAGE_DATA 6
#define SMTP_STAGE_AFTER_DATA 7
#define SMTP_STAGE_BODY 8
#define SMTP_STAGE_CONFIRMATION 9
#define SMTP_STAGE_EHLO 10
#define SMTP_STAGE_AFTER_EHLO 11
#define SMTP_STAGE_BANNER 12
#define SMTP_STAGE_RSET 13
#define SMTP_STAGE_AFTER_RSET 14
#define SMTP_STAGE_STARTTLS 15
#define SMTP_STAGE_AFTER_STARTTLS 16
#define SMTP_STAGE_TLS_HANDSHAKE 17
#define SMTP_STAGE_TLS_RENEGOTIATE 18
#define SMTP_STAGE_XCLIENT 19
#define SMTP_STAGE_AFTER_XCLIENT 20
#define SMTP_STAGE_OUT_OF_BAND 21
#define SMTP_STAGE_UNKNOWN 22
/* A custom state's own stage codes start here. */
#define SMTP_STAGE_CUSTOM 100

/* Bounce classes, as in the reference logs. */
#define SMTP_BOUNCE_UNDETERMINED 1
#define SMTP_BOUNCE_INVALID_RECIPIENT 10
#define SMTP_BOUNCE_SOFT 20
#define SMTP_BOUNCE_DNS_FAILURE 21
#define SMTP_BOUNCE_MAILBOX_FULL 22
#define SMTP_BOUNCE_TOO_LARGE 23
#define SMTP_BOUNCE_TIMEOUT 24
#define SMTP_BOUNCE_ADMIN_FAILURE 25
#define SMTP_BOUNCE_NO_RCPT 30
#define SMTP_BOUNCE_GENERIC 40
#define SMTP_BOUNCE_MAIL_BLOCK 50
#define SMTP_BOUNCE_SPAM_BLOCK 51
#define SMTP_BOUNCE_SPAM_CONTENT 52
#define SMTP_BOUNCE_PROHIBITED_ATTACHMENT 53
#define SMTP_BOUNCE_RELAY_DENIED 54
#define SMTP_BOUNCE_AUTO_REPLY 60
#define SMTP_BOUNCE_TRANSIENT 70
#define SMTP_BOUNCE_SUBSCRIBE 80
#define SMTP_BOUNCE_UNSUBSCRIBE 90
#define SMTP_BOUNCE_CHALLENGE_RESPONSE 100

/* Capabilities offered in the EHLO reply (conn->capabilities). */
#define SMTP_CAP_PIPELINING 0x1
#define SMTP_CAP_8BITMIME 0x2
#define SMTP_CAP_SMTPUTF8 0x4
#define SMTP_CAP_SIZE 0x8
#define SMTP_CAP_STARTTLS 0x10
#define SMTP_CAP_ENHANCEDSTATUSCODES 0x20
#define SMTP_CAP_CHUNKING 0x40
#define SMTP_CAP_DSN 0x80
#define SMTP_CAP_XCLIENT 0x100
#define SMTP_CAP_AUTH 0x200          /* AUTH offered, any mechanism */
#define SMTP_CAP_AUTH_PLAIN 0x400
#define SMTP_CAP_AUTH_LOGIN 0x800
#define SMTP_CAP_AUTH_CRAM_MD5 0x1000
#define SMTP_CAP_AUTH_XOAUTH2 0x2000

/*
 * Error codes, one list.  -1000..-1099: the transport or the protocol
 * failed.  -1100..-1199: the caller's request was refused.  A reply the
 * server sent is not an error: it is data, reported in the outcome.
 */
#define SMTP_EAGAIN -1000     /* would block, or output buffer full */
#define SMTP_ECLOSED -1001    /* the peer closed the connection */
#define SMTP_EIO -1002        /* a socket call failed */
#define SMTP_ETIMEOUT -1003   /* a deadline passed */
#define SMTP_EPROTO -1004     /* malformed reply or unexpected bytes */
#define SMTP_ETOOBIG -1005    /* a reply line or reply over its cap */
#define SMTP_ECONNECT -1006   /* the connection could not be opened */
#define SMTP_ESTATE -1007     /* a state broke its contract or raised */
#define SMTP_ENOMEM -1008     /* out of memory */
#define SMTP_ETLS -1009       /* TLS failed */
#define SMTP_ENULL -1100      /* a required pointer was NULL */
#define SMTP_ESIZE -1101      /* record built with another layout */
#define SMTP_ENAME -1102      /* invalid state name */
#define SMTP_EDUPNAME -1103   /* state name already registered */
#define SMTP_ENOCALLBACK -1104 /* state without a callback */
#define SMTP_ENOSTATE -1105   /* no registered state has that id */
#define SMTP_EFULL -1106      /* the state table is full */
#define SMTP_ETHREAD -1107    /* called from a thread not the owner */
#define SMTP_EBUILTIN -1108   /* built-in states cannot be removed */
#define SMTP_EBUSY -1109      /* connections are in the state */
#define SMTP_EINVAL -1110     /* an argument is invalid */
#define SMTP_EPLUGIN -1111    /* a plugin failed to load or init */

/*
 * Initialises the library and makes the calling thread its owner thread;
 * registers the built-in states.  Every other entry point initialises on
 * first use, so calling this is optional.  Returns 0, or SMTP_ETHREAD when
 * the library was already initialised by another thread.
 */
SMTP_API int smtp_library_init(void);

/*
 * Copies `state` (and its name) into the table and links it after the
 * state with id `insert_after` (-1: first, before the banner).  When two
 * states are inserted after the same id, the later one runs first.
 * Returns the new id (>= SMTP_FIRST_CUSTOM_ID), or -1 with the table
 * unchanged and the reason in smtp_last_error().  Owner thread.
 */
SMTP_API int register_smtp_client_state(smtp_state *state, int insert_after);

/*
 * Removes the custom state `id` from the chain, linking its predecessor
 * to its next.  Its name may be registered again; its id never is.
 * Returns 0, or a negative SMTP_E* code with the table unchanged:
 * SMTP_EBUILTIN, SMTP_ENOSTATE, SMTP_EBUSY or SMTP_ETHREAD.  Owner thread.
 */
SMTP_API int smtp_unregister_client_state(int id);

/*
 * Returns the registered state with `id`, or NULL when there is none (or
 * on another thread).  The record belongs to the table: read it, do not
 * write it.  It stays valid for the life of the process.  Owner thread.
 */
SMTP_API smtp_state *smtp_get_state(int id);

/*
 * Returns the head of the chain; following `next` visits every state of
 * the default path in order, ending at NULL.  Any thread: the chain is
 * published atomically and entries are never freed, though a concurrent
 * registration may or may not be seen by a walk already under way.
 */
SMTP_API smtp_state *smtp_get_state_machine(void);

/*
 * The state after `state` on the default path, or NULL at the end; reads
 * the link with acquire order, so a walk on another thread than the owner
 * sees only complete records.  Any thread.
 */
SMTP_API smtp_state *smtp_state_next(const smtp_state *state);

/*
 * The SMTP_E* code of the last failed call on this thread, or 0 when the
 * last call succeeded.  Thread-local.
 */
SMTP_API int smtp_last_error_code(void);

/*
 * A sentence naming the rule the last failed call on this thread broke,
 * or "" when it succeeded.  The string is thread-local and valid until
 * the next call into the library on this thread.
 */
SMTP_API const char *smtp_last_error(void);

/* The symbolic name of an SMTP_E* code ("SMTP_EDUPNAME"), or "unknown". */
SMTP_API const char *smtp_error_name(int code);

/* A short description of an SMTP_E* code; never NULL. */
SMTP_API const char *smtp_strerror(int code);

/*
 * Parses the EHLO reply in dc->last_reply into conn->capabilities
 * (SMTP_CAP_* bits) and conn->max_size (the SIZE value, 0 when absent
 * or unparsable).  Keywords match case-insensitively; unknown ones are
 * ignored.  Any thread.
 */
SMTP_API void smtp_parse_capabilities(delivery_construct *dc,
                                      connection *conn);

/* The text of a stage code ("during MAIL FROM"); "in unknown state" for
 * codes outside the table.  Any thread. */
SMTP_API const char *smtp_stage_name(int stage);

#ifdef __cplusplus
}
#endif

#endif /* SMTPSTATE_SMTP_H */
