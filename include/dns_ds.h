/*
 * dns_ds.h - the records of the smtpstate client engine.
 *
 * The state record (smtp_state) has the member order of the reference API
 * and is guarded by its first member, sizeof_smtp_state: a module built
 * against another layout is refused at registration.  The other records
 * (connection, connection_handle, delivery_construct, ...) are smtpstate's
 * own; their members are documented here and may grow at the end before
 * 1.0.  Functions that act on these records are declared in smtp.h.
 */
#ifndef SMTPSTATE_DNS_DS_H
#define SMTPSTATE_DNS_DS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Marks the library's exported symbols; everything else is hidden. */
#if defined(SMTPSTATE_BUILDING_LIBRARY)
#define SMTP_API __attribute__((visibility("default")))
#else
#define SMTP_API
#endif

/* Event bits passed to a state's callback in `events`. */
#define E_READ 0x1      /* the socket is readable */
#define E_WRITE 0x2     /* the socket is writable */
#define E_EXCEPTION 0x4 /* socket error or hang-up */
#define E_TIMEOUT 0x8   /* the connection's deadline passed */
#define E_ASYNC 0x10    /* a wake-up requested with smtp_conn_wake() */

/* What a callback (or read_smtp's *mask) asks to wait for next. */
#define SMTP_WANT_READ E_READ
#define SMTP_WANT_WRITE E_WRITE

/* Returned by a state's setup to pass straight on to its next state. */
#define SMTP_STATE_SKIP 0x100

/* Longest state name, in bytes, without the terminating NUL. */
#define SMTP_STATE_NAME_MAX 63

/* An index into the engine's source-address bindings. */
typedef int ec_binding_slot;

typedef struct _smtp_state smtp_state;
typedef struct _connection connection;
typedef struct _connection_handle connection_handle;
typedef struct _delivery_construct delivery_construct;
typedef struct _domain_record domain_record;
typedef struct _address_metrics address_metrics;
typedef struct _Event Event;
typedef struct smtp_reply smtp_reply;
typedef struct smtp_message smtp_message;

/*
 * Called for every event on a connection in the state.  Returns 0 only
 * after closing the connection through ec_smtp_closeconn() (see CLOSECONN
 * in smtp.h); otherwise SMTP_WANT_READ, SMTP_WANT_WRITE or both.
 */
typedef int (*SMTPStateCallback)(delivery_construct *dc, Event *e,
                                 connection *conn, connection_handle *connh,
                                 domain_record *domain,
                                 ec_binding_slot binding_slot,
                                 address_metrics *am, struct timeval *now,
                                 int events);

/*
 * Called when a connection enters the state; `self` is the table's record.
 * Returns 0 to go on, SMTP_STATE_SKIP to pass straight to the next state,
 * or a negative SMTP_E* code to fail the connection's unsettled messages
 * transiently; SMTP_WANT_* bits may be ORed in to choose the first event.
 */
typedef int (*SMTPStateSetup)(const smtp_state *self, delivery_construct *dc,
                              connection_handle *connh, struct timeval *now);

/* Called when a connection leaves the state or closes while in it. */
typedef void (*SMTPStateFree)(const smtp_state *self, connection *conn);

/* Maps the connection's progress in the state to a stage code (smtp.h). */
typedef int (*SMTPStateToStage)(const smtp_state *self, connection *conn);

/* Names a stage code for logs; returns a static string, never NULL. */
typedef const char *(*SMTPStageToString)(const smtp_state *self, int stage);

/*
 * One state of the client state machine.  The caller fills every member
 * but `id` and `next`, which the library sets; register_smtp_client_state()
 * copies the record and the name into static storage, so the caller may
 * free both afterwards.  `closure` is kept as the same pointer, never
 * copied or freed.  Members in the reference order; do not reorder.
 */
struct _smtp_state {
    unsigned int sizeof_smtp_state; /* the caller's sizeof(smtp_state) */
    char *name;                     /* 1-63 bytes of [A-Za-z0-9_.-] */
    int id;                         /* set by the library */
    int init_local_state;           /* conn->local_state on entry */
    SMTPStateSetup setup;           /* optional */
    SMTPStateCallback callback;     /* required */
    SMTPStateFree free;             /* optional */
    SMTPStateToStage tostage;       /* optional: stage 22 when absent */
    SMTPStageToString tostring;     /* optional: smtp_stage_name() */
    struct _smtp_state *next;       /* default next state; set by library */
    void *closure;                  /* the module's own data */
};

/* Where a connection goes.  Never NULL in a callback. */
struct _domain_record {
    const char *name;    /* the destination's name, for logs */
    const char *host;    /* numeric address or host name */
    int port;            /* TCP port */
    const char *helo;    /* the name sent in EHLO/HELO */
};

/* Running counters of one destination.  Never NULL in a callback. */
struct _address_metrics {
    uint64_t connections;  /* connections opened */
    uint64_t sessions_ok;  /* sessions that reached session-ready */
    uint64_t delivered;    /* recipients delivered */
    uint64_t transient;    /* recipients failed transiently */
    uint64_t permanent;    /* recipients failed permanently */
};

/* The readiness event registered for a connection's socket. */
struct _Event {
    int fd;                   /* the socket watched, -1 when none */
    int mask;                 /* E_READ | E_WRITE currently awaited */
    struct timeval deadline;  /* E_TIMEOUT fires then; zero when unset */
};

/*
 * A parsed reply.  `text` holds every line's text (after the code and
 * separator), lines joined by "\n"; it lives in the connection's reply
 * buffer and stays valid until the next read on the connection.
 */
struct smtp_reply {
    int code;              /* 200..599, or 0 when no reply decided it */
    char enhanced[16];     /* RFC 3463 code such as "5.1.1", or "" */
    const char *text;      /* NUL-terminated; "" when none */
    size_t text_len;       /* bytes in text */
    int lines;             /* lines in the reply */
};

/*
 * One live connection.  `state` is always an entry of the state table,
 * or NULL while the connection is being opened (stage 0).
 * `state_closure` and `local_state` belong to the current state.
 */
struct _connection {
    int fd;                       /* the socket, -1 when closed */
    int in_use;                   /* 0 idle, >0 carrying a batch */
    smtp_state *state;            /* current state */
    void *state_closure;          /* the current state's data */
    int local_state;              /* the current state's progress */
    struct timeval statetime;     /* when the state was entered */
    struct timeval startdelivery; /* when the current transaction began */
    int deliveries;               /* transactions completed here */
    int esmtp;                    /* 1 when EHLO was accepted */
    domain_record *domain;        /* where the connection goes */
    unsigned long capabilities;   /* SMTP_CAP_* bits from EHLO */
    unsigned long max_size;       /* the SIZE limit offered, 0 if none */
    int recipients;               /* RCPT TO commands issued */
    uint64_t session_id;          /* unique in the process, never 0 */
    void *engine;                 /* the engine's own; do not touch */
};

/* How a state reaches its connection; `conn` is never NULL in a call. */
struct _connection_handle {
    connection *conn;
    ec_binding_slot binding_slot;  /* source binding it was opened from */
    void *user_data;               /* the embedder's own */
};

/*
 * The per-connection delivery context.  `batch` lists the messages the
 * connection owns; `current` indexes the one in the open transaction
 * (-1 when none).  `last_reply` is the reply read_smtp() parsed last.
 */
struct _delivery_construct {
    Event *e;
    connection_handle *conn_handle;
    const smtp_message **batch;
    size_t batch_len;
    int current;
    smtp_reply last_reply;
};

#ifdef __cplusplus
}
#endif

#endif /* SMTPSTATE_DNS_DS_H */
