/*
 * deadlines.h - a binary min-heap of connections ordered by deadline.
 */
#ifndef SMTPSTATE_DEADLINES_H
#define SMTPSTATE_DEADLINES_H

#include <stddef.h>
#include <stdint.h>

struct smtp__conn;

struct smtp__deadlines {
    struct smtp__conn **items;
    size_t len, cap;
};

/* Adds, moves or (at_ms 0) removes c's deadline.  Returns 0 or
 * SMTP_ENOMEM (the heap is then unchanged). */
int smtp__deadlines_set(struct smtp__deadlines *h, struct smtp__conn *c,
                        uint64_t at_ms);

/* The connection with the earliest deadline, or NULL.  Not const: it
 * settles entries whose deadline moved later. */
struct smtp__conn *smtp__deadlines_first(struct smtp__deadlines *h);

void smtp__deadlines_free(struct smtp__deadlines *h);

#endif /* SMTPSTATE_DEADLINES_H */
