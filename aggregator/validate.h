/* validate.h: checks a decoded AgentRequest before anything of it is
 * stored: sizes, counts, string lengths, identifiers and time sanity.
 * Reasons are short stable names; ingest counts rejections by them. */
#ifndef AGG_VALIDATE_H
#define AGG_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "spikehound.pb-c.h"

/* struct agg_limits holds the acceptance limits (see agg_limits_default). */
struct agg_limits {
	int64_t max_future_ns; /* how far ahead of our clock a time may be */
	int64_t max_age_ns;    /* how far behind */
	size_t max_string;     /* generic string field, bytes */
	size_t max_cmdline;
	size_t max_items;      /* processes, stacks, metrics per message */
	size_t max_messages;   /* messages per request */
	int64_t max_duration_ns;
};

/* agg_limits_default fills l with the defaults: 1 h future, 30 d past,
 * 4 KiB strings, 8 KiB cmdlines, 100,000 items, 1,000 messages, 1 h spans. */
void agg_limits_default(struct agg_limits *l);

/* agg_validate_request checks req (decoded; strings are sanitized in place
 * to valid UTF-8 without control bytes that PostgreSQL refuses). Returns
 * NULL when the request as a whole is acceptable, else the reason it is
 * not. msg_reasons (req->n_messages entries, caller-allocated) receives
 * NULL for each acceptable message, else its rejection reason. */
const char *agg_validate_request(Spikehound__AgentRequest *req, int64_t now_ns,
				 const struct agg_limits *l, const char **msg_reasons);

/* agg_is_uuid tells whether s is a UUID, dashed or as 32 hex digits. */
int agg_is_uuid(const char *s);

/* agg_sanitize_utf8 replaces, in place, bytes that are not valid UTF-8 by
 * '?'. Returns how many bytes it replaced. */
size_t agg_sanitize_utf8(char *s);

#endif
