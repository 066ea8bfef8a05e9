/* spool.c: the agent's bounded on-disk spool of unacknowledged messages.
 *
 * On disk, one file per entry, "<20-digit counter>.msg", holding a header
 * (little-endian):
 *
 *   0  magic "SHSP"      4  version (1)     5  kind
 *   6  boot id length    8  seq (u64)      16  data length (u32)
 *  20  CRC-32 of bytes 0..19 and of everything after the header
 *
 * followed by the boot id and the data (a serialized AgentMessage). Files
 * are written to "<name>.tmp" and renamed; leftover temp files are deleted
 * at open. The file "state" holds the sequence and counter reservations.
 *
 * In memory, every entry sits on a list in append order and summaries also
 * on a second list, so the oldest entry and the oldest summary are found
 * without scanning. Entry data is not kept in memory; agent_spool_peek reads
 * it from disk without holding the lock (an entry dropped meanwhile is
 * simply left out).
 */
#include "spool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "fsutil.h"
#include "log.h"

#define ENTRY_SUFFIX ".msg"
#define ENTRY_NAME_LEN (20 + sizeof(ENTRY_SUFFIX) - 1)
#define STATE_NAME "state"
#define HDR_VERSION 1

struct spool_entry {
	struct spool_entry *prev, *next;   /* every entry, append order */
	struct spool_entry *sprev, *snext; /* summaries only, append order */
	uint64_t counter;                  /* file name */
	uint64_t seq;
	uint64_t size;                     /* bytes on disk */
	size_t len;                        /* data bytes */
	int kind;
	char boot_id[AGENT_SPOOL_BOOT_ID_MAX + 1];
};

struct agent_spool {
	pthread_mutex_t mu;
	pthread_cond_t cond;               /* signalled on append and wake */
	char *dir;
	uint64_t cap;
	bool do_fsync;
	bool wake_pending;

	struct spool_entry *head, *tail;
	struct spool_entry *shead, *stail;
	size_t count;
	uint64_t bytes;

	uint64_t dropped_pending, dropped_total, corrupt_total;
	uint64_t disk_full_total; /* entries dropped because the disk was full */

	/* Reservations, persisted in the state file: every seq of st_boot up to
	 * seq_limit and every counter up to file_limit may have been used. */
	char st_boot[AGENT_SPOOL_BOOT_ID_MAX + 1];
	uint64_t seq_limit, seq_next;      /* seq_next 0: not started in this run */
	uint64_t file_limit, file_next;
};

/* The header of an entry file, decoded. */
struct entry_hdr {
	int kind;
	size_t boot_len;
	uint64_t seq;
	size_t len;
};

static const uint32_t crc_nibble[16] = {
	0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4,
	0x4db26158, 0x5005713c, 0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c,
	0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c,
};

/* crc32_update continues a CRC-32 (IEEE, as zlib) over len bytes; start with
 * crc 0. */
