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
#define SMTP_EWORKER -1010    /* a worker process ended before reporting */
#define SMTP_ENULL -1100      /* a required pointer was NULL */
#define SMTP_ESIZE -1101      /* record built with another layout */
#define SMTP_ENAME -1102      /* invalid state name */
#define SMTP_EDUPNAME -1103   /* state name already registered */
#define SMTP_ENOCALLBACK -1104 /* state without a callback */
#define SMTP_ENOSTATE -1105   /* no registered state has that id */
#define SMTP_EFULL -1106      /* the state table is full */
#define SMTP_ETHREAD -1107    /* called from a thread not the owner */
#define SMTP_EBUILTIN -1108   /* built-in states cannot be removed */
#define SMTP_EBUSY -1109      /* in use: a state with connections, or
                                 the loop, entered from a callback */
#define SMTP_EINVAL -1110     /* an argument is invalid */
#define SMTP_EPLUGIN -1111    /* a plugin failed to load or init */

/* How a recipient's delivery ended (smtp_outcome.kind). */
#define SMTP_OUTCOME_DELIVERED 1 /* 2xx to the end of the data */
#define SMTP_OUTCOME_TRANSIENT 2 /* retry later */
#define SMTP_OUTCOME_PERMANENT 3 /* an explicit 5xx */

/* Deadlines, indexes of smtp_config.timeout_ms. */
#define SMTP_TIMEOUT_CONNECT 0
#define SMTP_TIMEOUT_BANNER 1
#define SMTP_TIMEOUT_EHLO 2
#define SMTP_TIMEOUT_MAIL 3
#define SMTP_TIMEOUT_RCPT 4
#define SMTP_TIMEOUT_DATA 5
#define SMTP_TIMEOUT_BODY 6    /* inactivity while sending the body */
#define SMTP_TIMEOUT_CONFIRM 7
#define SMTP_TIMEOUT_RSET 8
#define SMTP_TIMEOUT_QUIT 9
#define SMTP_TIMEOUT_TLS 10
#define SMTP_TIMEOUT_IDLE 11   /* an idle reused connection is QUIT then */
#define SMTP_TIMEOUT_CUSTOM 12 /* custom states, unless they set their own */
#define SMTP_TIMEOUT_COUNT 13

/* Structured events (smtp_event.type). */
#define SMTP_EVENT_CONNECT 1 /* the TCP connection is up */
#define SMTP_EVENT_STATE 2   /* the connection moved between states */
#define SMTP_EVENT_REPLY 3   /* a complete reply was read */
#define SMTP_EVENT_OUTCOME 4 /* a recipient's outcome was decided */
#define SMTP_EVENT_CLOSE 5   /* the connection closed; text is why */
#define SMTP_EVENT_WIRE 6    /* bytes on the wire (wire_trace only) */

/*
 * The reference close macro, for use inside a state callback.  It
 * expands to a whole return statement with its own semicolon, so it
 * cannot stand alone between an `if` and an `else`; use braces there.
 */
#define CLOSECONN \
    return ec_smtp_closeconn(dc, e, conn, connh, domain, binding_slot, am, \
                             now, __FILE__, __LINE__);

typedef struct smtp_scheduler smtp_scheduler;

/*
 * A message as the caller hands it over.  The caller owns every pointer
 * and must keep them valid until the last recipient's outcome arrived.
 * The body is `data`/`len`, or the file at `path` when path is non-NULL
 * (opened when its transaction starts).  Bytes are sent in DESIGN 9's
 * canonical form; the caller's buffer is never modified.
 */
struct smtp_message {
    const char *sender;             /* reverse-path without <>, "" for <> */
    const char *const *recipients;  /* forward-paths without <> */
    size_t nrecipients;             /* at least 1 */
    const char *data;               /* the RFC 5322 message */
    size_t len;
    const char *path;               /* or read the message from this file */
    uint64_t id;                    /* the caller's id, echoed in outcomes */
    void *user;                     /* the caller's own */
};

/* Where to deliver, and the settings a reused connection must share. */
typedef struct smtp_destination {
    const char *host;   /* numeric IPv4 or IPv6 address, or a host name */
    int port;           /* TCP port, 1-65535 */
    const char *helo;   /* EHLO/HELO name; NULL: "localhost" */
    const char *source; /* numeric source address to bind; NULL: any */
} smtp_destination;

