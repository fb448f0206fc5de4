/*
 * unit_deadlines.c - the deadline heap (csrc/deadlines.c) against a
 * plain scan of every connection's deadline.
 *
 * Pseudo-random operations from a fixed seed move deadlines later (the
 * heap's lazy case), earlier, to zero (removal) and add new ones; after
 * each, the heap's first entry must carry the earliest deadline of all,
 * and every connection must be in the heap exactly when its deadline is
 * set.  Firing (taking the first off, as the loop does) is mixed in.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ctest.h"
#include "deadlines.h"
#include "engine.h"

#define CONNS 64
#define STEPS 20000

static uint32_t rng_state = 0x9e3779b9u;

static uint32_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static uint64_t earliest(struct smtp__conn *const *conns)
{
    uint64_t min = 0;

    for (int i = 0; i < CONNS; i++) {
        uint64_t d = conns[i]->deadline_ms;
        if (d != 0 && (min == 0 || d < min))
            min = d;
    }
    return min;
}

/* Every connection with a deadline sits at its own index, and no other. */
static bool membership_holds(const struct smtp__deadlines *h,
                             struct smtp__conn *const *conns)
{
    size_t with = 0;

    for (int i = 0; i < CONNS; i++) {
        const struct smtp__conn *c = conns[i];
        if (c->deadline_ms == 0)
            continue;
        with++;
        if (c->heap_index >= h->len || h->items[c->heap_index] != c)
            return false;
    }
    return with == h->len;
}

static void check_against_scan(void)
{
    struct smtp__deadlines h = {0};
    struct smtp__conn *conns[CONNS];
    uint64_t clock = 1000;

    for (int i = 0; i < CONNS; i++)
        conns[i] = calloc(1, sizeof(*conns[i]));
    for (int step = 0; step < STEPS; step++) {
        struct smtp__conn *c = conns[rng_next() % CONNS];
        uint32_t op = rng_next() % 10;

        clock += rng_next() % 3;
        if (op < 5) /* a state change: later, as the engine's usually are */
            CHECK(smtp__deadlines_set(&h, c, clock + 100 +
                                      rng_next() % 5000) == 0);
        else if (op < 7) /* a shorter one: the idle deadline, a custom */
            CHECK(smtp__deadlines_set(&h, c, clock + rng_next() % 50) ==
                  0);
        else if (op < 8)
            CHECK(smtp__deadlines_set(&h, c, 0) == 0);
        else if (op < 9) {
            struct smtp__conn *first = smtp__deadlines_first(&h);
            if (first != NULL && first->deadline_ms <= clock + 200)
                CHECK(smtp__deadlines_set(&h, first, 0) == 0);
        }

        struct smtp__conn *first = smtp__deadlines_first(&h);
        uint64_t want = earliest(conns);
        CHECK(want == 0 ? first == NULL
                        : first != NULL && first->deadline_ms == want);
        CHECK(membership_holds(&h, conns));
    }
    smtp__deadlines_free(&h);
    for (int i = 0; i < CONNS; i++)
        free(conns[i]);
}

int main(void)
{
    check_against_scan();
    CTEST_END();
}