static uint32_t crc32_update(uint32_t crc, const void *data, size_t len)
{
	const uint8_t *p = data;

	crc = ~crc;
	while (len--) {
		crc ^= *p++;
		crc = (crc >> 4) ^ crc_nibble[crc & 15];
		crc = (crc >> 4) ^ crc_nibble[crc & 15];
	}
	return ~crc;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
	for (int i = 0; i < n; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static bool kind_valid(int kind)
{
	return kind == AGENT_SPOOL_SUMMARY || kind == AGENT_SPOOL_EVENT ||
	       kind == AGENT_SPOOL_CHUNK;
}

/* boot_valid checks a boot id of n bytes: 1..MAX printable, non-blank
 * ASCII characters (it goes into the line-based state file). */
static bool boot_valid(const char *s, size_t n)
{
	if (n == 0 || n > AGENT_SPOOL_BOOT_ID_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		if (s[i] <= ' ' || s[i] > '~')
			return false;
	}
	return true;
}

static bool boot_id_ok(const char *boot_id)
{
	return boot_id && boot_valid(boot_id, strnlen(boot_id, AGENT_SPOOL_BOOT_ID_MAX + 1));
}

static uint32_t entry_crc(const uint8_t *buf, size_t size)
{
	uint32_t crc = crc32_update(0, buf, 20);

	return crc32_update(crc, buf + AGENT_SPOOL_HDR_SIZE, size - AGENT_SPOOL_HDR_SIZE);
}

/* entry_parse validates a whole entry file of size bytes. Returns 0 or
 * -EBADMSG. */
static int entry_parse(const uint8_t *buf, size_t size, struct entry_hdr *h)
{
	if (size < AGENT_SPOOL_HDR_SIZE || memcmp(buf, "SHSP", 4) != 0 || buf[4] != HDR_VERSION)
		return -EBADMSG;
	h->kind = buf[5];
	h->boot_len = (size_t)get_le(buf + 6, 2);
	h->seq = get_le(buf + 8, 8);
	h->len = (size_t)get_le(buf + 16, 4);
	if (!kind_valid(h->kind) || (uint64_t)AGENT_SPOOL_HDR_SIZE + h->boot_len + h->len != size ||
	    !boot_valid((const char *)buf + AGENT_SPOOL_HDR_SIZE, h->boot_len))
		return -EBADMSG;
	if (entry_crc(buf, size) != (uint32_t)get_le(buf + 20, 4))
		return -EBADMSG;
	return 0;
}

static void entry_path(const struct agent_spool *sp, uint64_t counter, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%020" PRIu64 ENTRY_SUFFIX, sp->dir, counter);
}

/* read_whole reads the file at path into a new buffer (*out, caller frees).
 * With want > 0 a file of another size is -EBADMSG. Returns its size or a
 * negative errno. */
static ssize_t read_whole(const char *path, uint64_t want, uint8_t **out)
{
	uint8_t *buf = NULL;
	struct stat st;
	size_t off = 0;
	ssize_t ret;
	int fd;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		goto cleanup;
	}
	if (st.st_size < AGENT_SPOOL_HDR_SIZE || st.st_size > (off_t)UINT32_MAX + 4096 ||
	    (want && (uint64_t)st.st_size != want)) {
		ret = -EBADMSG;
		goto cleanup;
	}
	buf = malloc((size_t)st.st_size);
	if (!buf) {
		ret = -ENOMEM;
		goto cleanup;
	}
	while (off < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + off, (size_t)st.st_size - off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			goto cleanup;
		}
		if (n == 0) {
			ret = -EBADMSG; /* shrank under us */
			goto cleanup;
		}
		off += (size_t)n;
	}
	*out = buf;
	buf = NULL;
	ret = (ssize_t)off;
cleanup:
	free(buf);
	close(fd);
	return ret;
}

/* state_save persists the reservations (always fsynced: it happens once per
 * AGENT_SPOOL_SEQ_BLOCK numbers). */
static int state_save(struct agent_spool *sp, const char *boot, uint64_t seq_limit,
		      uint64_t file_limit)
{
	char path[4200], buf[256];
	int n, err;

	snprintf(path, sizeof(path), "%s/" STATE_NAME, sp->dir);
	n = snprintf(buf, sizeof(buf), "seq_boot=%s\nseq_limit=%" PRIu64 "\nfile_limit=%" PRIu64 "\n",
		     boot[0] ? boot : "", seq_limit, file_limit);
	err = sh_write_file_atomic(path, buf, (size_t)n, 1);
	if (err < 0)
		sh_err("could not write \"%s\": %s", path, strerror(-err));
	return err;
}

/* state_load reads the reservations; a missing or unreadable state file
 * leaves them at zero (then only the spool's contents guide the numbering). */
static void state_load(struct agent_spool *sp)
{
	char path[4200], buf[512], *line, *save = NULL;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/" STATE_NAME, sp->dir);
	n = sh_read_file(path, buf, sizeof(buf));
	if (n < 0) {
		if (n != -ENOENT)
			sh_warn("could not read \"%s\": %s", path, strerror((int)-n));
		return;
	}
	for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char *v = strchr(line, '=');

		if (!v)
			continue;
		*v++ = '\0';
		if (strcmp(line, "seq_boot") == 0 && boot_id_ok(v))
			snprintf(sp->st_boot, sizeof(sp->st_boot), "%s", v);
		else if (strcmp(line, "seq_limit") == 0)
			sp->seq_limit = strtoull(v, NULL, 10);
		else if (strcmp(line, "file_limit") == 0)
			sp->file_limit = strtoull(v, NULL, 10);
	}
}