/* One recipient's outcome; valid only during the outcome callback. */
typedef struct smtp_outcome {
    const smtp_message *message; /* the caller's record */
    size_t rcpt;                 /* index into message->recipients */
    int kind;                    /* SMTP_OUTCOME_* */
    int code;                    /* the reply that decided it, or 0 */
    const char *enhanced;        /* its enhanced code, or "" */
    const char *text;            /* its text, or why no reply decided it */
    int stage;                   /* SMTP_STAGE_* where it was decided */
    const char *state;           /* the deciding state's name */
    int bounce_class;            /* SMTP_BOUNCE_* */
    int error;                   /* SMTP_E* when no reply decided it */
    uint64_t session_id;         /* 0 when no connection was made */
} smtp_outcome;

/* One event; valid only during the event callback. */
typedef struct smtp_event {
    int type;              /* SMTP_EVENT_* */
    uint64_t session_id;
    const char *state;     /* the connection's state, "" while connecting */
    const char *from;      /* STATE: the state left, "" when none */
    int stage;
    int code;              /* REPLY: the code */
    int error;             /* CLOSE: SMTP_E* or 0 for a clean close */
    const char *text;      /* REPLY text, CLOSE reason, WIRE bytes */
    size_t len;            /* bytes in text */
    int sent;              /* WIRE: 1 sent, 0 received */
    const char *peer;      /* "host:port" */
    unsigned connections;  /* connections open after this event */
} smtp_event;

typedef void (*smtp_outcome_cb)(const smtp_outcome *outcome, void *arg);
typedef void (*smtp_event_cb)(const smtp_event *event, void *arg);

/* A scheduler's settings; smtp_config_init fills in the defaults. */
typedef struct smtp_config {
    size_t queue_capacity;        /* unsettled messages at most: 10000 */
    unsigned max_connections;     /* open at once, all destinations: 100 */
    unsigned max_connections_per_destination;        /* 20 */
    unsigned max_messages_per_connection;            /* 100 */
    unsigned max_recipients_per_transaction;         /* 100 */
    size_t fold_long_lines;       /* 0: unchanged; else fold past this */
    int wire_trace;               /* emit SMTP_EVENT_WIRE */
    unsigned timeout_ms[SMTP_TIMEOUT_COUNT];         /* DESIGN 9 */
    smtp_outcome_cb on_outcome;   /* required */
    void *outcome_arg;
    smtp_event_cb on_event;       /* optional */
    void *event_arg;
} smtp_config;

/* Fills `cfg` with the defaults of DESIGN 9.  Any thread. */
SMTP_API void smtp_config_init(smtp_config *cfg);

/*
 * Creates the scheduler.  The config is copied.  Returns NULL with the
 * reason in smtp_last_error() for a bad config (no on_outcome, a zero
 * limit) or when out of memory.  Owner thread.
 */
SMTP_API smtp_scheduler *smtp_scheduler_new(const smtp_config *cfg);

/*
 * Closes every connection at once and frees the scheduler.  Each message
 * not yet settled gets a transient outcome first, so none is lost.
 * Owner thread.  Called from inside a turn of this scheduler's own loop
 * (a callback), it frees nothing and leaves SMTP_EBUSY in
 * smtp_last_error_code().
 */
SMTP_API void smtp_scheduler_free(smtp_scheduler *sched);

/*
 * Queues `msg` for `dest`.  Returns 0 when queued (an outcome per
 * recipient will follow); SMTP_EAGAIN when queue_capacity messages are
 * unsettled (backpressure: run the loop, submit again); SMTP_EINVAL for
 * a bad envelope or destination (a control byte or angle bracket in an
 * address, a space outside a quoted local part, an address over 254
 * octets, a bad EHLO name, no recipient, no body or a body file that is
 * not a readable regular file, a bad port), with the reason in
 * smtp_last_error(); SMTP_ECLOSED after smtp_scheduler_drain.  Nothing is
 * sent or queued when it fails.  Owner thread.
 */
SMTP_API int smtp_scheduler_submit(smtp_scheduler *sched,
                                   const smtp_destination *dest,
                                   const smtp_message *msg);

