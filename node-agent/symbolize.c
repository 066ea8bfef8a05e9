/* symbolize.c: kernel symbols from /proc/kallsyms, user symbols from the
 * ELF files a process maps, with bounded caches of pid generations (maps
 * and the kernel's build id + offset hints, by pid and time), of parsed
 * ELF symbol tables (by build id, parsed on first use) and of where each
 * build id's file is. */
#include "symbolize.h"

#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <inttypes.h>
#include <libelf.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "perfmap.h"
#include "timeutil.h"

#define DEF_ELF_BYTES (64u << 20)
#define DEF_ELF_FILES 512u
#define DEF_MAPS_BYTES (16u << 20)
#define DEF_PID_MAPS 4096u
#define MAPS_REFRESH_NS (200 * SH_NS_PER_MS)
#define FILE_IDS_MAX 4096u
#define BIDS_MAX 4096u			     /* build id index entries */
#define EXES_MAX 512u			     /* exec'd files remembered */
#define EXES_RECHECK_NS (10 * SH_NS_PER_SEC) /* re-stat exec'd files at most this often */
#define MISS_RETRY_NS (10 * SH_NS_PER_SEC)   /* look for a missing build id again after */
#define HINTS_MAX 256u			     /* per pid generation */
#define NOMAP_MAX 64u			     /* unmapped pages remembered per pid generation */
#define MAPS_AFTER_SAMPLES 16u		     /* read a live process's maps after this many stacks */
#define HINT_PAGE 4096u
#define MAX_FILE_OFFSET (1ULL << 47)	     /* no mapped file is larger */
#define MIN_USER_ADDR 4096u		     /* nothing is mapped below (mmap_min_addr) */
#define NO_MOD UINT32_MAX
#define PERFMAP_RECHECK_NS (1 * SH_NS_PER_SEC) /* look at a perf map again after a miss */
#define PERFMAP_ABSENT_NS (10 * SH_NS_PER_SEC) /* and for one after finding none */

/* ---- small intrusive hash table (chained, power-of-two buckets) ---- */

struct hnode {
	struct hnode *next;
	uint64_t hash;
};

struct htab {
	struct hnode **b;
	size_t nb, n;
};

static uint64_t hash64(const void *p, size_t len, uint64_t seed)
{
	const uint8_t *c = p;
	uint64_t h = 1469598103934665603ULL ^ seed;

	for (size_t i = 0; i < len; i++) {
		h ^= c[i];
		h *= 1099511628211ULL;
	}
	return h ^ (h >> 29);
}

static int htab_grow(struct htab *t)
{
	size_t nb = t->nb ? t->nb * 2 : 64;
	struct hnode **b = calloc(nb, sizeof(*b));

	if (!b)
		return -ENOMEM;
	for (size_t i = 0; i < t->nb; i++) {
		struct hnode *n = t->b[i], *next;

		for (; n; n = next) {
			next = n->next;
			n->next = b[n->hash & (nb - 1)];
			b[n->hash & (nb - 1)] = n;
		}
	}
	free(t->b);
	t->b = b;
	t->nb = nb;
	return 0;
}

static int htab_insert(struct htab *t, struct hnode *n, uint64_t hash)
{
	if (t->n + 1 > t->nb && htab_grow(t) < 0 && !t->nb)
		return -ENOMEM;
	n->hash = hash;
	n->next = t->b[hash & (t->nb - 1)];
	t->b[hash & (t->nb - 1)] = n;
	t->n++;
	return 0;
}

static void htab_remove(struct htab *t, struct hnode *n)
{
	struct hnode **pp = &t->b[n->hash & (t->nb - 1)];

	for (; *pp; pp = &(*pp)->next) {
		if (*pp == n) {
			*pp = n->next;
			t->n--;
			return;
		}
	}
}

static struct hnode *htab_first(const struct htab *t, uint64_t hash)
{
	struct hnode *n = t->nb ? t->b[hash & (t->nb - 1)] : NULL;

	while (n && n->hash != hash)
		n = n->next;
	return n;
}

static struct hnode *htab_next(struct hnode *n)
{
	uint64_t hash = n->hash;

	for (n = n->next; n && n->hash != hash; n = n->next)
		;
	return n;
}

/* ---- LRU list ---- */

struct lru {
	struct lru *prev, *next;
};

static void lru_init(struct lru *head)
{
	head->prev = head->next = head;
}

static void lru_unlink(struct lru *e)
{
	e->prev->next = e->next;
	e->next->prev = e->prev;
	e->prev = e->next = e;
}

static void lru_push_front(struct lru *head, struct lru *e)
{
	e->next = head->next;
	e->prev = head;
	head->next->prev = e;
	head->next = e;
}

static void lru_touch(struct lru *head, struct lru *e)
{
	lru_unlink(e);
	lru_push_front(head, e);
}

#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

/* ---- types ---- */

struct ksym {
	uint64_t addr;
	uint32_t name; /* offset in kernel names */
	uint32_t mod;  /* offset in kernel names, NO_MOD for vmlinux */
};

/* elf_key identifies an ELF file: its build id, or (dev, ino) without one. */
struct elf_key {
	uint8_t kind; /* 1 build id, 2 dev+ino */
	uint8_t len;
	uint8_t bytes[AGENT_BUILD_ID_MAX];
};

struct elf_sym {
	uint64_t addr;
	uint64_t size;
	uint32_t name;
	uint32_t bind;
};

struct elf_seg {
	uint64_t off, vaddr, filesz;
};

struct elf_file {
	struct hnode h;
	struct lru lru;
	struct elf_key key;
	struct elf_seg *segs;
	size_t nsegs;
	struct elf_sym *syms;
	size_t nsyms;
	char *names;
	size_t bytes;
};

enum { KEY_UNKNOWN = 0, KEY_OK, KEY_FAILED };

struct map_ent {
	uint64_t start, end, pgoff;
	uint64_t dev, ino;
	uint32_t path; /* offset in the generation's paths */
	uint8_t key_state;
	struct elf_key key;
};

/* hint: what the kernel said with a sample about one executable mapping of
 * a process: address a in [start, end) is at file offset a - bias in the
 * file with build id key. Ranges grow page by page as samples show more
 * addresses of the same mapping. */
struct hint {
	uint64_t start, end, bias;
	struct elf_key key;
};

/* pid_gen: what one process mapped from its start or exec until valid_to:
 * the hints from its samples and, when read, its /proc/PID/maps. */
struct pid_gen {
	struct hnode h; /* keyed by pid; several generations per pid */
	struct lru lru;
	uint32_t pid;
	bool dead;
	bool maps_read;	  /* maps holds /proc/PID/maps as read at loaded_ns */
	bool announced;	  /* note_stack told its caller the maps are cached */
	uint32_t nsamples; /* stacks noted */
	int64_t valid_to; /* INT64_MAX while current */
	int64_t loaded_ns; /* last read attempt, 0: none */
	struct map_ent *maps;
	size_t nmaps;
	size_t maps_alloc; /* bytes of maps and paths */
	char *paths;
	struct hint *hints;
	uint32_t nhints, hints_cap;
	uint64_t *nomap; /* pages of sampled addresses the kernel found in no
			    file mapping (garbage of frame pointer walks) */
	uint32_t nnomap, nomap_cap;
	struct agent_perfmap *perfmap; /* JIT symbols (perfmap.h), NULL: none read */
	int64_t perfmap_ns;		/* last look at the perf map, 0: never */
	size_t bytes;
};

struct file_id {
	struct hnode h;
	uint64_t dev, ino;
	struct elf_key key;
};

/* bid_ent: where the file with a build id was seen (path, dev, ino), or,
 * with an empty path, that it was looked for in vain at miss_ns. */
struct bid_ent {
	struct hnode h;
	struct lru lru;
	struct elf_key key;
	uint64_t dev, ino;
	int64_t miss_ns;
	char path[]; /* NUL-terminated */
};

/* exe_cand: a file some process exec'd, a place to look for a build id no
 * mapping has shown; keyed (its build id read) only when one is missing. */
struct exe_cand {
	struct hnode h;
	struct lru lru;
	uint64_t dev, ino; /* as keyed; ino 0: not keyed yet */
	int64_t mtime_ns;
	char path[];
};

struct agent_symbolizer {
	struct agent_symbolizer_opts opts;
	char proc_root[PATH_MAX];
	/* kernel */
	struct ksym *ksyms;
	size_t nksyms;
	char *knames;
	/* ELF cache */
	struct htab elfs;
	struct lru elf_lru;
	size_t elf_bytes;
	/* pid maps cache */
	struct htab gens;
	struct lru gen_lru;
	size_t maps_bytes;
	/* (dev, ino) -> elf key, so a known file is not reopened */
	struct htab file_ids;
	/* build id -> where that file is (bid_ent), LRU-bounded */
	struct htab bids;
	struct lru bid_lru;
	/* exec'd files (exe_cand), LRU-bounded */
	struct htab exes;
	struct lru exe_lru;
	bool exes_unkeyed;	 /* some exe_cand has not been keyed */
	int64_t exes_checked_ns; /* last re-stat of the keyed ones */
	uint64_t elf_loads, maps_loads, elf_evictions, maps_evictions;
	uint64_t frames_build_id, frames_ip_only, frames_unmapped;
	uint64_t exe_keys;
	uint64_t sym_resolved, sym_no_file, sym_no_mapping, sym_other, sym_jit, perfmap_loads;
	char path_buf[2 * PATH_MAX + 64]; /* proc_root + a mapped path */
};