static void list_append(struct agent_spool *sp, struct spool_entry *e)
{
	e->next = NULL;
	e->prev = sp->tail;
	if (sp->tail)
		sp->tail->next = e;
	else
		sp->head = e;
	sp->tail = e;
	e->snext = e->sprev = NULL;
	if (e->kind == AGENT_SPOOL_SUMMARY) {
		e->sprev = sp->stail;
		if (sp->stail)
			sp->stail->snext = e;
		else
			sp->shead = e;
		sp->stail = e;
	}
	sp->count++;
	sp->bytes += e->size;
}

static void list_remove(struct agent_spool *sp, struct spool_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		sp->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		sp->tail = e->prev;
	if (e->kind == AGENT_SPOOL_SUMMARY) {
		if (e->sprev)
			e->sprev->snext = e->snext;
		else
			sp->shead = e->snext;
		if (e->snext)
			e->snext->sprev = e->sprev;
		else
			sp->stail = e->sprev;
	}
	sp->count--;
	sp->bytes -= e->size;
}

/* entry_delete unlinks e's file, takes e off the lists and frees it. Called
 * with the lock held. Returns 0 or the negative errno of the unlink. */
static int entry_delete(struct agent_spool *sp, struct spool_entry *e)
{
	char path[4200];
	int err = 0;

	entry_path(sp, e->counter, path, sizeof(path));
	if (unlink(path) < 0 && errno != ENOENT) {
		err = -errno;
		sh_warn("could not remove \"%s\": %s", path, strerror(errno));
	}
	list_remove(sp, e);
	free(e);
	return err;
}

/* drop_oldest drops the oldest summary, or the oldest entry when no summary
 * is left. Called with the lock held and the spool not empty. */
static void drop_oldest(struct agent_spool *sp)
{
	struct spool_entry *victim = sp->shead ? sp->shead : sp->head;

	sh_debug("spool full: dropping %s %s/%" PRIu64,
		 victim->kind == AGENT_SPOOL_SUMMARY ? "summary" : "entry", victim->boot_id,
		 victim->seq);
	entry_delete(sp, victim);
	sp->dropped_pending++;
	sp->dropped_total++;
}

/* make_room answers a write that failed with err: when the file system
 * is full (the spool's cap is not the only limit: the disk is shared), the
 * oldest entry is dropped (summaries first, counted like any drop) so that
 * the newest data gets in. Returns true when the write is worth retrying. */
