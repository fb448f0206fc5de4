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

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

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
    size_t slow_until; /* copy_lines found no whole line before */
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

/* The first CR or LF in s[i, n), or n.  One pass looks for both, 16
 * octets at a time where SSE2 is there. */
static size_t find_line_end(const char *s, size_t i, size_t n)
{
#if defined(__SSE2__)
    const __m128i cr = _mm_set1_epi8('\r');
    const __m128i lf = _mm_set1_epi8('\n');

    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(s + i));
        int hits = _mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, cr),
                                                  _mm_cmpeq_epi8(v, lf)));
        if (hits != 0)
            return i + (size_t)__builtin_ctz((unsigned)hits);
    }
#endif
    while (i < n && s[i] != '\r' && s[i] != '\n')
        i++;
    return i;
}

/*
 * The common case, whole lines without a leading "." and without
 * folding: from in[i], each line's text and a CRLF for its end (CRLF,
 * bare CR or bare LF) are written, lines that already end with CRLF
 * copied together in one run, as long as each line fits the output
 * whole.  Leaves everything else (a line opening with ".", a CR at the
 * end of the input, which may yet be half of a CRLF, a line with no end
 * in the input) to encode_step, and writes nothing when the first line
 * is such; past a line with no end it is not called again (slow_until).
 */
static void copy_lines(struct smtp__body_encoder *enc, struct body_pass *p)
{
    const char *in = p->in;
    size_t run = p->i;  /* lines ended by CRLF from here to pos: unwritten */
    size_t pos = p->i;  /* the start of the next line */
    size_t o = p->o;

    for (;;) {
        bool line_start = pos > p->i || enc->at_line_start;
        size_t e, next;

        if (line_start && pos < p->inlen && in[pos] == '.')
            break;
        e = find_line_end(in, pos, p->inlen);
        if (e == p->inlen || (in[e] == '\r' && e + 1 == p->inlen)) {
            if (pos == p->i)
                p->slow_until = p->inlen;
            break;
        }
        next = in[e] == '\r' && in[e + 1] == '\n' ? e + 2 : e + 1;
        if (e - run + 2 > p->outcap - o)
            break;
        if (next - e == 1) {
            memcpy(p->out + o, in + run, e - run);
            o += e - run;
            p->out[o++] = '\r';
            p->out[o++] = '\n';
            run = next;
        }
        pos = next;
    }
    if (pos == p->i)
        return;
    memcpy(p->out + o, in + run, pos - run);
    p->o = o + (pos - run);
    p->i = pos;
    enc->empty = false;
    enc->at_line_start = true;
    enc->line_len = 0;
}

size_t smtp__body_encode(struct smtp__body_encoder *enc, const char *in,
                         size_t inlen, size_t *consumed, char *out,
                         size_t outcap)
{
    struct body_pass p = {
        .in = in, .inlen = inlen, .out = out, .outcap = outcap,
    };

    while (p.i < p.inlen && p.outcap - p.o >= SMTP__BODY_EXPANSION) {
        size_t before = p.i;

        if (enc->fold_at == 0 && !enc->after_cr && p.i >= p.slow_until)
            copy_lines(enc, &p);
        if (p.i == before)
            encode_step(enc, &p);
    }
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