/* ---- kernel ---- */

static int ksym_cmp(const void *a, const void *b)
{
	const struct ksym *x = a, *y = b;

	return x->addr < y->addr ? -1 : x->addr > y->addr;
}

static int kallsyms_load(struct agent_symbolizer *s, const char *path)
{
	size_t cap = 0, ncap = 0, nlen = 0, last_mod = NO_MOD;
	char *line = NULL, *last_mod_name = NULL;
	size_t line_cap = 0;
	bool nonzero = false;
	int err = 0;
	FILE *f;

	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (getline(&line, &line_cap, f) > 0) {
		char type, name[512], mod[256];
		unsigned long long addr;
		size_t need;
		int n;

		mod[0] = '\0';
		n = sscanf(line, "%llx %c %511s [%255[^]]]", &addr, &type, name, mod);
		if (n < 3)
			continue;
		if (type != 't' && type != 'T' && type != 'w' && type != 'W')
			continue;
		if (addr)
			nonzero = true;
		if (s->nksyms == cap) {
			size_t nc = cap ? cap * 2 : 65536;
			struct ksym *k = realloc(s->ksyms, nc * sizeof(*k));

			if (!k) {
				err = -ENOMEM;
				goto cleanup;
			}
			s->ksyms = k;
			cap = nc;
		}
		need = strlen(name) + 1 + strlen(mod) + 1;
		if (nlen + need > ncap) {
			size_t nc = ncap ? ncap * 2 : (1u << 20);
			char *p;

			while (nc < nlen + need)
				nc *= 2;
			p = realloc(s->knames, nc);
			if (!p) {
				err = -ENOMEM;
				goto cleanup;
			}
			s->knames = p;
			ncap = nc;
		}
		s->ksyms[s->nksyms].addr = addr;
		s->ksyms[s->nksyms].name = (uint32_t)nlen;
		memcpy(s->knames + nlen, name, strlen(name) + 1);
		nlen += strlen(name) + 1;
		if (mod[0]) {
			if (!last_mod_name || strcmp(last_mod_name, mod) != 0) {
				last_mod = nlen;
				memcpy(s->knames + nlen, mod, strlen(mod) + 1);
				nlen += strlen(mod) + 1;
			}
			last_mod_name = s->knames + last_mod;
			s->ksyms[s->nksyms].mod = (uint32_t)last_mod;
		} else {
			s->ksyms[s->nksyms].mod = NO_MOD;
		}
		s->nksyms++;
	}
	if (!nonzero) {
		/* kptr_restrict hides addresses: the table is useless. */
		free(s->ksyms);
		free(s->knames);
		s->ksyms = NULL;
		s->knames = NULL;
		s->nksyms = 0;
		err = -EPERM;
		goto cleanup;
	}
	qsort(s->ksyms, s->nksyms, sizeof(*s->ksyms), ksym_cmp);
cleanup:
	free(line);
	fclose(f);
	return err;
}

size_t agent_symbolizer_kernel_symbols(const struct agent_symbolizer *s)
{
	return s->nksyms;
}

int agent_symbolize_kernel(struct agent_symbolizer *s, uint64_t addr, struct agent_frame *f)
{
	size_t lo = 0, hi = s->nksyms;
	const struct ksym *k;

	memset(f, 0, sizeof(*f));
	f->kernel = true;
	if (!s->nksyms || addr < s->ksyms[0].addr)
		return -ENOENT;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (s->ksyms[mid].addr <= addr)
			lo = mid;
		else
			hi = mid;
	}
	k = &s->ksyms[lo];
	/* Past the last symbol (or far past any symbol) is not a hit. */
	if (addr - k->addr > (1u << 20))
		return -ENOENT;
	f->name = s->knames + k->name;
	f->sym_offset = addr - k->addr;
	f->module = k->mod == NO_MOD ? NULL : s->knames + k->mod;
	return 0;
}

/* ---- ELF ---- */

static uint64_t key_hash(const struct elf_key *k)
{
	return hash64(k->bytes, k->len, k->kind);
}

static bool key_eq(const struct elf_key *a, const struct elf_key *b)
{
	return a->kind == b->kind && a->len == b->len && memcmp(a->bytes, b->bytes, a->len) == 0;
}

static int elf_read_build_id(Elf *e, uint8_t *id)
{
	Elf_Scn *scn = NULL;
	size_t nphdr = 0;

	while ((scn = elf_nextscn(e, scn)) != NULL) {
		GElf_Shdr sh;
		Elf_Data *d;
		GElf_Nhdr nh;
		size_t off = 0, name_off, desc_off;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_NOTE)
			continue;
		d = elf_getdata(scn, NULL);
		if (!d)
			continue;
		while ((off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
			if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
			    memcmp((char *)d->d_buf + name_off, "GNU", 4) == 0 && nh.n_descsz > 0) {
				size_t len = nh.n_descsz > AGENT_BUILD_ID_MAX ? AGENT_BUILD_ID_MAX
									   : nh.n_descsz;

				memcpy(id, (char *)d->d_buf + desc_off, len);
				return (int)len;
			}
		}
	}
	/* No section headers: look at PT_NOTE segments. */
	if (elf_getphdrnum(e, &nphdr) != 0)
		return -ENOENT;
	for (size_t i = 0; i < nphdr; i++) {
		GElf_Phdr ph;
		Elf_Data *d;
		GElf_Nhdr nh;
		size_t off = 0, name_off, desc_off;

		if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_NOTE)
			continue;
		d = elf_getdata_rawchunk(e, (int64_t)ph.p_offset, ph.p_filesz, ELF_T_NHDR);
		if (!d)
			continue;
		while ((off = gelf_getnote(d, off, &nh, &name_off, &desc_off)) > 0) {
			if (nh.n_type == NT_GNU_BUILD_ID && nh.n_namesz == 4 &&
			    memcmp((char *)d->d_buf + name_off, "GNU", 4) == 0 && nh.n_descsz > 0) {
				size_t len = nh.n_descsz > AGENT_BUILD_ID_MAX ? AGENT_BUILD_ID_MAX
									   : nh.n_descsz;

				memcpy(id, (char *)d->d_buf + desc_off, len);
				return (int)len;
			}
		}
	}
	return -ENOENT;
}

int agent_elf_build_id(const char *path, uint8_t *id)
{
	Elf *e;
	int fd, ret;

	elf_version(EV_CURRENT);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!e) {
		close(fd);
		return -EINVAL;
	}
	ret = elf_read_build_id(e, id);
	elf_end(e);
	close(fd);
	return ret;
}

static int esym_cmp(const void *a, const void *b)
{
	const struct elf_sym *x = a, *y = b;

	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	/* Among aliases prefer global, then weak, then local symbols. */
	if (x->bind != y->bind) {
		int rx = x->bind == STB_GLOBAL ? 0 : x->bind == STB_WEAK ? 1 : 2;
		int ry = y->bind == STB_GLOBAL ? 0 : y->bind == STB_WEAK ? 1 : 2;

		return rx - ry;
	}
	return 0;
}

static void elf_file_free(struct elf_file *ef)
{
	if (!ef)
		return;
	free(ef->segs);
	free(ef->syms);
	free(ef->names);
	free(ef);
}

/* elf_parse reads e's loadable segments and its function symbols: .symtab,
 * else dbg's .symtab (dbg: the separate debug file of a stripped binary,
 * may be NULL), else .dynsym. With dbg_only, e is a separate debug file
 * standing in for a binary that cannot be found: its program headers keep
 * addresses but not file offsets, so its executable segments are taken as
 * loaded at their file offset (vaddr == offset, true of GNU ld's default
 * text layout; other layouts stay unresolved or misnamed). */
static struct elf_file *elf_parse(Elf *e, Elf *dbg, const struct elf_key *key, bool dbg_only)
{
	struct elf_file *ef = calloc(1, sizeof(*ef));
	Elf_Scn *scn = NULL, *symtab = NULL, *dynsym = NULL, *use;
	Elf *src = e;
	size_t nphdr = 0, names_len = 0, names_cap = 0, cap = 0;
	GElf_Shdr sh;

