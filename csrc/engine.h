/*
 * engine.h - the scheduler's records, shared by the engine's files.
 *
 * A public `connection` is the first member of the engine's smtp__conn,
 * so the two convert by a cast; the same holds for delivery_construct
 * inside it.  Messages live in smtp__msg records owned by the scheduler
 * from submit until their last recipient is settled.
 */
#ifndef SMTPSTATE_ENGINE_H
#define SMTPSTATE_ENGINE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "body_encoder.h"
#include "internal.h"
#include "reply.h"

/* Bytes of a malformed reply quoted in the failure's text: enough to
 * recognise what answered (an HTTP server, TLS bytes), never the flood. */
#define SMTP__BAD_REPLY_EXCERPT 40

/* A recipient's progress (smtp__msg.rcpt_status). */
enum {
    RCPT_PENDING = 0,  /* not yet tried, or to try again */
    /* SMTP_OUTCOME_* (1..3): settled */
    RCPT_ACCEPTED = 4, /* accepted by RCPT in the open transaction */
    RCPT_SENT = 5,     /* RCPT sent in the open transaction, no reply yet */
    RCPT_DEFERRED = 6, /* 452: to try again in a new transaction */
    /* A flag on a settled status (by a state, or a refused MAIL FROM)
     * while its RCPT reply is still due: that reply is read for it, in its
     * place, and decides nothing. */
    RCPT_REPLY_DUE = 0x80,
};

struct smtp__dest;

/* How many connections may end holding a message before its transaction
 * started (a hand-over, DESIGN 8) before it is settled transiently: a
 * bound, so that nothing can move a message between connections for
 * ever. */
#define SMTP__MAX_HANDOVERS 3

/* Recipients whose status fits inside the message record. */
#define SMTP__INLINE_RCPTS 16

struct smtp__msg {
    const smtp_message *m;       /* the caller's record: not to be read
                                    after its last outcome */
    struct smtp__dest *dest;
    size_t nrcpt;                /* m->nrecipients, kept */
    bool released;               /* settled; freed at the end of the turn */
    unsigned char *rcpt_status;  /* one per recipient */
    size_t next_rcpt;            /* first recipient not yet tried */
    size_t unsettled;            /* recipients without an outcome */
    bool started;                /* a transaction was begun for it */
    uint64_t began_in;           /* session of its last MAIL FROM, or 0 */
    unsigned handovers;          /* connections that ended before that */
    struct smtp__msg *next;      /* destination queue link */
    /* last: the status of up to SMTP__INLINE_RCPTS recipients */
    unsigned char inline_status[SMTP__INLINE_RCPTS];
};

struct smtp__dest {
    char *host, *helo, *source;  /* with the port, what names it */
    bool helo_given;             /* helo was given, not the default */
    int port;
    char peer[80];               /* "host:port" for events */
    struct sockaddr_storage *addr;
    unsigned addrlen;
    domain_record domain;
    address_metrics metrics;
    struct smtp__msg *queue_head, *queue_tail;
    size_t queued;
    unsigned connections;        /* open or connecting */
    struct smtp__conn *idle;     /* idle connections, linked by idle_next */
    struct smtp__dest *next;
};

/* The open transaction of a connection. */
struct smtp__txn {
    int msg;                     /* batch index, -1 when none */
    size_t rcpt_begin, rcpt_end; /* recipients in this transaction */
    size_t rcpt_cursor;          /* no RCPT_SENT recipient before this */
    size_t send_pos;             /* no RCPT to send before this */
    size_t sent, replies;        /* RCPT commands sent and answered */
    size_t accepted;             /* recipients accepted so far */
    bool open;                   /* MAIL FROM accepted, not completed */
    bool pipelined;              /* MAIL, RCPTs and DATA went out at once */
    bool mail_refused;           /* replies still due are only read */
    bool stop_sending;           /* a 452: no more RCPTs this time */
    bool first_452;              /* the first recipient got 452 */
    const char *body;            /* the message bytes, when in memory */
    size_t body_len;             /* its length, or the file's at MAIL */
    int body_fd;                 /* the message file, -1 when in memory */
    uint64_t file_off;           /* first file byte not yet encoded */
    size_t body_pos;             /* in-memory bytes already encoded */
    bool body_done;              /* the terminator is queued */
    bool group_sent;             /* MAIL, RCPTs and DATA went out behind
                                    the previous message's end of data */
    bool data_due;               /* DATA went out, its reply is unread: a
                                    command now would land in the body
                                    once the 354 comes */
    bool in_data;                /* from DATA's 354 until the reply to the
                                    end of data is read: no command may go
                                    out, so no other reply can be taken
                                    for the body's */
    size_t body_unacked;         /* body bytes the server had not yet
                                    acknowledged at the last look */
    bool body_looked;            /* body_unacked was taken */
    struct smtp__body_encoder enc;
};

