/* spool.h: the agent's bounded on-disk spool of unacknowledged messages.
 *
 * Every message the agent makes (a serialized AgentMessage) is appended here
 * before it is sent, and removed only when the aggregator acknowledges it, so
 * messages survive aggregator outages and agent restarts. Each entry is one
 * file named after a persisted, monotonically increasing 20-digit counter
 * ("00000000000000000042.msg"), so a directory listing sorts in append order
 * across restarts. The spool also hands out the per-boot sequence numbers
 * (reserved ahead in blocks in the file "state", so they are never reused
 * after a restart).
 *
 * The spool is bounded: an append that does not fit drops the oldest
 * summaries first, then (when only events and chunks remain) the oldest
 * entries of any kind, and counts every drop so the next message can say so
 * (AgentMessage.dropped_before). A full file system (before the cap is
 * reached: the disk is shared) is met the same way: the oldest entries make
 * room for the newest, counted as drops and in agent_spool_disk_full_total.
 * An append fails only when nothing is left to drop.
 *
 * All functions are thread-safe (one internal mutex): typically a collector
 * thread appends while the sender thread peeks and removes.
 */
#ifndef AGENT_SPOOL_H
#define AGENT_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* AGENT_SPOOL_HDR_SIZE is the fixed header of an entry file: an entry takes
 * AGENT_SPOOL_HDR_SIZE + strlen(boot_id) + len bytes of the spool's cap. */
#define AGENT_SPOOL_HDR_SIZE 24

/* AGENT_SPOOL_BOOT_ID_MAX is the longest boot id accepted (a UUID is 36). */
#define AGENT_SPOOL_BOOT_ID_MAX 63

/* AGENT_SPOOL_SEQ_BLOCK is how many sequence numbers (and file counters) are
 * reserved with one write of the state file. */
#define AGENT_SPOOL_SEQ_BLOCK 1000

/* agent_spool_kind is what an entry carries (the AgentMessage body). Drops
 * take summaries first. */
enum agent_spool_kind {
	AGENT_SPOOL_SUMMARY = 1,
	AGENT_SPOOL_EVENT = 2,
	AGENT_SPOOL_CHUNK = 3,
};

/* agent_spool is the spool itself, opaque; see agent_spool_open. */
struct agent_spool;

/* agent_spool_msg is one entry read back for sending. */
struct agent_spool_msg {
	int kind;                                /* enum agent_spool_kind */
	char boot_id[AGENT_SPOOL_BOOT_ID_MAX + 1];
	uint64_t seq;
	void *data;                              /* serialized AgentMessage, owned by the batch */
	size_t len;
};

/* agent_spool_batch holds the entries agent_spool_peek returned, oldest
 * first. It is embedded by the caller, must be zero-initialized before its
 * first use, and owns msgs and every msgs[i].data until agent_spool_batch_free. */
struct agent_spool_batch {
	struct agent_spool_msg *msgs;
	size_t n;
	size_t bytes;                            /* sum of msgs[i].len */
};

/* agent_spool_open opens (creating it and its parents, mode 0700) the spool
 * directory dir, holding at most cap_bytes of entry files; with do_fsync every
 * entry file and the directory are fsynced before an append returns (the
 * sequence reservation is always fsynced). Existing entries are loaded in
 * append order; half-written temp files are deleted; corrupt or truncated
 * entries are deleted and counted (agent_spool_corrupt_total); if the cap is
 * smaller than what the directory holds, the excess is dropped as an append
 * would. dir is copied. On success *out is a spool the caller frees with
 * agent_spool_close. Returns 0 or a negative errno. */
int agent_spool_open(const char *dir, uint64_t cap_bytes, bool do_fsync, struct agent_spool **out);

/* agent_spool_close frees sp (NULL is a no-op). The entries stay on disk for
 * the next agent_spool_open. No other thread may use sp any more. */
void agent_spool_close(struct agent_spool *sp);