/*
 * Runs the loop until every submitted message is settled, then QUITs the
 * idle connections and returns 0 once all are closed.  Returns a
 * negative SMTP_E* code when the loop itself fails.  Owner thread.
 *
 * The loop is not re-entrant: this and smtp_scheduler_run_once, called
 * while a turn of a loop is running on the thread (from a state, outcome
 * or event callback), do nothing and return SMTP_EBUSY, whichever
 * scheduler they are given.
 */
SMTP_API int smtp_scheduler_run(smtp_scheduler *sched);

/*
 * One turn of the loop for an embedder's own event loop: waits at most
 * timeout_ms (0: do not wait, -1: until an event or deadline) for
 * readiness, then handles what is ready and every deadline due.  With no
 * connection open and no message pending it returns at once.  Returns
 * the number of connections handled, or a negative SMTP_E* code:
 * SMTP_EBUSY from inside a turn (see smtp_scheduler_run).
 */
SMTP_API int smtp_scheduler_run_once(smtp_scheduler *sched, int timeout_ms);

/* The descriptor that becomes readable when run_once has work; put it
 * in the embedder's poll set.  Owner thread. */
SMTP_API int smtp_scheduler_fd(smtp_scheduler *sched);

/* Milliseconds until the next deadline (0: due now), or -1 when none. */
SMTP_API int smtp_scheduler_next_deadline(smtp_scheduler *sched);

/*
 * Stops taking work: submit fails with SMTP_ECLOSED, messages already
 * submitted are delivered, and connections QUIT as they become idle.
 */
SMTP_API void smtp_scheduler_drain(smtp_scheduler *sched);

/* Messages submitted and not yet settled. */
SMTP_API size_t smtp_scheduler_pending(const smtp_scheduler *sched);

/* Connections open now (connecting included). */
SMTP_API unsigned smtp_scheduler_connections(const smtp_scheduler *sched);

/* The most a connection's receive buffer can hold: one reply at its cap
 * plus one read.  A longer reply fails the connection (SMTP_ETOOBIG). */
#define SMTP_REPLY_BUFFER_MAX (65536 + 4096)

/* The largest receive buffer any connection of the scheduler has held,
 * in bytes; never above SMTP_REPLY_BUFFER_MAX. */