struct smtp__conn {
    connection pub;              /* first: a connection* is a smtp__conn* */
    delivery_construct dc;
    connection_handle handle;
    Event ev;
    smtp_scheduler *sched;
    struct smtp__dest *dest;

    /* reading: received bytes rbuf[rstart..rend) */
    char *rbuf;
    size_t rcap, rstart, rend;
    struct smtp__reply_scan scan;
    long scanned_reply;          /* a finished scan's result, not yet taken */

    /* writing: queued bytes wbuf[wstart..wend) */
    char *wbuf;
    size_t wcap, wstart, wend;

    /* encoded body bytes the socket did not take yet, and the chained
     * commands behind the last of them, body_buf[body_start..body_end)
     * of body_cap; allocated only when a send falls short */
    char *body_buf;
    size_t body_start, body_end, body_cap;

    int want;                    /* events the state waits for */
    int interest;                /* events registered with epoll */
    bool write_blocked;          /* a send fell short since EPOLLOUT */
    bool peer_closed;            /* epoll reported the server's close */
    bool connecting;
    bool closed;
    bool in_dispatch;
    bool transitioning;
    smtp_state *jump_to;         /* set by smtp_next_state inside a setup */
    const struct timeval *dispatch_now; /* the clock a dispatch read, while
                                           it runs */
    int setup_want;              /* first events asked by the last setup */
    bool need_rset;
    /* The next transaction, its group already sent behind the end of the
     * current message's data (RFC 2920: content may begin a group); the
     * anchor takes it up once the confirmation has read its reply. */
    bool has_next;
    bool chaining;               /* the engine itself writes that group */
    struct smtp__msg *next_msg;
    struct smtp__txn next_txn;
    bool closed_by_state;
    bool transitioned;
    const smtp_state *quit_from; /* the state that jumped to QUIT */
    int pending_events;          /* delivered on the next turn */
    bool on_wake_list;
    unsigned messages_started;
    unsigned transactions;       /* MAIL FROM replies read */
    int error;                   /* the reason for failing, SMTP_E* */
    char error_text[256];        /* room for a malformed reply's excerpt */
    /* The start of the last malformed reply line, for the reason text */
    char bad_reply[SMTP__BAD_REPLY_EXCERPT];
    unsigned char bad_reply_len;

    uint64_t deadline_ms;        /* 0: none */
    uint64_t heap_key;           /* its place in the heap, <= deadline_ms */
    size_t heap_index;           /* position in the deadline heap */
    uint64_t deadline_at_event;  /* the deadline when E_TIMEOUT fired */

    struct smtp__msg **batch;    /* messages this connection owns */
    const smtp_message **batch_pub; /* dc->batch: the caller records */
    size_t batch_len, batch_cap;
    struct smtp__txn txn;

    struct smtp__conn *idle_next;
    struct smtp__conn *idle_prev; /* both NULL when not on the idle list */
    bool on_idle_list;
    struct smtp__conn *wake_next;
    struct smtp__conn *all_prev, *all_next;
};

/* True for a state registered by a module, not the engine's own. */
static inline bool smtp__state_is_custom(const smtp_state *state)
{
    return state != NULL && state->id > SMTP_BUILTIN_ID_MAX;
}

