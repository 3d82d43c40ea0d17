/*
 * errcodes.h
 *		Every SQLSTATE of eightms's own, in one place; doc/error-codes.md
 *		lists them with what raises them.
 *
 * Class "E8" (errors a client acts on) and class "T8" (internal, never
 * seen by a client) are implementation-defined space: the standard leaves
 * classes starting with a letter past H to products.  Codes raised only by
 * the SQL in sql/ are named here too, so that a new code is picked against
 * all of them.  Everything else eightms raises uses PostgreSQL's own codes
 * (utils/errcodes.h).
 */
#ifndef EIGHTMS_ERRCODES_H
#define EIGHTMS_ERRCODES_H

/*
 * E8O01: the recipient has opted out of the account's messages
 * (sql/gateway_send.sql, eightms.queue_message, under send_message and
 * send_messages)
 */
#define ERRCODE_EIGHTMS_OPTED_OUT		MAKE_SQLSTATE('E','8','O','0','1')

/*
 * E8C01: delete_all_contacts was given a count other than the account's
 * number of contacts; nothing was deleted (sql/contacts.sql)
 */
#define ERRCODE_EIGHTMS_COUNT_MISMATCH	MAKE_SQLSTATE('E','8','C','0','1')

/*
 * E8C02: a campaign's state does not allow the move asked for (schedule,
 * pause, resume, cancel, change, delete); the message names its state
 * (sql/campaigns.sql, eightms.campaign_for_move)
 */
#define ERRCODE_EIGHTMS_CAMPAIGN_STATE	MAKE_SQLSTATE('E','8','C','0','2')

/* E8S01: a sealed value could not be opened (tampered, wrong context, unknown key) */
#define ERRCODE_EIGHTMS_UNSEAL_FAILED	MAKE_SQLSTATE('E','8','S','0','1')

/*
 * T8R01: a batch send's fast path did not insert every message it was
 * given; raised and caught inside eightms_api.send_messages, which then
 * settles each message alone.  No client ever sees it.
 */
#define ERRCODE_EIGHTMS_BATCH_RETRY		MAKE_SQLSTATE('T','8','R','0','1')

#endif							/* EIGHTMS_ERRCODES_H */
