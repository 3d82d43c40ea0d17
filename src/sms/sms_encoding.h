/*
 * sms_encoding.h
 *		How an SMS body is encoded and split: GSM 03.38 7-bit (with its
 *		extension table) or UCS-2, and the number of segments.  Plain C.
 */
#ifndef SMS_ENCODING_H
#define SMS_ENCODING_H

#include <stdbool.h>
#include <stddef.h>

typedef enum SmsEncoding
{
	SMS_GSM7,
	SMS_UCS2
} SmsEncoding;

typedef struct SmsInfo
{
	SmsEncoding encoding;
	int			segments;
	int			characters;		/* Unicode code points */
	int			units;			/* septets (GSM-7) or UTF-16 code units (UCS-2) */
} SmsInfo;

/* Analyse a UTF-8 body; false when it is not valid UTF-8. */
extern bool sms_analyze(const char *utf8, size_t len, SmsInfo *info);

/*
 * Fold typographic look-alikes (curly quotes, dashes, ellipsis, non-breaking
 * and other spaces) to their GSM-7 forms.  out needs len bytes; returns the
 * folded length, or (size_t) -1 on invalid UTF-8.
 */
extern size_t sms_fold(const char *utf8, size_t len, char *out);

#endif							/* SMS_ENCODING_H */