SMTP_API size_t smtp_scheduler_reply_high_water(const smtp_scheduler *sched);

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
 * Declares the custom state `id` an observer: its setup looks, then moves
 * on to its default next state (or closes the connection); it never sends
 * and never jumps elsewhere.  When every state between the transaction
 * anchor and MAIL FROM is an observer, PIPELINING keeps one round trip a
 * message: the next message's commands still go out with the previous
 * end of data, and the observers run for it, in order, once that body's
 * reply is in.  An observer that sends or reads a reply is refused
 * (SMTP_EPROTO; a reply read there would be its group's); one that waits
 * for an event or jumps elsewhere fails its connection's messages
 * transiently (SMTP_ESTATE).  Returns 0, or SMTP_ENOSTATE, SMTP_EBUILTIN,
 * SMTP_EINVAL (no setup) or SMTP_ETHREAD with nothing changed.  Owner
 * thread.
 */
SMTP_API int smtp_state_set_observer(int id);

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
 * Moves the connection to `state` (NULL: the current state's default
 * next): the old state's free, local_state = init_local_state, statetime
 * = now (NULL: now), then the new state's setup, which may pass straight
 * on (SMTP_STATE_SKIP) or fail the connection.  Called from a setup, it
 * takes effect when that setup returns.  Owner thread, during a callback
 * or setup of this connection.
 *
 * A custom state that jumps to SMTP_STATE_QUIT ends the session for its
 * own reasons: every message still on the connection is settled at once,
 * transiently, with error SMTP_ESTATE and a text naming the state; none
 * is handed to another connection.  (The engine hands a message to a new
 * connection only when its own session ended before the message's
 * transaction started, and at most 3 times: then it settles it, with the
 * text "the session ended before the transaction started, 3 times".)
 */
SMTP_API void smtp_next_state(delivery_construct *dc, connection_handle *connh,
                              smtp_state *state, struct timeval *now);

/*
 * Closes the connection: settles every message still on it (transiently,
 * with the last reply or the reason for the close), frees state data,
 * and records file:line as where the close came from.  Returns 0, the
 * value a callback returns after closing.  `now` may be NULL.
 */
SMTP_API int ec_smtp_closeconn(delivery_construct *dc, Event *e,
                               connection *conn, connection_handle *connh,
                               domain_record *domain,
                               ec_binding_slot binding_slot,
                               address_metrics *am, struct timeval *now,
                               const char *file, int line);

/*
 * Fails the connection: every message still on it gets a transient
 * outcome whose text is `reason` (error is an SMTP_E* code, e.g.
 * SMTP_ESTATE), then it closes.  Returns 0, the value a callback returns
 * after closing.  For a state that gives up for its own reasons.
 */
SMTP_API int smtp_conn_fail(connection *conn, int error, const char *reason);

/*
 * Reads one reply into dc->last_reply.  Returns the code (> 0) when it
 * is expected_code; minus the code (-200..-599) for another complete
 * reply; SMTP_E* (<= -1000) when the transport failed or the reply was
 * malformed or over a cap, or for an observer (smtp_state_set_observer:
 * SMTP_EPROTO, no reply is due to one); 0 when incomplete, with *mask set
 * to what to wait for.  Owner thread.
 */
SMTP_API int read_smtp(delivery_construct *dc, int expected_code,
                       struct timeval *now, int *mask);

/* As read_smtp, also accepting the extra codes, a list ended by a value
 * <= 0.  (The reference's variadic form.) */
SMTP_API int read_smtp2(delivery_construct *dc, int expected_code,
                        struct timeval *now, int *mask, int extra_codes, ...);

/* As read_smtp, accepting any of codes[0..n) (n >= 1); codes[0] plays
 * expected_code.  The form bindings use. */
SMTP_API int read_smtp_codes(delivery_construct *dc, struct timeval *now,
                             int *mask, const int *codes, size_t n);

/* The most bytes a connection's output buffer holds. */
#define SMTP_WRITE_BUFFER_MAX 65536

/*
 * Queues a command (or any bytes) on the connection's bounded output
 * buffer; the engine sends it after the callback returns.  Returns 0, or
 * SMTP_EAGAIN when it does not fit now (nothing is queued), SMTP_EPROTO
 * when the server sent bytes that no command asked for (unread replies
 * are still buffered) or inside the data phase, from DATA's 354 until the
 * reply to the end of data is read (no state may send there; the reason
 * is in smtp_last_error()), SMTP_EINVAL for a closed connection or for more
 * than SMTP_WRITE_BUFFER_MAX bytes, which never fit (then with the limit
 * named in smtp_last_error()).
 */
SMTP_API int smtp_conn_write(connection *conn, const void *buf, size_t len);

/*
 * Sets the connection's deadline to timeout_ms from now; E_TIMEOUT is
 * delivered then.  Entering a state sets its default deadline; a state
 * that keeps the connection after E_TIMEOUT must set a new one.
 */
SMTP_API void smtp_conn_set_deadline(connection *conn, unsigned timeout_ms);

/*
 * Decides recipients' outcomes: `message` indexes dc->batch (-1: every
 * unsettled message of the batch), `rcpt` a recipient of it (-1: all of
 * its unsettled recipients).  The first outcome of a recipient wins;
 * later ones are ignored.  `reply` may be NULL (then the connection's
 * last error explains it; with none, the outcome's error is SMTP_ESTATE
 * and its text names the current state).  Owner thread.
 *
 * `kind` is SMTP_OUTCOME_TRANSIENT or SMTP_OUTCOME_PERMANENT.  A message
 * is delivered only when the engine's confirmation reads a 2xx to the end
 * of its data (DESIGN 8), so SMTP_OUTCOME_DELIVERED, like any other
 * value, is refused here: nothing is settled, and smtp_last_error_code()
 * is SMTP_EINVAL with smtp_last_error() naming the rule (0 after an
 * accepted call).
 */
SMTP_API void smtp_outcome_set(delivery_construct *dc, int message, int rcpt,
                               int kind, const smtp_reply *reply, int stage);

/* Asks the engine to deliver E_ASYNC to the connection's state on its
 * next turn.  Owner thread. */
SMTP_API void smtp_conn_wake(connection *conn);

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