/* agent_spool_next_seq stores in *seq the next sequence number for boot_id
 * (borrowed): for a boot id the spool has not seen, the wall clock in
 * microseconds (so a lost spool's numbers of the same boot stay below the
 * new ones and are not mistaken for duplicates), and strictly increasing
 * after that, also across restarts (it continues above both the persisted
 * reservation and every seq of that boot still in the spool). One boot id at a
 * time: asking for another boot id starts that one afresh. Returns 0,
 * -EINVAL for a bad boot id, or a negative errno when the reservation could
 * not be persisted (then no number is handed out). */
int agent_spool_next_seq(struct agent_spool *sp, const char *boot_id, uint64_t *seq);

/* agent_spool_append stores a copy of data (len bytes, a serialized
 * AgentMessage; borrowed) as the newest entry, crash-safely (temp file and
 * rename). If the spool would exceed its cap, the oldest summaries are dropped
 * first, then the oldest entries of any kind, and the drops counted. Returns
 * 0, -EINVAL for a bad kind or boot id, -EMSGSIZE when the entry alone is
 * larger than the cap (nothing is dropped), or a negative errno from the
 * file system (entries dropped to make room stay dropped). */
int agent_spool_append(struct agent_spool *sp, int kind, const char *boot_id, uint64_t seq,
		       const void *data, size_t len);

/* agent_spool_peek fills b with the oldest entries, in order, at most
 * max_msgs of them and at most max_bytes of data in total, but always at
 * least one when the spool is not empty (an entry larger than max_bytes comes
 * alone). Entries stay in the spool. Whatever b held before is freed first.
 * Entries dropped concurrently are left out; an entry whose file turns out
 * corrupt is deleted, counted and left out, so b->n may be 0 even though the
 * spool was not empty. Returns 0 or a negative errno (then b is empty). */
int agent_spool_peek(struct agent_spool *sp, size_t max_msgs, size_t max_bytes,
		     struct agent_spool_batch *b);

/* agent_spool_batch_free frees what b owns and empties it (b itself is the
 * caller's; NULL is a no-op). */
void agent_spool_batch_free(struct agent_spool_batch *b);

/* agent_spool_remove deletes the entry (boot_id, seq), typically once it is
 * acknowledged; an entry that is not there (already dropped or removed) is a
 * no-op. The entry is forgotten either way; a negative errno means its file
 * could not be deleted and may be resent after a restart (a harmless
 * duplicate). Returns 0 or a negative errno. */
int agent_spool_remove(struct agent_spool *sp, const char *boot_id, uint64_t seq);

/* agent_spool_wait blocks until the spool is not empty (returns 0), until
 * timeout_ms passed (-ETIMEDOUT; a negative timeout_ms waits forever) or
 * until agent_spool_wake (-EINTR). */
int agent_spool_wait(struct agent_spool *sp, int timeout_ms);

/* agent_spool_wake makes the current agent_spool_wait return -EINTR or, when
 * nobody waits, the next one (it is remembered once), for shutdown. */
void agent_spool_wake(struct agent_spool *sp);

/* agent_spool_dropped_take returns the number of entries dropped since the
 * previous call (or the open) and resets it; the caller puts it into the next
 * message's dropped_before. */
uint64_t agent_spool_dropped_take(struct agent_spool *sp);

/* agent_spool_dropped_total returns the number of entries dropped since the
 * open (for AgentHealth.spool_dropped). */
uint64_t agent_spool_dropped_total(struct agent_spool *sp);

/* agent_spool_corrupt_total returns the number of corrupt entry files deleted
 * since the open. */
uint64_t agent_spool_corrupt_total(struct agent_spool *sp);

/* agent_spool_disk_full_total returns how many entries were dropped
 * because the file system was full. */
uint64_t agent_spool_disk_full_total(struct agent_spool *sp);

/* agent_spool_count returns the number of entries in the spool. */
size_t agent_spool_count(struct agent_spool *sp);

/* agent_spool_bytes returns the bytes the entries take (at most the cap). */
uint64_t agent_spool_bytes(struct agent_spool *sp);

#endif