	if (!ef)
		return NULL;
	ef->key = *key;
	if (elf_getphdrnum(e, &nphdr) == 0 && nphdr) {
		ef->segs = calloc(nphdr, sizeof(*ef->segs));
		if (!ef->segs)
			goto fail;
		for (size_t i = 0; i < nphdr; i++) {
			GElf_Phdr ph;

			if (!gelf_getphdr(e, (int)i, &ph) || ph.p_type != PT_LOAD)
				continue;
			if (dbg_only && !(ph.p_flags & PF_X))
				continue;
			ef->segs[ef->nsegs].off = dbg_only ? ph.p_vaddr : ph.p_offset;
			ef->segs[ef->nsegs].vaddr = ph.p_vaddr;
			ef->segs[ef->nsegs].filesz = dbg_only ? ph.p_memsz : ph.p_filesz;
			ef->nsegs++;
		}
	}
	while ((scn = elf_nextscn(e, scn)) != NULL) {
		if (!gelf_getshdr(scn, &sh))
			continue;
		if (sh.sh_type == SHT_SYMTAB)
			symtab = scn;
		else if (sh.sh_type == SHT_DYNSYM)
			dynsym = scn;
	}
	if (!symtab && dbg) {
		for (scn = NULL; (scn = elf_nextscn(dbg, scn)) != NULL;) {
			if (gelf_getshdr(scn, &sh) && sh.sh_type == SHT_SYMTAB) {
				symtab = scn;
				src = dbg;
				break;
			}
		}
	}
	use = symtab ? symtab : dynsym;
	if (use && gelf_getshdr(use, &sh) && sh.sh_entsize) {
		Elf_Data *d = elf_getdata(use, NULL);
		size_t n = d ? sh.sh_size / sh.sh_entsize : 0;

		for (size_t i = 0; i < n; i++) {
			GElf_Sym sym;
			const char *name;
			size_t len;
			int type;

			if (!gelf_getsym(d, (int)i, &sym))
				continue;
			type = GELF_ST_TYPE(sym.st_info);
			if ((type != STT_FUNC && type != STT_GNU_IFUNC) || sym.st_shndx == SHN_UNDEF ||
			    !sym.st_value)
				continue;
			name = elf_strptr(src, sh.sh_link, sym.st_name);
			if (!name || !*name)
				continue;
			if (ef->nsyms == cap) {
				size_t nc = cap ? cap * 2 : 256;
				struct elf_sym *p = realloc(ef->syms, nc * sizeof(*p));

				if (!p)
					goto fail;
				ef->syms = p;
				cap = nc;
			}
			len = strlen(name) + 1;
			if (names_len + len > names_cap) {
				size_t nc = names_cap ? names_cap * 2 : 4096;
				char *p;

				while (nc < names_len + len)
					nc *= 2;
				p = realloc(ef->names, nc);
				if (!p)
					goto fail;
				ef->names = p;
				names_cap = nc;
			}
			memcpy(ef->names + names_len, name, len);
			ef->syms[ef->nsyms].addr = sym.st_value;
			ef->syms[ef->nsyms].size = sym.st_size;
			ef->syms[ef->nsyms].name = (uint32_t)names_len;
			ef->syms[ef->nsyms].bind = GELF_ST_BIND(sym.st_info);
			ef->nsyms++;
			names_len += len;
		}
	}
	if (ef->nsyms) {
		size_t j = 0;

		qsort(ef->syms, ef->nsyms, sizeof(*ef->syms), esym_cmp);
		for (size_t i = 0; i < ef->nsyms; i++) /* drop aliases */
			if (!j || ef->syms[j - 1].addr != ef->syms[i].addr)
				ef->syms[j++] = ef->syms[i];
		ef->nsyms = j;
	}
	ef->bytes = sizeof(*ef) + ef->nsegs * sizeof(*ef->segs) + cap * sizeof(*ef->syms) + names_cap;
	return ef;
fail:
	elf_file_free(ef);
	return NULL;
}

static struct elf_file *elf_find(struct agent_symbolizer *s, const struct elf_key *key)
{
	uint64_t h = key_hash(key);

	for (struct hnode *n = htab_first(&s->elfs, h); n; n = htab_next(n)) {
		struct elf_file *ef = container_of(n, struct elf_file, h);

		if (key_eq(&ef->key, key)) {
			lru_touch(&s->elf_lru, &ef->lru);
			return ef;
		}
	}
	return NULL;
}

static void elf_evict(struct agent_symbolizer *s, struct elf_file *ef)
{
	htab_remove(&s->elfs, &ef->h);
	lru_unlink(&ef->lru);
	s->elf_bytes -= ef->bytes;
	s->elf_evictions++;
	elf_file_free(ef);
}

static void elf_insert(struct agent_symbolizer *s, struct elf_file *ef)
{
	while (s->elfs.n &&
	       (s->elfs.n + 1 > s->opts.max_elf_files || s->elf_bytes + ef->bytes > s->opts.max_elf_bytes))
		elf_evict(s, container_of(s->elf_lru.prev, struct elf_file, lru));
	if (htab_insert(&s->elfs, &ef->h, key_hash(&ef->key)) < 0) {
		elf_file_free(ef);
		return;
	}
	lru_push_front(&s->elf_lru, &ef->lru);
	s->elf_bytes += ef->bytes;
}

/* ---- file identities: (dev, ino) -> key, build id -> where ---- */

static uint64_t file_id_hash(uint64_t dev, uint64_t ino)
{
	uint64_t k[2] = { dev, ino };

	return hash64(k, sizeof(k), 7);
}

static struct file_id *file_id_find(struct agent_symbolizer *s, uint64_t dev, uint64_t ino)
{
	for (struct hnode *n = htab_first(&s->file_ids, file_id_hash(dev, ino)); n; n = htab_next(n)) {
		struct file_id *fi = container_of(n, struct file_id, h);

		if (fi->dev == dev && fi->ino == ino)
			return fi;
	}
	return NULL;
}

static void file_ids_clear(struct agent_symbolizer *s)
{
	for (size_t i = 0; i < s->file_ids.nb; i++) {
		struct hnode *n = s->file_ids.b[i], *next;

		for (; n; n = next) {
			next = n->next;
			free(container_of(n, struct file_id, h));
		}
		s->file_ids.b[i] = NULL;
	}
	s->file_ids.n = 0;
}

static void file_id_remember(struct agent_symbolizer *s, uint64_t dev, uint64_t ino,
			     const struct elf_key *key)
{
	struct file_id *fi;

	if (!ino)
		return;
	if (s->file_ids.n >= FILE_IDS_MAX)
		file_ids_clear(s);
	fi = calloc(1, sizeof(*fi));
	if (!fi)
		return;
	fi->dev = dev;
	fi->ino = ino;
	fi->key = *key;
	if (htab_insert(&s->file_ids, &fi->h, file_id_hash(dev, ino)) < 0)
		free(fi);
}

/* maps_dev encodes st_dev as /proc/PID/maps shows it (major << 32 | minor). */
static uint64_t maps_dev(dev_t d)
{
	return ((uint64_t)major(d) << 32) | minor(d);
}

static void bid_drop(struct agent_symbolizer *s, struct bid_ent *b)
{
	htab_remove(&s->bids, &b->h);
	lru_unlink(&b->lru);
	free(b);
}

static struct bid_ent *bid_find(struct agent_symbolizer *s, const struct elf_key *key)
{
	for (struct hnode *n = htab_first(&s->bids, key_hash(key)); n; n = htab_next(n)) {
		struct bid_ent *b = container_of(n, struct bid_ent, h);

		if (key_eq(&b->key, key)) {
			lru_touch(&s->bid_lru, &b->lru);
			return b;
		}
	}
	return NULL;
}

/* bid_remember records that the file with build id key is at path (dev
 * and ino as maps shows them, 0 when unknown); path "" records that it was
 * looked for in vain just now. Other keys than build ids are ignored. */
static void bid_remember(struct agent_symbolizer *s, const struct elf_key *key, const char *path,
			 uint64_t dev, uint64_t ino)
{
	size_t len = strlen(path);
	struct bid_ent *b;

	if (key->kind != 1)
		return;
	b = bid_find(s, key);
	if (b && strcmp(b->path, path) == 0) {
		b->dev = dev;
		b->ino = ino;
		b->miss_ns = len ? 0 : sh_now_mono_ns();
		return;
	}
	if (b)
		bid_drop(s, b);
	while (s->bids.n >= BIDS_MAX)
		bid_drop(s, container_of(s->bid_lru.prev, struct bid_ent, lru));
	b = calloc(1, sizeof(*b) + len + 1);
	if (!b)
		return;
	b->key = *key;
	b->dev = dev;
	b->ino = ino;
	b->miss_ns = len ? 0 : sh_now_mono_ns();
	memcpy(b->path, path, len + 1);
	if (htab_insert(&s->bids, &b->h, key_hash(key)) < 0) {
		free(b);
		return;
	}
	lru_push_front(&s->bid_lru, &b->lru);
}

/* elf_known says whether the file with build id key is parsed or its path
 * is known. */
static bool elf_known(struct agent_symbolizer *s, const struct elf_key *key)
{
	struct bid_ent *b;

	if (elf_find(s, key))
		return true;
	b = bid_find(s, key);
	return b && b->path[0];
}

static void exe_drop(struct agent_symbolizer *s, struct exe_cand *c)
{
	htab_remove(&s->exes, &c->h);
	lru_unlink(&c->lru);
	free(c);
}

/* exe_add remembers path (absolute, borrowed) as an exe_cand. */
static void exe_add(struct agent_symbolizer *s, const char *path)
{
	size_t len = strnlen(path, PATH_MAX);
	struct exe_cand *c;
	uint64_t h;

	if (path[0] != '/' || len >= PATH_MAX)
		return;
	h = hash64(path, len, 11);
	for (struct hnode *n = htab_first(&s->exes, h); n; n = htab_next(n)) {
		c = container_of(n, struct exe_cand, h);
		if (strcmp(c->path, path) == 0) {
			lru_touch(&s->exe_lru, &c->lru);
			return;
		}
	}
	while (s->exes.n >= EXES_MAX)
		exe_drop(s, container_of(s->exe_lru.prev, struct exe_cand, lru));
	c = calloc(1, sizeof(*c) + len + 1);
	if (!c)
		return;
	memcpy(c->path, path, len);
	if (htab_insert(&s->exes, &c->h, h) < 0) {
		free(c);
		return;
	}
	lru_push_front(&s->exe_lru, &c->lru);
	s->exes_unkeyed = true;
}

