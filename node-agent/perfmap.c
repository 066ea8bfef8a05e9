/* perfmap.c: JIT symbols from /tmp/perf-PID.map (see perfmap.h). */
#include "perfmap.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct pm_ent {
	uint64_t start, end;
	uint32_t name; /* offset in names */
	uint32_t line; /* line number: the later wins an overlap */
};

struct agent_perfmap {
	struct pm_ent *ents;
	size_t n;
	char *names;
	size_t names_len;
	dev_t dev;
	ino_t ino;
	off_t size;	 /* bytes read */
	off_t file_size; /* the file's size when it was opened */
};

/* ns_pid reads the process's pid in its own pid namespace (the last field
 * of NSpid in /proc/PID/status); pid itself when there is no such line. */
static uint32_t ns_pid(const char *proc_root, uint32_t pid)
{
	char path[512], line[256];
	uint32_t v = pid;
	FILE *f;

	snprintf(path, sizeof(path), "%s/%u/status", proc_root, pid);
	if (!(f = fopen(path, "re")))
		return pid;
	while (fgets(line, sizeof(line), f)) {
		char *p, *end;

		if (strncmp(line, "NSpid:", 6) != 0)
			continue;
		for (p = line + 6;; p = end) {
			unsigned long x = strtoul(p, &end, 10);

			if (end == p)
				break;
			v = (uint32_t)x;
		}
		break;
	}
	fclose(f);
	return v;
}

/* open_map opens the map file as the process sees it and checks it. */
static int open_map(const char *proc_root, uint32_t pid, struct stat *st)
{
	char path[512];
	struct stat pst;
	int fd;

	snprintf(path, sizeof(path), "%s/%u", proc_root, pid);
	if (stat(path, &pst) != 0)
		return -errno;
	snprintf(path, sizeof(path), "%s/%u/root/tmp/perf-%u.map", proc_root, pid,
		 ns_pid(proc_root, pid));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	if (fd < 0)
		return errno == ELOOP ? -EPERM : -errno;
	if (fstat(fd, st) != 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	if (!S_ISREG(st->st_mode) || (st->st_uid != pst.st_uid && st->st_uid != 0)) {
		close(fd);
		return -EPERM;
	}
	if ((uint64_t)st->st_size > AGENT_PERFMAP_MAX_BYTES) {
		close(fd);
		return -EFBIG;
	}
	return fd;
}

static int by_start(const void *a, const void *b)
{
	const struct pm_ent *x = a, *y = b;

	if (x->start != y->start)
		return x->start < y->start ? -1 : 1;
	return x->line < y->line ? -1 : x->line > y->line;
}

/* add_name appends a cleaned copy of name (len bytes) to pm's names. */
static int add_name(struct agent_perfmap *pm, size_t *cap, const char *name, size_t len,
		    uint32_t *off)
{
	if (len > AGENT_PERFMAP_MAX_NAME)
		len = AGENT_PERFMAP_MAX_NAME;
	if (pm->names_len + len + 1 > *cap) {
		size_t nc = *cap ? *cap * 2 : 4096;
		char *p;

		while (nc < pm->names_len + len + 1)
			nc *= 2;
		if (nc > UINT32_MAX || !(p = realloc(pm->names, nc)))
			return -ENOMEM;
		pm->names = p;
		*cap = nc;
	}
	*off = (uint32_t)pm->names_len;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		pm->names[pm->names_len++] = c < 0x20 || c == 0x7f ? '?' : (char)c;
	}
	pm->names[pm->names_len++] = '\0';
	return 0;
}

/* parse_line reads "START SIZE name" (hex, with or without 0x). */
static bool parse_line(char *line, uint64_t *start, uint64_t *size, char **name)
{
	char *end;

	errno = 0;
	*start = strtoull(line, &end, 16);
	if (end == line || *end != ' ' || errno)
		return false;
	line = end + 1;
	*size = strtoull(line, &end, 16);
	if (end == line || *end != ' ' || errno || *size == 0 || *start + *size < *start)
		return false;
	*name = end + 1;
	return **name != '\0';
}

int agent_perfmap_load(const char *proc_root, uint32_t pid, struct agent_perfmap **out)
{
	struct agent_perfmap *pm;
	size_t cap = 0, names_cap = 0, line_cap = 0;
	char *line = NULL;
	struct stat st;
	ssize_t len;
	uint32_t lineno = 0;
	FILE *f;
	int fd, err = 0;

	*out = NULL;
	if ((fd = open_map(proc_root ? proc_root : "/proc", pid, &st)) < 0)
		return fd;
	if (!(f = fdopen(fd, "r"))) {
		close(fd);
		return -ENOMEM;
	}
	if (!(pm = calloc(1, sizeof(*pm)))) {
		fclose(f);
		return -ENOMEM;
	}
	pm->dev = st.st_dev;
	pm->ino = st.st_ino;
	pm->file_size = st.st_size;
	while ((len = getline(&line, &line_cap, f)) > 0) {
		uint64_t start, size;
		char *name;
		struct pm_ent *e;

		pm->size += len;
		if (pm->size > (off_t)AGENT_PERFMAP_MAX_BYTES) {
			err = -EFBIG;
			break;
		}
		lineno++;
		if (line[len - 1] != '\n')
			break; /* a line still being written: next time */
		line[--len] = '\0';
		if (!parse_line(line, &start, &size, &name))
			continue;
		if (pm->n == cap) {
			size_t nc = cap ? cap * 2 : 256;

			if (!(e = realloc(pm->ents, nc * sizeof(*e)))) {
				err = -ENOMEM;
				break;
			}
			pm->ents = e;
			cap = nc;
		}
		e = &pm->ents[pm->n];
		if ((err = add_name(pm, &names_cap, name, strlen(name), &e->name)) != 0)
			break;
		e->start = start;
		e->end = start + size;
		e->line = lineno;
		pm->n++;
	}
	free(line);
	fclose(f);
	if (err) {
		agent_perfmap_free(pm);
		return err;
	}
	qsort(pm->ents, pm->n, sizeof(*pm->ents), by_start);
	*out = pm;
	return 0;
}

bool agent_perfmap_changed(const struct agent_perfmap *pm, const char *proc_root, uint32_t pid)
{
	struct stat st;
	int fd = open_map(proc_root ? proc_root : "/proc", pid, &st);

	if (fd < 0)
		return true;
	close(fd);
	return st.st_dev != pm->dev || st.st_ino != pm->ino || st.st_size != pm->file_size;
}

const char *agent_perfmap_lookup(const struct agent_perfmap *pm, uint64_t addr, uint64_t *off)
{
	const struct pm_ent *best = NULL;
	size_t lo = 0, hi = pm ? pm->n : 0;

	/* the last entry starting at or below addr, then back over the
	 * entries that may still cover it (overlaps are rare and short) */
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (pm->ents[mid].start <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t i = lo, k = 0; i > 0 && k < 64; i--, k++) {
		const struct pm_ent *e = &pm->ents[i - 1];

		if (addr < e->end && (!best || e->line > best->line))
			best = e;
	}
	if (!best)
		return NULL;
	*off = addr - best->start;
	return pm->names + best->name;
}

size_t agent_perfmap_count(const struct agent_perfmap *pm)
{
	return pm ? pm->n : 0;
}

size_t agent_perfmap_bytes(const struct agent_perfmap *pm)
{
	return pm ? sizeof(*pm) + pm->n * sizeof(*pm->ents) + pm->names_len : 0;
}

void agent_perfmap_free(struct agent_perfmap *pm)
{
	if (!pm)
		return;
	free(pm->ents);
	free(pm->names);
	free(pm);
}
