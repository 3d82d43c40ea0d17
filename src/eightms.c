/*
 * eightms.c
 *		Module entry: _PG_init and the GUCs that belong to no one capability.
 *
 * _PG_init calls each capability's init, and nothing else calls into this
 * file: the includes below are the top of a tree.
 *
 * The library must be loaded through shared_preload_libraries: the bridge
 * worker, its shared memory and the secrets exist only then.  Loaded by a
 * backend on first use instead, the functions that need those refuse with
 * SQLSTATE 55000 and a hint (src/preload.c), and so does CREATE EXTENSION;
 * the others (phone numbers, SMS encoding, ...) work.
 */
#include "postgres.h"

#include "commands/extension.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"

#include "bridge/bridge.h"
#include "auth/claims.h"
#include "auth/jwt.h"
#include "preload.h"
#include "secrets/seal.h"
#include "secrets/secrets.h"

PG_MODULE_MAGIC;

/* How long an invitation to join an account stays usable, in seconds. */
static int	eightms_invitation_ttl = 7 * 24 * 60 * 60;

/* Refuse sign-ins whose JWT does not say email_verified: true. */
static bool eightms_require_verified_email = true;

/* The gateway: online window, battery floor, claim lease, attempts, message lifetime. */
static int	eightms_online_window = 300;
static int	eightms_min_battery_pct = 20;
static int	eightms_message_lease = 120;
static int	eightms_message_max_attempts = 3;
static int	eightms_message_ttl = 24 * 60 * 60;
static int	eightms_routing_queue_cap = 1000;

void		_PG_init(void);

void
_PG_init(void)
{
	eightms_preload_init();

	/*
	 * Installing the extension into a server that did not preload it would
	 * give tables no worker serves and functions that refuse: say so at
	 * CREATE EXTENSION, which loads the library to check its functions.
	 * Raised before anything is defined, the load is retried, and refused
	 * again, on the next use.
	 */
	if (creating_extension && !eightms_preloaded())
		eightms_require_preload("CREATE EXTENSION eightms");

	DefineCustomIntVariable("eightms.invitation_ttl",
							"How long an invitation to join an account stays valid.",
							"An invitation not accepted within this time can no longer be used.",
							&eightms_invitation_ttl,
							7 * 24 * 60 * 60,
							60,
							90 * 24 * 60 * 60,
							PGC_SUSET,
							GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomBoolVariable("eightms.require_verified_email",
							 "Require \"email_verified\": true in the caller's JWT to create or join an account.",
							 "When on, a JWT whose email_verified claim is anything but JSON true (or missing) cannot create or join an account.",
							 &eightms_require_verified_email,
							 true,
							 PGC_SUSET,
							 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("eightms.online_window",
							"A phone is online when its last heartbeat is this recent.",
							NULL, &eightms_online_window, 300, 10, 24 * 60 * 60,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("eightms.min_battery_pct",
							"Battery (percent) a phone needs, unless charging, to be routed new conversations and offline phones' queues.",
							"A phone at or below it keeps its own conversations and may still claim.",
							&eightms_min_battery_pct, 20, 0, 100,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("eightms.routing_queue_cap",
							"Routing counts each phone's queue up to this many messages.",
							"Longer queues count as this long, so that routing a new conversation does not read a whole campaign's backlog; phones past it share new conversations evenly.",
							&eightms_routing_queue_cap, 1000, 1, 1000000,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("eightms.message_lease",
							"How long a phone holds a claimed message before it goes back to the queue.",
							NULL, &eightms_message_lease, 120, 5, 24 * 60 * 60,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("eightms.message_max_attempts",
							"Claims of an outbound message whose lease ran out before it fails.",
							NULL, &eightms_message_max_attempts, 3, 1, 100,
							PGC_SUSET, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("eightms.message_ttl",
							"How long an outbound message may wait to be sent before it expires.",
							NULL, &eightms_message_ttl, 24 * 60 * 60, 60, 30 * 24 * 60 * 60,
							PGC_SUSET, GUC_UNIT_S, NULL, NULL, NULL);

	/* The claims the pre-request hook verified, and the keys it verifies with. */
	eightms_claims_init();
	eightms_jwt_keys_init();

	/*
	 * Secrets from the key file or the environment: the seal key ring and
	 * the JWT secret; then no trace of them is left in either.
	 */
	eightms_secrets_init();
	eightms_seal_init();
	eightms_jwt_init();
	eightms_secrets_forget();
	eightms_check_statement_logging();

	/* The HTTP bridge worker (registered only when preloaded). */
	eightms_bridge_init();

	MarkGUCPrefixReserved("eightms");
}
