/*
 * body_encoder.c - the message body in canonical form, dot-stuffed, over
 * chunks of any size (DESIGN 9).
 *
 * The module owns only the encoder record.  Invariants between calls:
 * every consumed byte is written except a held CR (after_cr), which is
 * written as CRLF once the next byte, or finish, is seen; line_len counts
 * the octets written on the current output line, a stuffed "." included;
 * at_line_start is true exactly when the last octet written ends a line
 * (or nothing was written).  A step starts only with
 * SMTP__BODY_EXPANSION octets free: it consumes at least one input byte,
 * writes at most three octets of line ends and stuffing, then copies a
 * run of ordinary octets cut to the room left, so it never overruns.
 */
#include <string.h>

#include "body_encoder.h"

/* One encode call: the input and output cursors, and where the next CR
 * and LF may lie.  No CR occurs in in[i, next_cr) and no LF in
 * in[i, next_lf), so each input byte is searched at most once per call
 * even when CRs and LFs lie far apart. */
struct body_pass {
    const char *in;
    size_t inlen;
    size_t i;
    char *out;
    size_t outcap;
    size_t o;
    size_t next_cr;
    size_t next_lf;
};

void smtp__body_encoder_init(struct smtp__body_encoder *enc, size_t fold_at)
{
    enc->at_line_start = true;
    enc->after_cr = false;
    enc->empty = true;
    enc->line_len = 0;
    enc->fold_at = fold_at;
}

static void put_crlf(struct smtp__body_encoder *enc, struct body_pass *p)
{
    p->out[p->o++] = '\r';
    p->out[p->o++] = '\n';
    enc->at_line_start = true;
    enc->line_len = 0;
}

static size_t min_size(size_t a, size_t b)
{
    return a < b ? a : b;
}

static size_t find_byte(const struct body_pass *p, char c, size_t limit)
{
    const char *hit = memchr(p->in + p->i, c, limit - p->i);

    return hit != NULL ? (size_t)(hit - p->in) : limit;
}

/* The end of the run of ordinary bytes starting at in[i], at most
 * `limit`.  A search reaching only `limit` leaves a bound, not a hit; a
 * later run may stop there early, which costs a step, never a byte. */
static size_t run_end(struct body_pass *p, size_t limit)
{
    if (p->next_cr <= p->i)
        p->next_cr = find_byte(p, '\r', limit);
    if (p->next_lf <= p->i)
        p->next_lf = find_byte(p, '\n', limit);
    return min_size(min_size(p->next_cr, p->next_lf), limit);
}

/* Octets the current line may still take before a fold.  At least one:
 * with fold_at 1 the stuffing "." fills the line, and the "." it doubles
 * must still follow before the fold. */
static size_t fold_room(const struct smtp__body_encoder *enc)
{
    if (enc->line_len >= enc->fold_at)
        return 1;
    return enc->fold_at - enc->line_len;
}

/* Copies the ordinary bytes from in[i] on, as many as the output, the
 * input and the fold width allow; in[i] is known to be ordinary. */
static void copy_run(struct smtp__body_encoder *enc, struct body_pass *p)
{
    size_t room = min_size(p->outcap - p->o, p->inlen - p->i);
    size_t end;
    size_t n;

    if (enc->fold_at > 0)
        room = min_size(room, fold_room(enc));
    end = run_end(p, p->i + room);
    n = end - p->i;
    memcpy(p->out + p->o, p->in + p->i, n);
    p->o += n;
    p->i += n;
    enc->line_len += n;
    enc->at_line_start = false;
}

/* Writes one ordinary byte and the run after it: the fold comes first so
 * that a "." opening the new line is stuffed like any other. */
static void put_text(struct smtp__body_encoder *enc, struct body_pass *p)
{
    if (enc->fold_at > 0 && enc->line_len >= enc->fold_at)
        put_crlf(enc, p);
    if (enc->at_line_start && p->in[p->i] == '.') {
        p->out[p->o++] = '.';
        enc->line_len++;
    }
    copy_run(enc, p);
}

/* Consumes at least one input byte.  A held CR is settled first: it
 * becomes CRLF whatever follows, and an LF after it is part of it. */
static void encode_step(struct smtp__body_encoder *enc, struct body_pass *p)
{
    char c = p->in[p->i];

    enc->empty = false;
    if (enc->after_cr) {
        enc->after_cr = false;
        put_crlf(enc, p);
        if (c == '\n') {
            p->i++;
            return;
        }
    }
    if (c == '\r') {
        enc->after_cr = true;
        p->i++;
    } else if (c == '\n') {
        put_crlf(enc, p);
        p->i++;
    } else {
        put_text(enc, p);
    }
}

size_t smtp__body_encode(struct smtp__body_encoder *enc, const char *in,
                         size_t inlen, size_t *consumed, char *out,
                         size_t outcap)
{
    struct body_pass p = {
        .in = in, .inlen = inlen, .out = out, .outcap = outcap,
    };

    while (p.i < p.inlen && p.outcap - p.o >= SMTP__BODY_EXPANSION)
        encode_step(enc, &p);
    *consumed = p.i;
    return p.o;
}

size_t smtp__body_finish(struct smtp__body_encoder *enc, char *out,
                         size_t outcap)
{
    size_t o = 0;

    /* A short buffer is the caller's bug; writing nothing keeps it from
     * becoming a buffer overflow, and the encoder stays as it was. */
    if (outcap < SMTP__BODY_END_MAX)
        return 0;
    if (enc->after_cr || !enc->at_line_start) {
        out[o++] = '\r';
        out[o++] = '\n';
    }
    out[o++] = '.';
    out[o++] = '\r';
    out[o++] = '\n';
    enc->after_cr = false;
    enc->at_line_start = true;
    enc->line_len = 0;
    return o;
}