void agent_symbolizer_note_exe(struct agent_symbolizer *s, const char *path)
{
	if (path)
		exe_add(s, path);
}

/* strvec: a growable array of malloc'd strings. */
struct strvec {
	char **v;
	size_t n, cap;
};

static void strvec_push(struct strvec *sv, const char *str)
{
	char *dup;

	if (sv->n == sv->cap) {
		size_t nc = sv->cap ? sv->cap * 2 : 16;
		char **p = realloc(sv->v, nc * sizeof(*p));

		if (!p)
			return;
		sv->v = p;
		sv->cap = nc;
	}
	dup = strdup(str);
	if (dup)
		sv->v[sv->n++] = dup;
}

/* find_lib looks for library name as the dynamic loader would, roughly:
 * in runpath (DT_RUNPATH/DT_RPATH, may be NULL; $ORIGIN is origin's
 * directory), then the usual directories. Appends what it finds to out. */
static void find_lib(const char *name, const char *runpath, const char *origin, struct strvec *out)
{
	static const char *const dirs[] = {
		"/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
		"/lib/x86_64-linux-gnu",     "/lib/aarch64-linux-gnu",	   "/lib64",	 "/lib",
		"/usr/local/lib",
	};
	char path[PATH_MAX], dir[PATH_MAX];
	const char *p = runpath;

	if (strchr(name, '/'))
		return;
	while (p && *p) {
		size_t len = strcspn(p, ":");
		const char *slash = strrchr(origin, '/');

		if (len < sizeof(dir)) {
			int n;

			memcpy(dir, p, len);
			dir[len] = '\0';
			if (strncmp(dir, "$ORIGIN", 7) == 0 && slash)
				n = snprintf(path, sizeof(path), "%.*s%s/%s", (int)(slash - origin),
					     origin, dir + 7, name);
			else
				n = snprintf(path, sizeof(path), "%s/%s", dir, name);
			if (n > 0 && (size_t)n < sizeof(path) && path[0] == '/' &&
			    access(path, F_OK) == 0) {
				strvec_push(out, path);
				return;
			}
		}
		p += len;
		if (*p == ':')
			p++;
	}
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", dirs[i], name);
		if (access(path, F_OK) == 0) {
			strvec_push(out, path);
			return;
		}
	}
}

/* exe_read puts the build id of file c (exec'd, or needed by one) into the
 * index, and appends the paths of the libraries it needs (DT_NEEDED) to
 * libs: short-lived processes map them, and their maps are gone when a
 * frame in them is named. */
static void exe_read(struct agent_symbolizer *s, const struct exe_cand *c, uint64_t ino,
		     struct strvec *libs)
{
	char real[PATH_MAX];
	Elf_Scn *scn = NULL;
	struct elf_key key;
	Elf *e = NULL;
	int fd, len;

	s->exe_keys++;
	fd = open(c->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!e || elf_kind(e) != ELF_K_ELF)
		goto cleanup;
	memset(&key, 0, sizeof(key));
	len = elf_read_build_id(e, key.bytes);
	if (len > 0) {
		key.kind = 1;
		key.len = (uint8_t)len;
		/* the path as maps would show it (/usr/bin/as -> x86_64-linux-gnu-as) */
		bid_remember(s, &key, realpath(c->path, real) ? real : c->path, c->dev, ino);
	}
	while ((scn = elf_nextscn(e, scn)) != NULL) {
		const char *runpath = NULL;
		struct strvec needed = { 0 };
		GElf_Shdr sh;
		Elf_Data *d;

		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNAMIC || !sh.sh_entsize)
			continue;
		d = elf_getdata(scn, NULL);
		for (size_t i = 0; d && i < sh.sh_size / sh.sh_entsize; i++) {
			GElf_Dyn dyn;
			const char *str;

			if (!gelf_getdyn(d, (int)i, &dyn) || dyn.d_tag == DT_NULL)
				break;
			if (dyn.d_tag != DT_NEEDED && dyn.d_tag != DT_RUNPATH &&
			    dyn.d_tag != DT_RPATH)
				continue;
			str = elf_strptr(e, sh.sh_link, dyn.d_un.d_val);
			if (!str)
				continue;
			if (dyn.d_tag == DT_NEEDED)
				strvec_push(&needed, str);
			else if (!runpath || dyn.d_tag == DT_RUNPATH)
				runpath = str;
		}
		for (size_t i = 0; i < needed.n; i++) {
			find_lib(needed.v[i], runpath, c->path, libs);
			free(needed.v[i]);
		}
		free(needed.v);
		break;
	}
cleanup:
	if (e)
		elf_end(e);
	close(fd);
}

/* exes_key reads the build ids of the exec'd files not keyed yet and of
 * the libraries they need, and (at most every EXES_RECHECK_NS) of those
 * whose file changed since, into the build id index. Called when a build
 * id is not found elsewhere. */
static void exes_key(struct agent_symbolizer *s)
{
	int64_t now = sh_now_mono_ns();
	bool recheck = now - s->exes_checked_ns >= EXES_RECHECK_NS;
	struct strvec libs = { 0 };

	if (recheck)
		s->exes_checked_ns = now;
	/* a few passes: the libraries found add candidates, which need others */
	for (int pass = 0; pass < 4 && (s->exes_unkeyed || recheck); pass++) {
		s->exes_unkeyed = false;
		for (struct lru *l = s->exe_lru.next; l != &s->exe_lru; l = l->next) {
			struct exe_cand *c = container_of(l, struct exe_cand, lru);
			struct stat st;
			int64_t mtime;

			if (c->ino && !recheck)
				continue;
			if (stat(c->path, &st) < 0) {
				c->ino = UINT64_MAX; /* gone: looked at again at the next recheck */
				continue;
			}
			mtime = (int64_t)st.st_mtim.tv_sec * SH_NS_PER_SEC + st.st_mtim.tv_nsec;
			if (c->ino == st.st_ino && c->dev == maps_dev(st.st_dev) &&
			    c->mtime_ns == mtime)
				continue;
			c->dev = maps_dev(st.st_dev);
			c->ino = st.st_ino ? st.st_ino : UINT64_MAX;
			c->mtime_ns = mtime;
			exe_read(s, c, st.st_ino, &libs);
		}
		/* added after the walk: adding may evict from the list */
		for (size_t i = 0; i < libs.n; i++) {
			exe_add(s, libs.v[i]);
			free(libs.v[i]);
		}
		libs.n = 0;
		recheck = false;
	}
	free(libs.v);
	s->exes_unkeyed = false;
}

/* ---- finding and parsing ELF files ---- */

/* elf_key_of reads the key of ELF file e (open at fd): its build id, else
 * (dev, ino) of mapping m (may be NULL) or of the file. */
static int elf_key_of(Elf *e, int fd, const struct map_ent *m, struct elf_key *key)
{
	uint64_t di[2];
	struct stat st;
	int len;

	memset(key, 0, sizeof(*key));
	len = elf_read_build_id(e, key->bytes);
	if (len > 0) {
		key->kind = 1;
		key->len = (uint8_t)len;
		return 0;
	}
	memset(key->bytes, 0, sizeof(key->bytes));
	if (fstat(fd, &st) < 0)
		return -errno;
	di[0] = m ? m->dev : maps_dev(st.st_dev);
	di[1] = m && m->ino ? m->ino : (uint64_t)st.st_ino;
	key->kind = 2;
	key->len = sizeof(di);
	memcpy(key->bytes, di, sizeof(di));
	return 0;
}

static void debug_path(const struct elf_key *key, char *buf, size_t len)
{
	int n = snprintf(buf, len, "/usr/lib/debug/.build-id/%02x/", key->bytes[0]);

	for (int i = 1; i < key->len && n < (int)len - 3; i++)
		n += snprintf(buf + n, len - (size_t)n, "%02x", key->bytes[i]);
	snprintf(buf + n, len - (size_t)n, ".debug");
}

/* elf_parse_insert parses e (whose key is key) with its separate debug
 * file if there is one, and caches the result. Returns it or NULL. */
static struct elf_file *elf_parse_insert(struct agent_symbolizer *s, Elf *e,
					 const struct elf_key *key, bool dbg_only)
{
	struct elf_file *ef;
	Elf *dbg = NULL;
	int dfd = -1;

	/* a stripped binary's symbols may be in its separate debug file
	 * (Debian's *-dbg / -dbgsym packages), found by build id */
	if (!dbg_only && key->kind == 1 && key->len > 1) {
		char path[128];

		debug_path(key, path, sizeof(path));
		dfd = open(path, O_RDONLY | O_CLOEXEC);
		if (dfd >= 0) {
			dbg = elf_begin(dfd, ELF_C_READ_MMAP, NULL);
			if (dbg && elf_kind(dbg) != ELF_K_ELF) {
				elf_end(dbg);
				dbg = NULL;
			}
		}
	}
	ef = elf_parse(e, dbg, key, dbg_only);
	if (dbg)
		elf_end(dbg);
	if (dfd >= 0)
		close(dfd);
	if (!ef)
		return NULL;
	s->elf_loads++;
	elf_insert(s, ef);
	return elf_find(s, key); /* NULL if it could not be inserted */
}

