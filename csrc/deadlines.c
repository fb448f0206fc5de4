/*
 * deadlines.c - every connection's next deadline, in a binary min-heap.
 *
 * A connection is in the heap exactly when its deadline_ms is non-zero;
 * its heap_index is kept current on every move so that changing or
 * removing a deadline costs O(log n) without a search.  The heap is
 * ordered by heap_key, a lower bound of deadline_ms: a deadline that moves
 * later (every state change does) only updates deadline_ms, and the key
 * catches up when the entry reaches the top, so the common move costs no
 * sifting at all.
 */
#include <stdlib.h>

#include "deadlines.h"
#include "engine.h"

static void place(struct smtp__deadlines *h, size_t i, struct smtp__conn *c)
{
    h->items[i] = c;
    c->heap_index = i;
}

static void sift_up(struct smtp__deadlines *h, size_t i)
{
    struct smtp__conn *c = h->items[i];

    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->items[parent]->heap_key <= c->heap_key)
            break;
        place(h, i, h->items[parent]);
        i = parent;
    }
    place(h, i, c);
}

static void sift_down(struct smtp__deadlines *h, size_t i)
{
    struct smtp__conn *c = h->items[i];

    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->len)
            break;
        if (child + 1 < h->len &&
            h->items[child + 1]->heap_key < h->items[child]->heap_key)
            child++;
        if (c->heap_key <= h->items[child]->heap_key)
            break;
        place(h, i, h->items[child]);
        i = child;
    }
    place(h, i, c);
}

static void heap_remove(struct smtp__deadlines *h, struct smtp__conn *c)
{
    size_t i = c->heap_index;
    struct smtp__conn *last = h->items[--h->len];

    c->deadline_ms = 0;
    if (i == h->len)
        return;
    place(h, i, last);
    sift_down(h, i);
    sift_up(h, last->heap_index);
}

static int heap_grow(struct smtp__deadlines *h)
{
    size_t cap = h->cap ? h->cap * 2 : 64;
    struct smtp__conn **items = realloc(h->items, cap * sizeof(*items));

    if (items == NULL)
        return SMTP_ENOMEM;
    h->items = items;
    h->cap = cap;
    return 0;
}

int smtp__deadlines_set(struct smtp__deadlines *h, struct smtp__conn *c,
                        uint64_t at_ms)
{
    bool present = c->deadline_ms != 0;

    if (at_ms == 0) {
        if (present)
            heap_remove(h, c);
        return 0;
    }
    if (!present) {
        if (h->len == h->cap && heap_grow(h) != 0)
            return SMTP_ENOMEM;
        c->deadline_ms = c->heap_key = at_ms;
        place(h, h->len++, c);
        sift_up(h, c->heap_index);
        return 0;
    }
    c->deadline_ms = at_ms;
    if (at_ms < c->heap_key) {
        c->heap_key = at_ms;
        sift_up(h, c->heap_index);
    }
    return 0;
}

struct smtp__conn *smtp__deadlines_first(struct smtp__deadlines *h)
{
    /* Entries whose deadline moved later since they were keyed sink to
     * their place before the top is believed. */
    while (h->len > 0 && h->items[0]->heap_key < h->items[0]->deadline_ms) {
        h->items[0]->heap_key = h->items[0]->deadline_ms;
        sift_down(h, 0);
    }
    return h->len ? h->items[0] : NULL;
}

void smtp__deadlines_free(struct smtp__deadlines *h)
{
    free(h->items);
    h->items = NULL;
    h->len = h->cap = 0;
}
