/*
 * try_uuid.h
 *		Reading a uuid without raising (src/util/try_uuid.c).
 */
#ifndef EIGHTMS_TRY_UUID_H
#define EIGHTMS_TRY_UUID_H

#include "utils/uuid.h"

/* The uuid the len bytes at s spell, as uuid_in reads it. */
extern bool eightms_parse_uuid(const char *s, size_t len, pg_uuid_t *out);

#endif							/* EIGHTMS_TRY_UUID_H */
