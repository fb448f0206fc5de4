/*
 * stages.c - the connection stage codes and their log texts.
 *
 * Stages are the reference product's fixed list; a custom state may use
 * any of them or its own codes from SMTP_STAGE_CUSTOM up, which only its
 * own tostring can name.
 */
#include "internal.h"

static const char *const stage_names[] = {
    [SMTP_STAGE_NOT_CONNECTED] = "while not connected",
    [SMTP_STAGE_IDLE] = "while idle",
    [SMTP_STAGE_MAIL_FROM] = "during MAIL FROM",
    [SMTP_STAGE_AFTER_MAIL_FROM] = "after MAIL FROM",
    [SMTP_STAGE_RCPT_TO] = "during RCPT TO",
    [SMTP_STAGE_AFTER_RCPT_TO] = "after RCPT TO",
    [SMTP_STAGE_DATA] = "during DATA",
    [SMTP_STAGE_AFTER_DATA] = "after DATA",
    [SMTP_STAGE_BODY] = "while sending BODY",
    [SMTP_STAGE_CONFIRMATION] = "reading confirmation",
    [SMTP_STAGE_EHLO] = "during EHLO",
    [SMTP_STAGE_AFTER_EHLO] = "after EHLO",
    [SMTP_STAGE_BANNER] = "reading BANNER",
    [SMTP_STAGE_RSET] = "during RSET",
    [SMTP_STAGE_AFTER_RSET] = "after RSET",
    [SMTP_STAGE_STARTTLS] = "during STARTTLS",
    [SMTP_STAGE_AFTER_STARTTLS] = "after STARTTLS",
    [SMTP_STAGE_TLS_HANDSHAKE] = "handshaking TLS",
    [SMTP_STAGE_TLS_RENEGOTIATE] = "renegotiating TLS",
    [SMTP_STAGE_XCLIENT] = "during XCLIENT",
    [SMTP_STAGE_AFTER_XCLIENT] = "after XCLIENT",
    [SMTP_STAGE_OUT_OF_BAND] = "out of band bounce",
    [SMTP_STAGE_UNKNOWN] = "in unknown state",
};

SMTP_API const char *smtp_stage_name(int stage)
{
    if (stage < 0 || stage > SMTP_STAGE_UNKNOWN)
        return stage_names[SMTP_STAGE_UNKNOWN];
    return stage_names[stage];
}