/* load_fd reads the key of the file open at fd (borrowed) into *got and,
 * when want is NULL or equal to it and parse is set, sets *out to its
 * parsed symbols (from the cache, else parsed now; NULL on failure).
 * Returns 0, -ENOEXEC (not ELF) or -ESTALE (not the file want names). */
static int load_fd(struct agent_symbolizer *s, int fd, const struct map_ent *m,
		   const struct elf_key *want, bool parse, struct elf_key *got,
		   struct elf_file **out)
{
	Elf *e;
	int err;

	*out = NULL;
	e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!e || elf_kind(e) != ELF_K_ELF) {
		err = -ENOEXEC;
		goto cleanup;
	}
	err = elf_key_of(e, fd, m, got);
	if (err < 0)
		goto cleanup;
	if (want && !key_eq(want, got)) {
		err = -ESTALE;
		goto cleanup;
	}
	if (parse) {
		*out = elf_find(s, got);
		if (!*out)
			*out = elf_parse_insert(s, e, got, false);
	}
cleanup:
	if (e)
		elf_end(e);
	return err;
}

/* open_mapped opens the file behind mapping m of gen: through
 * /proc/PID/map_files while the process lives (works for deleted files
 * and other mount namespaces), else through /proc/PID/root, else by path. */
static int open_mapped(struct agent_symbolizer *s, const struct pid_gen *g, const struct map_ent *m)
{
	const char *path = g->paths + m->path;
	char clean[PATH_MAX];
	size_t len;
	int fd;

	if (!g->dead) {
		snprintf(s->path_buf, sizeof(s->path_buf), "%s/%u/map_files/%" PRIx64 "-%" PRIx64,
			 s->proc_root, g->pid, m->start, m->end);
		fd = open(s->path_buf, O_RDONLY | O_CLOEXEC);
		if (fd >= 0)
			return fd;
	}
	snprintf(clean, sizeof(clean), "%s", path);
	len = strlen(clean);
	if (len > 10 && strcmp(clean + len - 10, " (deleted)") == 0)
		clean[len - 10] = '\0';
	if (!g->dead) {
		snprintf(s->path_buf, sizeof(s->path_buf), "%s/%u/root%s", s->proc_root, g->pid, clean);
		fd = open(s->path_buf, O_RDONLY | O_CLOEXEC);
		if (fd >= 0)
			return fd;
	}
	fd = open(clean, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* map_set_key records m's key and, for a build id, where the file is. */
static void map_set_key(struct agent_symbolizer *s, const struct pid_gen *g, struct map_ent *m,
			const struct elf_key *key)
{
	const char *path = g->paths + m->path;
	size_t len = strlen(path);

	m->key = *key;
	m->key_state = KEY_OK;
	file_id_remember(s, m->dev, m->ino, key);
	if (path[0] == '/' && !(len > 10 && strcmp(path + len - 10, " (deleted)") == 0))
		bid_remember(s, key, path, m->dev, m->ino);
}

/* map_key finds m's key (build id, else dev + ino) without parsing its
 * symbols: from the (dev, ino) cache, else by opening the file. */
static int map_key(struct agent_symbolizer *s, const struct pid_gen *g, struct map_ent *m)
{
	struct elf_file *unused;
	struct file_id *fi;
	struct elf_key key;
	int fd, err;

	if (m->key_state == KEY_OK)
		return 0;
	if (m->key_state == KEY_FAILED)
		return -ENOENT;
	fi = file_id_find(s, m->dev, m->ino);
	if (fi) {
		m->key = fi->key;
		m->key_state = KEY_OK;
		return 0;
	}
	fd = open_mapped(s, g, m);
	if (fd < 0) {
		m->key_state = KEY_FAILED;
		return fd;
	}
	err = load_fd(s, fd, m, NULL, false, &key, &unused);
	close(fd);
	if (err < 0) {
		m->key_state = KEY_FAILED;
		return err;
	}
	map_set_key(s, g, m, &key);
	return 0;
}

/* elf_at_path parses the file at path (borrowed; may be an index entry's,
 * so copied before the index changes) if its build id is key. */
static struct elf_file *elf_at_path(struct agent_symbolizer *s, const char *where,
				    const struct elf_key *key)
{
	struct elf_file *ef = NULL;
	char path[PATH_MAX];
	struct elf_key got;
	int fd, err;

	snprintf(path, sizeof(path), "%s", where);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	err = load_fd(s, fd, NULL, key, true, &got, &ef);
	close(fd);
	if (err == -ESTALE)
		bid_remember(s, &got, path, 0, 0); /* the path holds another build now */
	return ef;
}

/* elf_debug_only parses the separate debug file of build id key alone. */
static struct elf_file *elf_debug_only(struct agent_symbolizer *s, const struct elf_key *key)
{
	struct elf_file *ef = NULL;
	struct elf_key got;
	char path[128];
	Elf *e;
	int fd;

	if (key->kind != 1 || key->len < 2)
		return NULL;
	debug_path(key, path, sizeof(path));
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return NULL;
	e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (e && elf_kind(e) == ELF_K_ELF && elf_key_of(e, fd, NULL, &got) == 0 &&
	    key_eq(&got, key))
		ef = elf_parse_insert(s, e, key, true);
	if (e)
		elf_end(e);
	close(fd);
	return ef;
}

/* elf_by_build_id returns the parsed file with build id key, looking, in
 * this order, in the cache; at mapping m (may be NULL: the mapping of the
 * sampled process that covers the address, if its maps were read); where
 * a file with this build id was seen; at the files processes exec'd; and
 * at its separate debug file alone. A build id found nowhere is looked for
 * again only after MISS_RETRY_NS. */
static struct elf_file *elf_by_build_id(struct agent_symbolizer *s, const struct elf_key *key,
					const struct pid_gen *g, struct map_ent *m)
{
	struct elf_file *ef = elf_find(s, key);
	struct bid_ent *b;
	struct elf_key got;
	int fd;

	if (ef)
		return ef;
	if (m && (m->key_state == KEY_UNKNOWN ||
		  (m->key_state == KEY_OK && key_eq(&m->key, key)))) {
		fd = open_mapped(s, g, m);
		if (fd >= 0) {
			int err = load_fd(s, fd, m, key, true, &got, &ef);

			close(fd);
			if (err == 0 && m->key_state == KEY_UNKNOWN)
				map_set_key(s, g, m, &got);
			if (ef)
				return ef;
		}
	}
	b = bid_find(s, key);
	if (b && b->path[0]) {
		ef = elf_at_path(s, b->path, key);
		if (ef)
			return ef;
		b = bid_find(s, key); /* elf_at_path may have replaced it */
		if (b && b->path[0]) {
			bid_drop(s, b);
			b = NULL;
		}
	}
	if (b && !s->exes_unkeyed && sh_now_mono_ns() - b->miss_ns < MISS_RETRY_NS)
		return NULL; /* looked for just now, and no new place to look */
	exes_key(s);
	b = bid_find(s, key);
	if (b && b->path[0] && (ef = elf_at_path(s, b->path, key)) != NULL)
		return ef;
	ef = elf_debug_only(s, key);
	if (!ef)
		bid_remember(s, key, "", 0, 0);
	return ef;
}

/* map_elf returns the parsed file behind mapping m (for frames without a
 * build id from the kernel), finding m's key first when needed. */
static struct elf_file *map_elf(struct agent_symbolizer *s, const struct pid_gen *g,
				struct map_ent *m)
{
	struct elf_file *ef = NULL;
	struct file_id *fi;
	struct elf_key key;
	int fd, err;

	if (m->key_state == KEY_FAILED)
		return NULL;
	if (m->key_state == KEY_UNKNOWN && (fi = file_id_find(s, m->dev, m->ino)) != NULL) {
		m->key = fi->key;
		m->key_state = KEY_OK;
	}
	if (m->key_state == KEY_OK) {
		ef = elf_find(s, &m->key);
		if (ef)
			return ef;
		if (m->key.kind == 1)
			return elf_by_build_id(s, &m->key, g, m);
	}
	fd = open_mapped(s, g, m);
	if (fd < 0) {
		if (m->key_state != KEY_OK)
			m->key_state = KEY_FAILED;
		return NULL;
	}
	/* the path may hold another file by now: then no symbols rather than wrong ones */
	err = load_fd(s, fd, m, m->key_state == KEY_OK ? &m->key : NULL, true, &key, &ef);
	close(fd);
	if (err < 0) {
		if (m->key_state != KEY_OK)
			m->key_state = KEY_FAILED;
		return NULL;
	}
	if (m->key_state != KEY_OK)
		map_set_key(s, g, m, &key);
	return ef;
}

/* ---- pid maps ---- */

static uint64_t pid_hash(uint32_t pid)
{
	return hash64(&pid, sizeof(pid), 3);
}

static void gen_free(struct pid_gen *g)
{
	if (!g)
		return;
	free(g->maps);
	free(g->paths);
	free(g->hints);
	free(g->nomap);
	agent_perfmap_free(g->perfmap);
	free(g);
}

static void gen_drop(struct agent_symbolizer *s, struct pid_gen *g)
{
	htab_remove(&s->gens, &g->h);
	lru_unlink(&g->lru);
	s->maps_bytes -= g->bytes;
	gen_free(g);
}

static void gen_evict(struct agent_symbolizer *s, struct pid_gen *g)
{
	gen_drop(s, g);
	s->maps_evictions++;
}

/* gen_account sets g's size (maps_alloc: bytes of its maps and paths) and
 * evicts other generations, least recently used first, over the caps. */
static void gen_account(struct agent_symbolizer *s, struct pid_gen *g, size_t maps_alloc)
{
	s->maps_bytes -= g->bytes;
	g->maps_alloc = maps_alloc;
	g->bytes = sizeof(*g) + maps_alloc + (size_t)g->hints_cap * sizeof(*g->hints) +
		   (size_t)g->nomap_cap * sizeof(*g->nomap) + agent_perfmap_bytes(g->perfmap);
	s->maps_bytes += g->bytes;
	while (s->gens.n > 1 && s->maps_bytes > s->opts.max_maps_bytes) {
		struct pid_gen *old = container_of(s->gen_lru.prev, struct pid_gen, lru);

		if (old == g)
			break;
		gen_evict(s, old);
	}
}

/* read_maps fills g's executable mappings from /proc/PID/maps. */
static int read_maps(struct agent_symbolizer *s, struct pid_gen *g)
{
	size_t cap = 0, n = 0, plen = 0, pcap = 0, line_cap = 0;
	struct map_ent *maps = NULL;
	char *paths = NULL, *line = NULL;
	int err = 0;
	FILE *f;

	snprintf(s->path_buf, sizeof(s->path_buf), "%s/%u/maps", s->proc_root, g->pid);
	f = fopen(s->path_buf, "re");
	if (!f)
		return errno == ENOENT ? -ESRCH : -errno;
	while (getline(&line, &line_cap, f) > 0) {
		unsigned long long start, end, off, ino;
		unsigned maj, min;
		char perms[8];
		int pos = 0;
		const char *path;
		size_t len;

		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %n", &start, &end, perms, &off, &maj,
			   &min, &ino, &pos) < 7)
			continue;
		if (strlen(perms) < 3 || perms[2] != 'x')
			continue;
		path = line + pos;
		len = strcspn(path, "\n");
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			struct map_ent *p = realloc(maps, nc * sizeof(*p));

			if (!p) {
				err = -ENOMEM;
				goto cleanup;
			}
			maps = p;
			cap = nc;
		}
		if (plen + len + 1 > pcap) {
			size_t nc = pcap ? pcap * 2 : 1024;
			char *p;

			while (nc < plen + len + 1)
				nc *= 2;
			p = realloc(paths, nc);
			if (!p) {
				err = -ENOMEM;
				goto cleanup;
			}
			paths = p;
			pcap = nc;
		}
		memset(&maps[n], 0, sizeof(maps[n]));
		maps[n].start = start;
		maps[n].end = end;
		maps[n].pgoff = off;
		maps[n].dev = ((uint64_t)maj << 32) | min;
		maps[n].ino = ino;
		maps[n].path = (uint32_t)plen;
		if (len == 0) {
			memcpy(paths + plen, "[anon]", 7);
			plen += 7;
			maps[n].key_state = KEY_FAILED;
		} else {
			memcpy(paths + plen, path, len);
			paths[plen + len] = '\0';
			plen += len + 1;
			if (path[0] == '[' || !ino)
				maps[n].key_state = KEY_FAILED; /* [vdso], [vsyscall], ... */
		}
		n++;
	}
	/* Keep the previous maps' resolved keys for the same files. */
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < g->nmaps; j++)
			if (g->maps[j].start == maps[i].start && g->maps[j].ino == maps[i].ino &&
			    g->maps[j].key_state == KEY_OK)
				maps[i].key = g->maps[j].key, maps[i].key_state = KEY_OK;
	free(g->maps);
	free(g->paths);
	g->maps = maps;
	g->paths = paths;
	g->nmaps = n;
	maps = NULL;
	paths = NULL;
	g->maps_read = true;
	gen_account(s, g, cap * sizeof(*g->maps) + pcap);
	s->maps_loads++;
