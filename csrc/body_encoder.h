/*
 * body_encoder.h - the message body in DESIGN 9's canonical form, with
 * dot-stuffing, done on the fly over chunks of any size.
 *
 * Every bare CR and bare LF becomes CRLF before dot-stuffing, so no
 * <LF>.<LF> or <CR>.<CR> reaches a server; a line starting with "."
 * gets a second "."; the end adds CRLF when the body did not end with
 * one, then ".\r\n".  An empty body ends with ".\r\n" alone.  Optionally
 * a line longer than `fold_at` octets is broken with CRLF.
 */
#ifndef SMTPSTATE_BODY_ENCODER_H
#define SMTPSTATE_BODY_ENCODER_H

#include <stdbool.h>
#include <stddef.h>

/* The worst-case output of one input byte ("\n" then "." at a line
 * start); smtp__body_encode needs at least this much room to progress. */
#define SMTP__BODY_EXPANSION 4
/* Bytes smtp__body_finish may write. */
#define SMTP__BODY_END_MAX 5

struct smtp__body_encoder {
    bool at_line_start; /* the next output byte starts a line */
    bool after_cr;      /* the last input byte was a CR not yet written */
    bool empty;         /* nothing has been encoded yet */
    size_t line_len;    /* octets in the current output line */
    size_t fold_at;     /* 0: never fold */
};

/* Starts a body; fold_at 0 sends long lines unchanged (the default). */
void smtp__body_encoder_init(struct smtp__body_encoder *enc, size_t fold_at);

/*
 * Encodes a prefix of in[0..inlen) into out[0..outcap), stopping when
 * the input is used up or the output might not hold the next byte's
 * expansion.  Stores the input bytes used in *consumed and returns the
 * bytes written.  A CR at the end of `in` is held until the next call
 * (or finish) shows whether LF follows.
 */
size_t smtp__body_encode(struct smtp__body_encoder *enc, const char *in,
                         size_t inlen, size_t *consumed, char *out,
                         size_t outcap);

/*
 * Writes the end of the body: a held CR as CRLF, a final CRLF when
 * missing, then ".\r\n".  outcap must be at least SMTP__BODY_END_MAX.
 * Returns the bytes written.
 */
size_t smtp__body_finish(struct smtp__body_encoder *enc, char *out,
                         size_t outcap);

#endif /* SMTPSTATE_BODY_ENCODER_H */