static bool make_room(struct agent_spool *sp, int err)
{
	if ((err != -ENOSPC && err != -EDQUOT) || !sp->head)
		return false;
	sp->disk_full_total++;
	if ((sp->disk_full_total & (sp->disk_full_total - 1)) == 0) /* 1, 2, 4, 8, ... */
		sh_warn("spool \"%s\": the file system is full: dropping the oldest entries to "
			"make room (%" PRIu64 " so far)",
			sp->dir, sp->disk_full_total);
	drop_oldest(sp);
	return true;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static bool name_is_entry(const char *name, uint64_t *counter)
{
	uint64_t v = 0;

	if (strlen(name) != ENTRY_NAME_LEN || strcmp(name + 20, ENTRY_SUFFIX) != 0)
		return false;
	for (int i = 0; i < 20; i++) {
		if (name[i] < '0' || name[i] > '9')
			return false;
		if (v > (UINT64_MAX - 9) / 10)
			return false;
		v = v * 10 + (uint64_t)(name[i] - '0');
	}
	*counter = v;
	return true;
}

static bool name_is_tmp(const char *name)
{
	size_t n = strlen(name);

	return n > 4 && strcmp(name + n - 4, ".tmp") == 0;
}

/* load_entries reads the directory at open: deletes temp files, validates
 * every entry file (deleting and counting corrupt ones) and lists the good
 * ones in counter order. Returns 0 or a negative errno. */
static int load_entries(struct agent_spool *sp)
{
	uint64_t *counters = NULL, max_counter = 0;
	size_t n = 0, cap = 0, corrupt = 0;
	char path[4200];
	struct dirent *de;
	DIR *d;
	int err = 0;

	d = opendir(sp->dir);
	if (!d) {
		err = -errno;
		sh_err("could not open spool directory \"%s\": %s", sp->dir, strerror(errno));
		return err;
	}
	while ((de = readdir(d)) != NULL) {
		uint64_t c;

		if (name_is_tmp(de->d_name)) {
			snprintf(path, sizeof(path), "%s/%s", sp->dir, de->d_name);
			if (unlink(path) < 0 && errno != ENOENT)
				sh_warn("could not remove \"%s\": %s", path, strerror(errno));
			continue;
		}
		if (!name_is_entry(de->d_name, &c))
			continue;
		if (n == cap) {
			size_t ncap = cap ? 2 * cap : 64;
			uint64_t *p = realloc(counters, ncap * sizeof(*p));

			if (!p) {
				err = -ENOMEM;
				goto cleanup;
			}
			counters = p;
			cap = ncap;
		}
		counters[n++] = c;
	}
	if (n)
		qsort(counters, n, sizeof(*counters), cmp_u64);
	for (size_t i = 0; i < n; i++) {
		struct spool_entry *e;
		struct entry_hdr h;
		uint8_t *buf;
		ssize_t size;

		if (counters[i] > max_counter)
			max_counter = counters[i];
		entry_path(sp, counters[i], path, sizeof(path));
		size = read_whole(path, 0, &buf);
		if (size == -ENOMEM) {
			err = -ENOMEM;
			goto cleanup;
		}
		if (size < 0 || entry_parse(buf, (size_t)size, &h) < 0) {
			free(buf);
			if (size == -ENOENT)
				continue;
			corrupt++;
			if (unlink(path) < 0 && errno != ENOENT)
				sh_warn("could not remove \"%s\": %s", path, strerror(errno));
			continue;
		}
		e = calloc(1, sizeof(*e));
		if (!e) {
			free(buf);
			err = -ENOMEM;
			goto cleanup;
		}
		e->counter = counters[i];
		e->seq = h.seq;
		e->size = (uint64_t)size;
		e->len = h.len;
		e->kind = h.kind;
		memcpy(e->boot_id, buf + AGENT_SPOOL_HDR_SIZE, h.boot_len);
		free(buf);
		list_append(sp, e);
	}
	if (corrupt)
		sh_warn("spool \"%s\": removed %zu corrupt entr%s", sp->dir, corrupt,
			corrupt == 1 ? "y" : "ies");
	sp->corrupt_total += corrupt;
	if (max_counter > sp->file_limit)
		sp->file_limit = max_counter;
	sp->file_next = sp->file_limit + 1;
cleanup:
	free(counters);
	closedir(d);
	return err;
}

int agent_spool_open(const char *dir, uint64_t cap_bytes, bool do_fsync, struct agent_spool **out)
{
	struct agent_spool *sp = NULL;
	pthread_condattr_t ca;
	bool mu_ok = false, cond_ok = false;
	int err;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!dir || !dir[0] || cap_bytes == 0)
		return -EINVAL;
	if (strlen(dir) > 4000)
		return -ENAMETOOLONG;
	err = sh_mkdir_p(dir, 0700);
	if (err < 0) {
		sh_err("could not create spool directory \"%s\": %s", dir, strerror(-err));
		return err;
	}
	sp = calloc(1, sizeof(*sp));
	if (!sp)
		return -ENOMEM;
	sp->dir = strdup(dir);
	if (!sp->dir) {
		err = -ENOMEM;
		goto cleanup;
	}
	sp->cap = cap_bytes;
	sp->do_fsync = do_fsync;
	err = -pthread_mutex_init(&sp->mu, NULL);
	if (err)
		goto cleanup;
	mu_ok = true;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	err = -pthread_cond_init(&sp->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (err)
		goto cleanup;
	cond_ok = true;

	state_load(sp);
	err = load_entries(sp);
	if (err)
		goto cleanup;
	if (sp->bytes > sp->cap) {
		uint64_t before = sp->dropped_total;

		while (sp->bytes > sp->cap)
			drop_oldest(sp);
		sh_warn("spool \"%s\" holds more than its cap of %" PRIu64
			" bytes: dropped %" PRIu64 " entries",
			dir, sp->cap, sp->dropped_total - before);
	}
	sh_debug("spool \"%s\": %zu entries, %" PRIu64 " bytes", dir, sp->count, sp->bytes);
	*out = sp;
	return 0;
cleanup:
	while (sp->head) {
		struct spool_entry *e = sp->head;

		list_remove(sp, e);
		free(e);
	}
	if (cond_ok)
		pthread_cond_destroy(&sp->cond);
	if (mu_ok)
		pthread_mutex_destroy(&sp->mu);
	free(sp->dir);
	free(sp);
	return err;
}

void agent_spool_close(struct agent_spool *sp)
{
	if (!sp)
		return;
	while (sp->head) {
		struct spool_entry *e = sp->head;

		list_remove(sp, e);
		free(e);
	}
	pthread_cond_destroy(&sp->cond);
	pthread_mutex_destroy(&sp->mu);
	free(sp->dir);
	free(sp);
}

int agent_spool_next_seq(struct agent_spool *sp, const char *boot_id, uint64_t *seq)
{
	uint64_t next, limit;
	int err = 0;

	if (!sp || !seq || !boot_id_ok(boot_id))
		return -EINVAL;
	pthread_mutex_lock(&sp->mu);
	if (sp->seq_next == 0 || strcmp(sp->st_boot, boot_id) != 0) {
		/* First number of this run or a new boot: continue above the
		 * reservation (same boot only) and every seq still spooled. */
		uint64_t base = strcmp(sp->st_boot, boot_id) == 0 ? sp->seq_limit : 0;

		/* A boot this spool has no state for starts at the wall clock in
		 * microseconds, not at 1: if an earlier spool of the same boot
		 * was lost (wiped, reinstalled), its numbers are still below
		 * ours, so the aggregator does not take ours for duplicates. */
		if (strcmp(sp->st_boot, boot_id) != 0) {
			struct timespec ts;

			clock_gettime(CLOCK_REALTIME, &ts);
			base = (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
		}

		for (struct spool_entry *e = sp->head; e; e = e->next) {
			if (e->seq > base && strcmp(e->boot_id, boot_id) == 0)
				base = e->seq;
		}
		next = base + 1;
		limit = strcmp(sp->st_boot, boot_id) == 0 ? sp->seq_limit : 0;
	} else {
		next = sp->seq_next;
		limit = sp->seq_limit;
	}
	if (next == 0) { /* wrapped: never happens in practice */
		err = -EOVERFLOW;
		goto cleanup;
	}
	if (next > limit) {
		limit = next + AGENT_SPOOL_SEQ_BLOCK - 1;
		while ((err = state_save(sp, boot_id, limit, sp->file_limit)) != 0 &&
		       make_room(sp, err))
			;
		if (err)
			goto cleanup;
	}
	snprintf(sp->st_boot, sizeof(sp->st_boot), "%s", boot_id);
	sp->seq_limit = limit;
	sp->seq_next = next + 1;
	*seq = next;
cleanup:
	pthread_mutex_unlock(&sp->mu);
	return err;
}

int agent_spool_append(struct agent_spool *sp, int kind, const char *boot_id, uint64_t seq,
		       const void *data, size_t len)
{
	struct spool_entry *e = NULL;
	uint8_t *buf = NULL;
	char path[4200];
	size_t blen, size;
	bool locked = false;
	int err;

	if (!sp || !kind_valid(kind) || !boot_id_ok(boot_id) || (len && !data))
		return -EINVAL;
	blen = strlen(boot_id);
	if (len > UINT32_MAX || (uint64_t)AGENT_SPOOL_HDR_SIZE + blen + len > sp->cap)
		return -EMSGSIZE;
	size = AGENT_SPOOL_HDR_SIZE + blen + len;

	e = calloc(1, sizeof(*e));
	buf = malloc(size);
	if (!e || !buf) {
		err = -ENOMEM;
		goto cleanup;
	}
	memcpy(buf, "SHSP", 4);
	buf[4] = HDR_VERSION;
	buf[5] = (uint8_t)kind;
	put_le(buf + 6, blen, 2);
	put_le(buf + 8, seq, 8);
	put_le(buf + 16, len, 4);
	memcpy(buf + AGENT_SPOOL_HDR_SIZE, boot_id, blen);
	if (len)
		memcpy(buf + AGENT_SPOOL_HDR_SIZE + blen, data, len);
	put_le(buf + 20, entry_crc(buf, size), 4);
	e->seq = seq;
	e->size = size;
	e->len = len;
	e->kind = kind;
	memcpy(e->boot_id, boot_id, blen + 1);

	/* The lock is held across the write so that file counters, the list
	 * and the cap agree; the sender's lock holds are short. */
	pthread_mutex_lock(&sp->mu);
	locked = true;
	if (sp->file_next > sp->file_limit) {
		uint64_t limit = sp->file_next + AGENT_SPOOL_SEQ_BLOCK - 1;

		while ((err = state_save(sp, sp->st_boot, sp->seq_limit, limit)) != 0 &&
		       make_room(sp, err))
			;
		if (err)
			goto cleanup;
		sp->file_limit = limit;
	}
	while (sp->head && sp->bytes + size > sp->cap)
		drop_oldest(sp);
	e->counter = sp->file_next++;
	entry_path(sp, e->counter, path, sizeof(path));
	while ((err = sh_write_file_atomic(path, buf, size, sp->do_fsync)) != 0 &&
	       make_room(sp, err))
		;
	if (err) {
		sh_err("could not write spool entry \"%s\": %s", path, strerror(-err));
		goto cleanup;
	}
	list_append(sp, e);
	e = NULL;
	pthread_cond_broadcast(&sp->cond);
cleanup:
	if (locked)
		pthread_mutex_unlock(&sp->mu);
	free(e);
	free(buf);
	return err;
}

void agent_spool_batch_free(struct agent_spool_batch *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->n; i++)
		free(b->msgs[i].data);
	free(b->msgs);
	b->msgs = NULL;
	b->n = 0;
	b->bytes = 0;
}

/* forget_corrupt deletes the entry with file counter c if it is still
 * listed, and counts it as corrupt (its file is missing or broken). */
static void forget_corrupt(struct agent_spool *sp, uint64_t c)
{
	pthread_mutex_lock(&sp->mu);
	for (struct spool_entry *e = sp->head; e; e = e->next) {
		if (e->counter == c) {
			sh_warn("spool \"%s\": removed corrupt entry %s/%" PRIu64, sp->dir,
				e->boot_id, e->seq);
			entry_delete(sp, e);
			sp->corrupt_total++;
			break;
		}
	}
	pthread_mutex_unlock(&sp->mu);
}

int agent_spool_peek(struct agent_spool *sp, size_t max_msgs, size_t max_bytes,
		     struct agent_spool_batch *b)
{
	struct agent_spool_msg *msgs = NULL;
	uint64_t *counters = NULL, *sizes = NULL;
	size_t n = 0, out = 0, bytes = 0;
	char path[4200];
	int err = 0;

	if (!sp || !b)
		return -EINVAL;
	agent_spool_batch_free(b);
	if (max_msgs == 0)
		return 0;

	/* Take a snapshot of the oldest entries' metadata under the lock. */
	pthread_mutex_lock(&sp->mu);
	for (struct spool_entry *e = sp->head; e && n < max_msgs; e = e->next) {
		if (n > 0 && bytes + e->len > max_bytes)
			break;
		bytes += e->len;
		n++;
	}
	if (n) {
		msgs = calloc(n, sizeof(*msgs));
		counters = calloc(n, sizeof(*counters));
		sizes = calloc(n, sizeof(*sizes));
	}
	if (n && (!msgs || !counters || !sizes)) {
		pthread_mutex_unlock(&sp->mu);
		err = -ENOMEM;
		goto cleanup;
	}
	n = 0;
	bytes = 0;
	for (struct spool_entry *e = sp->head; e && n < max_msgs; e = e->next) {
		if (n > 0 && bytes + e->len > max_bytes)
			break;
		bytes += e->len;
		msgs[n].kind = e->kind;
		memcpy(msgs[n].boot_id, e->boot_id, sizeof(e->boot_id));
		msgs[n].seq = e->seq;
		counters[n] = e->counter;
		sizes[n] = e->size;
		n++;
	}
	pthread_mutex_unlock(&sp->mu);

	/* Read the files without it: appends may drop (unlink) some meanwhile. */
	bytes = 0;
	for (size_t i = 0; i < n; i++) {
		struct entry_hdr h;
		uint8_t *buf;
		ssize_t size;

		entry_path(sp, counters[i], path, sizeof(path));
		size = read_whole(path, sizes[i], &buf);
		if (size == -ENOMEM || size == -EMFILE || size == -ENFILE) {
			err = (int)size;
			goto cleanup;
		}
		if (size < 0 || entry_parse(buf, (size_t)size, &h) < 0 ||
		    h.kind != msgs[i].kind || h.seq != msgs[i].seq ||
		    h.boot_len != strlen(msgs[i].boot_id) ||
		    memcmp(buf + AGENT_SPOOL_HDR_SIZE, msgs[i].boot_id, h.boot_len) != 0) {
			/* A file dropped or removed since the snapshot is gone
			 * from the list too; one still listed is missing or
			 * broken, and would otherwise block the spool. */
			free(buf);
			forget_corrupt(sp, counters[i]);
			continue;
		}
		/* Keep only the data, at the start of the buffer. */
		memmove(buf, buf + AGENT_SPOOL_HDR_SIZE + h.boot_len, h.len);
		msgs[out] = msgs[i];
		msgs[out].data = buf;
		msgs[out].len = h.len;
		bytes += h.len;
		out++;
	}
	if (out) {
		b->msgs = msgs;
		b->n = out;
		b->bytes = bytes;
		msgs = NULL;
	}
cleanup:
	if (msgs) {
		for (size_t i = 0; i < out; i++)
			free(msgs[i].data);
		free(msgs);
	}
	free(counters);
	free(sizes);
	return err;
}

int agent_spool_remove(struct agent_spool *sp, const char *boot_id, uint64_t seq)
{
	int err = 0;

	if (!sp || !boot_id)
		return -EINVAL;
	pthread_mutex_lock(&sp->mu);
	/* Acks come for the oldest entries, so this scan ends near the head. */
	for (struct spool_entry *e = sp->head; e; e = e->next) {
		if (e->seq == seq && strcmp(e->boot_id, boot_id) == 0) {
			err = entry_delete(sp, e);
			break;
		}
	}
	pthread_mutex_unlock(&sp->mu);
	return err;
}

int agent_spool_wait(struct agent_spool *sp, int timeout_ms)
{
	struct timespec deadline;
	int err = 0;

	if (!sp)
		return -EINVAL;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	if (timeout_ms > 0) {
		deadline.tv_sec += timeout_ms / 1000;
		deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&sp->mu);
	for (;;) {
		if (sp->wake_pending) {
			sp->wake_pending = false;
			err = -EINTR;
			break;
		}
		if (sp->count > 0)
			break;
		if (timeout_ms < 0) {
			pthread_cond_wait(&sp->cond, &sp->mu);
		} else if (pthread_cond_timedwait(&sp->cond, &sp->mu, &deadline) == ETIMEDOUT) {
			if (sp->wake_pending) {
				sp->wake_pending = false;
				err = -EINTR;
			} else if (sp->count == 0) {
				err = -ETIMEDOUT;
			}
			break;
		}
	}
	pthread_mutex_unlock(&sp->mu);
	return err;
}

void agent_spool_wake(struct agent_spool *sp)
{
	if (!sp)
		return;
	pthread_mutex_lock(&sp->mu);
	sp->wake_pending = true;
	pthread_cond_broadcast(&sp->cond);
	pthread_mutex_unlock(&sp->mu);
}

uint64_t agent_spool_dropped_take(struct agent_spool *sp)
{
	uint64_t n;

	pthread_mutex_lock(&sp->mu);
	n = sp->dropped_pending;
	sp->dropped_pending = 0;
	pthread_mutex_unlock(&sp->mu);
	return n;
}

uint64_t agent_spool_dropped_total(struct agent_spool *sp)
{
	uint64_t n;

	pthread_mutex_lock(&sp->mu);
	n = sp->dropped_total;
	pthread_mutex_unlock(&sp->mu);
	return n;
}

uint64_t agent_spool_disk_full_total(struct agent_spool *sp)
{
	uint64_t n;

	pthread_mutex_lock(&sp->mu);
	n = sp->disk_full_total;
	pthread_mutex_unlock(&sp->mu);
	return n;
}

uint64_t agent_spool_corrupt_total(struct agent_spool *sp)
{
	uint64_t n;

	pthread_mutex_lock(&sp->mu);
	n = sp->corrupt_total;
	pthread_mutex_unlock(&sp->mu);
	return n;
}

size_t agent_spool_count(struct agent_spool *sp)
{
	size_t n;

	pthread_mutex_lock(&sp->mu);
	n = sp->count;
	pthread_mutex_unlock(&sp->mu);
	return n;
}

uint64_t agent_spool_bytes(struct agent_spool *sp)
{
	uint64_t n;

	pthread_mutex_lock(&sp->mu);
	n = sp->bytes;
	pthread_mutex_unlock(&sp->mu);
	return n;
}