cleanup:
	free(line);
	free(maps);
	free(paths);
	fclose(f);
	return err;
}

/* gen_read (re-)reads g's maps now; a failure is not retried before
 * MAPS_REFRESH_NS (see agent_symbolize_user). */
static int gen_read(struct agent_symbolizer *s, struct pid_gen *g)
{
	g->loaded_ns = sh_now_mono_ns();
	return read_maps(s, g);
}

static struct pid_gen *gen_find(struct agent_symbolizer *s, uint32_t pid, int64_t ts)
{
	struct pid_gen *best = NULL;

	for (struct hnode *n = htab_first(&s->gens, pid_hash(pid)); n; n = htab_next(n)) {
		struct pid_gen *g = container_of(n, struct pid_gen, h);

		if (g->pid != pid || (g->valid_to != INT64_MAX && g->valid_to <= ts))
			continue;
		if (!best || g->valid_to < best->valid_to)
			best = g;
	}
	return best;
}

static struct pid_gen *gen_current(struct agent_symbolizer *s, uint32_t pid)
{
	for (struct hnode *n = htab_first(&s->gens, pid_hash(pid)); n; n = htab_next(n)) {
		struct pid_gen *g = container_of(n, struct pid_gen, h);

		if (g->pid == pid && g->valid_to == INT64_MAX)
			return g;
	}
	return NULL;
}

/* gen_new adds an empty current generation for pid (maps not read). */
static struct pid_gen *gen_new(struct agent_symbolizer *s, uint32_t pid)
{
	struct pid_gen *g = calloc(1, sizeof(*g));

	if (!g)
		return NULL;
	g->pid = pid;
	g->valid_to = INT64_MAX;
	g->bytes = sizeof(*g);
	lru_init(&g->lru);
	while (s->gens.n && (s->gens.n + 1 > s->opts.max_pid_maps ||
			     s->maps_bytes + g->bytes > s->opts.max_maps_bytes))
		gen_evict(s, container_of(s->gen_lru.prev, struct pid_gen, lru));
	if (htab_insert(&s->gens, &g->h, pid_hash(pid)) < 0) {
		gen_free(g);
		return NULL;
	}
	lru_push_front(&s->gen_lru, &g->lru);
	s->maps_bytes += g->bytes;
	return g;
}

/* gen_load adds a current generation for live process pid with its maps. */
static int gen_load(struct agent_symbolizer *s, uint32_t pid, struct pid_gen **out)
{
	struct pid_gen *g = gen_new(s, pid);
	int err;

	if (!g)
		return -ENOMEM;
	err = gen_read(s, g);
	if (err < 0) {
		gen_drop(s, g);
		return err;
	}
	*out = g;
	return 0;
}

int agent_symbolizer_note_pid(struct agent_symbolizer *s, uint32_t pid, int64_t ts_ns)
{
	struct pid_gen *g;

	(void)ts_ns;
	if (!pid)
		return -EINVAL;
	g = gen_current(s, pid);
	if (!g)
		return gen_load(s, pid, &g);
	lru_touch(&s->gen_lru, &g->lru);
	if (!g->maps_read && !g->dead)
		return gen_read(s, g);
	return 0;
}

static int close_gen(struct agent_symbolizer *s, uint32_t pid, int64_t ts_ns, bool dead)
{
	struct pid_gen *g = gen_current(s, pid);

	if (!g)
		return 0;
	g->valid_to = ts_ns == INT64_MAX ? INT64_MAX - 1 : ts_ns;
	g->dead = dead;
	return g->announced;
}

int agent_symbolizer_pid_exec(struct agent_symbolizer *s, uint32_t pid, int64_t ts_ns)
{
	return close_gen(s, pid, ts_ns, false);
}

int agent_symbolizer_pid_exit(struct agent_symbolizer *s, uint32_t pid, int64_t ts_ns)
{
	return close_gen(s, pid, ts_ns, true);
}

static struct map_ent *gen_lookup(const struct pid_gen *g, uint64_t addr)
{
	if (!g->maps_read)
		return NULL;
	for (size_t i = 0; i < g->nmaps; i++)
		if (addr >= g->maps[i].start && addr < g->maps[i].end)
			return &g->maps[i];
	return NULL;
}