/* Converts a public pointer back to its engine record. */
static inline struct smtp__conn *smtp__conn_of(connection *conn)
{
    return (struct smtp__conn *)conn;
}

static inline struct smtp__conn *smtp__conn_of_dc(delivery_construct *dc)
{
    return smtp__conn_of(dc->conn_handle->conn);
}

/* Milliseconds on the monotonic clock. */
uint64_t smtp__now_ms(void);
void smtp__timeval_now(struct timeval *tv);

/* A time smtp__timeval_now gave, in the milliseconds of smtp__now_ms. */
static inline uint64_t smtp__timeval_ms(const struct timeval *tv)
{
    return (uint64_t)tv->tv_sec * 1000u + (uint64_t)tv->tv_usec / 1000u;
}

/* Bytes in each half of the scheduler's scratch buffer. */
#define SMTP__SCRATCH_HALF 65536

/* scheduler.c */
const smtp_config *smtp__config(const smtp_scheduler *sched);
/* The scheduler's scratch buffer, 2 * SMTP__SCRATCH_HALF bytes, shared
 * by every connection for work that ends within one callback; NULL when
 * it cannot be allocated. */
char *smtp__scratch(smtp_scheduler *sched);
void smtp__emit(struct smtp__conn *c, int type, int code, int error,
                const char *text, size_t len);
void smtp__emit_state(struct smtp__conn *c, const smtp_state *from);
void smtp__emit_wire(struct smtp__conn *c, const char *bytes, size_t len,
                     int sent);
void smtp__deadline_set(struct smtp__conn *c, uint64_t at_ms);
void smtp__conn_want(struct smtp__conn *c, int want);
/* Delivers `events` to the connection's state on the loop's wake phase. */
void smtp__wake(struct smtp__conn *c, int events);
struct smtp__msg *smtp__dest_pop(struct smtp__dest *dest);
void smtp__dest_push_front(struct smtp__dest *dest, struct smtp__msg *msg);
/* A transaction whose commands went out behind the previous message's end
 * of data and whose own data never went: back to the queue as never
 * tried, since a fault of the previous transaction (an extra reply, a
 * close after its reply) must not cost it.  Called before a failure
 * settles the batch. */
void smtp__conn_give_back_chained(struct smtp__conn *c);
bool smtp__draining(const smtp_scheduler *sched);
void smtp__msg_release(smtp_scheduler *sched, struct smtp__msg *msg);
void smtp__conn_mark_idle(struct smtp__conn *c, bool idle);
void smtp__sched_forget(struct smtp__conn *c);
void smtp__note_reply_buffer(smtp_scheduler *sched, size_t bytes);

/* connection.c */
int smtp__conn_fail(struct smtp__conn *c, int error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void smtp__conn_close(struct smtp__conn *c);
int smtp__conn_flush(struct smtp__conn *c);
void smtp__conn_enter_first_state(struct smtp__conn *c);
void smtp__conn_dispatch(struct smtp__conn *c, int events);
int smtp__conn_stage(struct smtp__conn *c);
int smtp__conn_batch_add(struct smtp__conn *c, struct smtp__msg *msg);
void smtp__conn_requeue_waiting(struct smtp__conn *c, int error,
                                const char *why);
void smtp__conn_batch_compact(struct smtp__conn *c);

/* outcome.c */
void smtp__settle(struct smtp__conn *c, struct smtp__msg *msg, size_t rcpt,
                  int kind, const smtp_reply *reply, int stage);
void smtp__settle_unsettled(struct smtp__conn *c, int kind,
                            const smtp_reply *reply, int stage);
void smtp__settle_without_conn(smtp_scheduler *sched, struct smtp__msg *msg,
                               int error, const char *text);
int smtp__bounce_class(int kind, const smtp_reply *reply, int error,
                       int stage);

/* reader.c */
bool smtp__conn_has_unread(struct smtp__conn *c);

/* client_transaction.c */
void smtp__txn_release_body(struct smtp__conn *c);

/* builtin_states.c */
unsigned smtp__state_timeout_kind(const smtp_state *state);

#endif /* SMTPSTATE_ENGINE_H */