/* ---- hints: build id + offset per frame, from the kernel ---- */

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* key_from_id makes the key of a kernel-reported build id. The kernel pads
 * shorter build ids with zeros to 20 bytes; the usual sizes are 20 (sha1),
 * 16 (md5, uuid) and 8 (lld's fast), so a zero tail from byte 8 or 16 on
 * is taken as padding (a sha1 ending in 4 zero bytes is a 2^-32 chance). */
static void key_from_id(struct elf_key *key, const struct agent_frame_id *id)
{
	size_t len = id->build_id_len > AGENT_BUILD_ID_MAX ? AGENT_BUILD_ID_MAX : id->build_id_len;

	memset(key, 0, sizeof(*key));
	key->kind = 1;
	memcpy(key->bytes, id->build_id, len);
	if (len == AGENT_BUILD_ID_MAX && all_zero(key->bytes + 8, len - 8))
		len = 8;
	else if (len == AGENT_BUILD_ID_MAX && all_zero(key->bytes + 16, len - 16))
		len = 16;
	key->len = (uint8_t)len;
}

/* hint_add records that ip is at key's file offset off in g: it widens
 * the hint of the same file and bias to ip's page, or adds one. */
static void hint_add(struct agent_symbolizer *s, struct pid_gen *g, uint64_t ip,
		     const struct elf_key *key, uint64_t off)
{
	uint64_t bias = ip - off, lo = ip & ~(uint64_t)(HINT_PAGE - 1), hi = lo + HINT_PAGE;
	struct hint *h;

	for (uint32_t i = 0; i < g->nhints; i++) {
		h = &g->hints[i];
		if (h->bias != bias || !key_eq(&h->key, key))
			continue;
		if (lo < h->start)
			h->start = lo;
		if (hi > h->end)
			h->end = hi;
		return;
	}
	if (g->nhints == g->hints_cap) {
		uint32_t nc = g->hints_cap ? g->hints_cap * 2 : 4;

		if (nc > HINTS_MAX)
			return;
		h = realloc(g->hints, nc * sizeof(*h));
		if (!h)
			return;
		g->hints = h;
		g->hints_cap = nc;
		gen_account(s, g, g->maps_alloc);
	}
	h = &g->hints[g->nhints++];
	h->start = lo;
	h->end = hi;
	h->bias = bias;
	h->key = *key;
}

/* nomap_add remembers that the kernel found ip in no file mapping of g. */
static void nomap_add(struct agent_symbolizer *s, struct pid_gen *g, uint64_t ip)
{
	uint64_t page = ip & ~(uint64_t)(HINT_PAGE - 1);

	for (uint32_t i = 0; i < g->nnomap; i++)
		if (g->nomap[i] == page)
			return;
	if (g->nnomap == g->nomap_cap) {
		uint32_t nc = g->nomap_cap ? g->nomap_cap * 2 : 4;
		uint64_t *p;

		if (nc > NOMAP_MAX)
			return;
		p = realloc(g->nomap, nc * sizeof(*p));
		if (!p)
			return;
		g->nomap = p;
		g->nomap_cap = nc;
		gen_account(s, g, g->maps_alloc);
	}
	g->nomap[g->nnomap++] = page;
}

/* nomap_has says whether addr, or addr + 1 (callers pass a return address
 * minus one), was sampled where the kernel found no file mapping. */
static bool nomap_has(const struct pid_gen *g, uint64_t addr)
{
	uint64_t page = addr & ~(uint64_t)(HINT_PAGE - 1);
	uint64_t next = (addr + 1) & ~(uint64_t)(HINT_PAGE - 1);

	for (uint32_t i = 0; i < g->nnomap; i++)
		if (g->nomap[i] == page || g->nomap[i] == next)
			return true;
	return false;
}

/* hint_lookup returns the narrowest hint of g covering addr, or NULL. */
static const struct hint *hint_lookup(const struct pid_gen *g, uint64_t addr)
{
	const struct hint *best = NULL;

	for (uint32_t i = 0; i < g->nhints; i++) {
		const struct hint *h = &g->hints[i];

		if (addr >= h->start && addr < h->end &&
		    (!best || h->end - h->start < best->end - best->start))
			best = h;
	}
	return best;
}

int agent_symbolizer_note_stack(struct agent_symbolizer *s, uint32_t pid, int64_t ts_ns,
				const uint64_t *ips, const struct agent_frame_id *ids, size_t n)
{
	struct elf_key key, prev = { 0 };
	bool need_maps, unknown = false, ip_only = false, ip_leaf = false, any_id = false;
	struct pid_gen *g;
	int err;

	if (!pid)
		return -EINVAL;
	g = gen_find(s, pid, ts_ns);
	if (!g && !(g = gen_new(s, pid)))
		return -ENOMEM;
	lru_touch(&s->gen_lru, &g->lru);
	for (size_t i = 0; i < n; i++) {
		if (ids && ids[i].build_id_len && ids[i].file_offset >= MAX_FILE_OFFSET) {
			/* The kernel looks an address up with find_vma(), which
			 * gives the next mapping above an unmapped address (a
			 * garbage frame from a binary without frame pointers):
			 * then offset = address - start underflows. Unmapped. */
			s->frames_unmapped++;
			nomap_add(s, g, ips[i]);
			continue;
		}
		if (ips[i] < MIN_USER_ADDR) {
			s->frames_unmapped++;
			continue;
		}
		if (!ids || !ids[i].build_id_len) {
			s->frames_ip_only++;
			ip_only = true;
			ip_leaf |= i == 0;
			continue;
		}
		s->frames_build_id++;
		any_id = true;
		key_from_id(&key, &ids[i]);
		hint_add(s, g, ips[i], &key, ids[i].file_offset);
		if (key_eq(&key, &prev))
			continue;
		prev = key;
		if (!elf_known(s, &key))
			unknown = true;
	}
	/* Read the maps, while the process may still live, only to learn
	 * where a new build id's file is; for frames the kernel could not
	 * name: the leaf, or every frame (it could not lock the mm, or was
	 * told to skip the build ids); or once the process has lived on for
	 * MAPS_AFTER_SAMPLES stacks, so that its samples can skip the build-id
	 * walk (return 1). Callers' frames without a build id when others have
	 * one are in no file-backed mapping with a build id: mostly garbage
	 * from walking code without frame pointers (heap, stack, unmapped),
	 * sometimes JIT code or a file without a GNU build id; they are
	 * remembered so that agent_symbolize_user does not read the maps for
	 * them again. */
	g->nsamples++;
	need_maps = ip_leaf || (ip_only && !any_id) || g->nsamples >= MAPS_AFTER_SAMPLES;
	if (ip_only && any_id)
		for (size_t i = 1; i < n; i++)
			if (!ids[i].build_id_len && ips[i] >= MIN_USER_ADDR)
				nomap_add(s, g, ips[i]);
	if (g->valid_to != INT64_MAX || g->dead)
		return 0;
	if ((need_maps || unknown) && !g->maps_read) {
		if (g->loaded_ns && sh_now_mono_ns() - g->loaded_ns < MAPS_REFRESH_NS)
			return 0; /* failed just now */
		err = gen_read(s, g);
		if (err < 0)
			return err;
	}
	for (size_t i = 0; unknown && ids && i < n; i++) {
		struct map_ent *m;

		if (!ids[i].build_id_len || ids[i].file_offset >= MAX_FILE_OFFSET)
			continue;
		key_from_id(&key, &ids[i]);
		if (elf_known(s, &key))
			continue;
		m = gen_lookup(g, ips[i]);
		if (!m && sh_now_mono_ns() - g->loaded_ns > MAPS_REFRESH_NS) {
			/* mapped since the maps were read (dlopen) */
			if (gen_read(s, g) < 0)
				return 0;
			m = gen_lookup(g, ips[i]);
		}
		if (m && m->key_state == KEY_UNKNOWN)
			map_key(s, g, m);
	}
	if (g->maps_read && !g->announced) {
		g->announced = true;
		return 1;
	}
	return 0;
}

/* ---- resolving ---- */

static const struct elf_sym *elf_lookup(const struct elf_file *ef, uint64_t vaddr)
{
	size_t lo = 0, hi = ef->nsyms;
	const struct elf_sym *sym;

	if (!ef->nsyms || vaddr < ef->syms[0].addr)
		return NULL;
	while (hi - lo > 1) {
		size_t mid = lo + (hi - lo) / 2;

		if (ef->syms[mid].addr <= vaddr)
			lo = mid;
		else
			hi = mid;
	}
	sym = &ef->syms[lo];
	if (sym->size && vaddr >= sym->addr + sym->size)
		return NULL;
	if (!sym->size && vaddr - sym->addr > (1u << 16))
		return NULL;
	return sym;
}

/* perfmap_name names addr from g's perf map (JIT code), reading the map
 * when g's process is alive and the map is new or changed (at most every
 * PERFMAP_RECHECK_NS after a miss). Returns the name and *off, or NULL. */
static const char *perfmap_name(struct agent_symbolizer *s, struct pid_gen *g, uint64_t addr,
				uint64_t *off)
{
	const char *name = g->perfmap ? agent_perfmap_lookup(g->perfmap, addr, off) : NULL;
	int64_t now = sh_now_mono_ns();
	struct agent_perfmap *pm;

	if (name || g->dead || g->valid_to != INT64_MAX ||
	    (g->perfmap_ns && now - g->perfmap_ns < PERFMAP_RECHECK_NS))
		return name;
	g->perfmap_ns = now;
	if (g->perfmap && !agent_perfmap_changed(g->perfmap, s->proc_root, g->pid))
		return NULL;
	if (agent_perfmap_load(s->proc_root, g->pid, &pm) != 0) {
		if (!g->perfmap)
			g->perfmap_ns += PERFMAP_ABSENT_NS - PERFMAP_RECHECK_NS;
		return NULL;
	}
	s->perfmap_loads++;
	if (agent_perfmap_bytes(pm) > s->opts.max_maps_bytes / 2) {
		agent_perfmap_free(pm); /* larger than half the maps cache: not kept */
		return NULL;
	}
	agent_perfmap_free(g->perfmap);
	g->perfmap = pm;
	gen_account(s, g, g->maps_alloc);
	return agent_perfmap_lookup(pm, addr, off);
}

int agent_symbolize_user(struct agent_symbolizer *s, uint32_t pid, int64_t ts_ns, uint64_t addr,
			 struct agent_frame *f)
{
	struct elf_file *ef = NULL;
	const struct elf_sym *sym;
	const struct hint *h;
	struct pid_gen *g;
	struct map_ent *m;
	uint64_t vaddr = 0;
	bool found_seg = false;

	memset(f, 0, sizeof(*f));
	if (!pid || addr < MIN_USER_ADDR)
		goto no_mapping;
	g = gen_find(s, pid, ts_ns);
	if (!g && gen_load(s, pid, &g) < 0)
		goto no_mapping;
	lru_touch(&s->gen_lru, &g->lru);
	h = hint_lookup(g, addr);
	m = gen_lookup(g, addr);
	if (!m && (h ? !elf_known(s, &h->key) : !nomap_has(g, addr)) && g->valid_to == INT64_MAX &&
	    !g->dead && sh_now_mono_ns() - g->loaded_ns > MAPS_REFRESH_NS) {
		/* Not read yet, or mapped since we looked (dlopen, JIT): read. */
		if (gen_read(s, g) == 0)
			m = gen_lookup(g, addr);
	}
	if (!h && (!m || (!m->ino && strcmp(g->paths + m->path, "[vdso]") != 0))) {
		/* anonymous executable memory, or none mapped any more: JIT code? */
		uint64_t off;
		const char *name = perfmap_name(s, g, addr, &off);

		if (name) {
			f->name = name;
			f->sym_offset = off;
			f->module = "[jit]";
			s->sym_resolved++;
			s->sym_jit++;
			return 0;
		}
	}
	if (h) {
		struct bid_ent *b;

		/* The kernel's word at sample time beats maps read at another time. */
		if (m && m->key_state == KEY_OK && !key_eq(&m->key, &h->key))
			m = NULL;
		f->file_offset = addr - h->bias;
		memcpy(f->build_id, h->key.bytes, h->key.len);
		f->build_id_len = h->key.len;
		ef = elf_by_build_id(s, &h->key, g, m);
		if (m)
			f->module = g->paths + m->path;
		else if ((b = bid_find(s, &h->key)) != NULL && b->path[0])
			f->module = b->path;
		if (!ef) {
			s->sym_no_file++;
			return -ENOENT;
		}
	} else if (m) {
		f->module = g->paths + m->path;
		f->file_offset = addr - m->start + m->pgoff;
		ef = map_elf(s, g, m);
		if (m->key_state == KEY_OK && m->key.kind == 1) {
			memcpy(f->build_id, m->key.bytes, m->key.len);
			f->build_id_len = m->key.len;
		}
		if (!ef) {
			if (m->key_state == KEY_FAILED && m->ino && g->paths[m->path] == '/')
				s->sym_no_file++;
			else
				s->sym_other++;
			return -ENOENT;
		}
	} else {
		goto no_mapping;
	}
	for (size_t i = 0; i < ef->nsegs; i++) {
		const struct elf_seg *sg = &ef->segs[i];

		if (f->file_offset >= sg->off && f->file_offset < sg->off + sg->filesz) {
			vaddr = f->file_offset - sg->off + sg->vaddr;
			found_seg = true;
			break;
		}
	}
	sym = found_seg ? elf_lookup(ef, vaddr) : NULL;
	if (!sym) {
		s->sym_other++;
		return -ENOENT;
	}
	f->name = ef->names + sym->name;
	f->sym_offset = vaddr - sym->addr;
	s->sym_resolved++;
	return 0;
no_mapping:
	s->sym_no_mapping++;
	return -ENOENT;
}

/* ---- formatting, lifecycle ---- */

static size_t append_clean(char *buf, size_t len, size_t pos, const char *s)
{
	for (; *s && pos + 1 < len; s++) {
		char c = *s;

		if (c == ';')
			c = ':';
		else if ((unsigned char)c < 0x20)
			c = '?';
		buf[pos++] = c;
	}
	buf[pos] = '\0';
	return pos;
}

size_t agent_frame_format(const struct agent_frame *f, char *buf, size_t len)
{
	size_t pos = 0;

	if (!len)
		return 0;
	buf[0] = '\0';
	if (f->name) {
		pos = append_clean(buf, len, pos, f->name);
		if (f->kernel && f->module) {
			pos = append_clean(buf, len, pos, " [");
			pos = append_clean(buf, len, pos, f->module);
			pos = append_clean(buf, len, pos, "]");
		}
		return pos;
	}
	pos = append_clean(buf, len, pos, "[unknown]");
	if (f->kernel || f->module) {
		pos = append_clean(buf, len, pos, " (");
		pos = append_clean(buf, len, pos, f->module ? f->module : "[kernel]");
		pos = append_clean(buf, len, pos, ")");
	}
	return pos;
}

int agent_symbolizer_new(const struct agent_symbolizer_opts *opts, struct agent_symbolizer **out)
{
	struct agent_symbolizer *s = calloc(1, sizeof(*s));
	int err;

	if (!s)
		return -ENOMEM;
	if (opts)
		s->opts = *opts;
	if (!s->opts.max_elf_bytes)
		s->opts.max_elf_bytes = DEF_ELF_BYTES;
	if (!s->opts.max_elf_files)
		s->opts.max_elf_files = DEF_ELF_FILES;
	if (!s->opts.max_maps_bytes)
		s->opts.max_maps_bytes = DEF_MAPS_BYTES;
	if (!s->opts.max_pid_maps)
		s->opts.max_pid_maps = DEF_PID_MAPS;
	snprintf(s->proc_root, sizeof(s->proc_root), "%s",
		 s->opts.proc_root ? s->opts.proc_root : "/proc");
	s->opts.proc_root = NULL;
	s->opts.kallsyms_path = NULL; /* borrowed strings are not kept */
	lru_init(&s->elf_lru);
	lru_init(&s->gen_lru);
	lru_init(&s->bid_lru);
	lru_init(&s->exe_lru);
	if (elf_version(EV_CURRENT) == EV_NONE) {
		free(s);
		return -ENOTSUP;
	}
	if (!(opts && opts->no_kernel)) {
		err = kallsyms_load(s, opts && opts->kallsyms_path ? opts->kallsyms_path
								 : "/proc/kallsyms");
		if (err == -ENOMEM) {
			agent_symbolizer_free(s);
			return err;
		}
	}
	*out = s;
	return 0;
}

int agent_symbolizer_reload_kernel(struct agent_symbolizer *s)
{
	free(s->ksyms);
	free(s->knames);
	s->ksyms = NULL;
	s->knames = NULL;
	s->nksyms = 0;
	return kallsyms_load(s, "/proc/kallsyms");
}

void agent_symbolizer_free(struct agent_symbolizer *s)
{
	if (!s)
		return;
	while (s->elf_lru.next != &s->elf_lru)
		elf_evict(s, container_of(s->elf_lru.next, struct elf_file, lru));
	while (s->gen_lru.next != &s->gen_lru)
		gen_evict(s, container_of(s->gen_lru.next, struct pid_gen, lru));
	while (s->bid_lru.next != &s->bid_lru)
		bid_drop(s, container_of(s->bid_lru.next, struct bid_ent, lru));
	while (s->exe_lru.next != &s->exe_lru)
		exe_drop(s, container_of(s->exe_lru.next, struct exe_cand, lru));
	file_ids_clear(s);
	free(s->file_ids.b);
	free(s->bids.b);
	free(s->exes.b);
	free(s->elfs.b);
	free(s->gens.b);
	free(s->ksyms);
	free(s->knames);
	free(s);
}

void agent_symbolizer_stats(const struct agent_symbolizer *s, struct agent_symbolizer_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->kernel_symbols = s->nksyms;
	st->elf_files = s->elfs.n;
	st->elf_bytes = s->elf_bytes;
	st->pid_maps = s->gens.n;
	st->maps_bytes = s->maps_bytes;
	st->elf_loads = s->elf_loads;
	st->maps_loads = s->maps_loads;
	st->elf_evictions = s->elf_evictions;
	st->maps_evictions = s->maps_evictions;
	st->build_ids = s->bids.n;
	st->exe_files = s->exes.n;
	st->exe_keys = s->exe_keys;
	st->frames_build_id = s->frames_build_id;
	st->frames_ip_only = s->frames_ip_only;
	st->frames_unmapped = s->frames_unmapped;
	st->resolved = s->sym_resolved;
	st->no_file = s->sym_no_file;
	st->no_mapping = s->sym_no_mapping;
	st->other = s->sym_other;
	st->jit = s->sym_jit;
	st->perfmap_loads = s->perfmap_loads;
}
