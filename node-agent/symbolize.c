/* symbolize.c: kernel symbols from /proc/kallsyms, user symbols from the
 * ELF files a process maps, with bounded caches of pid maps (by pid and
 * time) and of parsed ELF symbol tables (by build id). */
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
#include <unistd.h>

#include "timeutil.h"

#define DEF_ELF_BYTES (64u << 20)
#define DEF_ELF_FILES 512u
#define DEF_MAPS_BYTES (16u << 20)
#define DEF_PID_MAPS 4096u
#define MAPS_REFRESH_NS (200 * SH_NS_PER_MS)
#define FILE_IDS_MAX 4096u
#define NO_MOD UINT32_MAX

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

/* pid_gen: what one process mapped from its start or exec until valid_to. */
struct pid_gen {
	struct hnode h; /* keyed by pid; several generations per pid */
	struct lru lru;
	uint32_t pid;
	bool dead;
	int64_t valid_to; /* INT64_MAX while current */
	int64_t loaded_ns;
	struct map_ent *maps;
	size_t nmaps;
	char *paths;
	size_t bytes;
};

struct file_id {
	struct hnode h;
	uint64_t dev, ino;
	struct elf_key key;
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
	uint64_t elf_loads, maps_loads, elf_evictions, maps_evictions;
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

/* elf_parse reads the program headers and function symbols of e. */
/* elf_parse reads e's loadable segments and its function symbols: .symtab,
 * else dbg's .symtab (dbg: the separate debug file of a stripped binary,
 * may be NULL), else .dynsym. */
static struct elf_file *elf_parse(Elf *e, Elf *dbg, const struct elf_key *key)
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
			ef->segs[ef->nsegs].off = ph.p_offset;
			ef->segs[ef->nsegs].vaddr = ph.p_vaddr;
			ef->segs[ef->nsegs].filesz = ph.p_filesz;
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

/* map_resolve_key finds (and caches) the ELF file of mapping m, parsing it
 * when its build id is not cached. */
static struct elf_file *map_resolve_elf(struct agent_symbolizer *s, const struct pid_gen *g,
					struct map_ent *m)
{
	struct elf_file *ef = NULL;
	struct elf_key key;
	struct file_id *fi;
	struct stat st;
	Elf *e = NULL;
	int fd, len;

	if (m->key_state == KEY_FAILED)
		return NULL;
	if (m->key_state == KEY_OK) {
		ef = elf_find(s, &m->key);
		if (ef)
			return ef;
	} else if ((fi = file_id_find(s, m->dev, m->ino)) != NULL) {
		m->key = fi->key;
		m->key_state = KEY_OK;
		ef = elf_find(s, &m->key);
		if (ef)
			return ef;
	}
	/* Not cached (or evicted): open and parse. */
	fd = open_mapped(s, g, m);
	if (fd < 0)
		goto fail;
	e = elf_begin(fd, ELF_C_READ_MMAP, NULL);
	if (!e || elf_kind(e) != ELF_K_ELF)
		goto fail;
	memset(&key, 0, sizeof(key));
	len = elf_read_build_id(e, key.bytes);
	if (len > 0) {
		key.kind = 1;
		key.len = (uint8_t)len;
	} else {
		uint64_t di[2];

		if (fstat(fd, &st) < 0)
			goto fail;
		di[0] = m->dev;
		di[1] = m->ino ? m->ino : (uint64_t)st.st_ino;
		key.kind = 2;
		key.len = sizeof(di);
		memcpy(key.bytes, di, sizeof(di));
	}
	if (m->key_state == KEY_OK && !key_eq(&key, &m->key))
		goto fail; /* the path now holds another file */
	m->key = key;
	m->key_state = KEY_OK;
	file_id_remember(s, m->dev, m->ino, &key);
	ef = elf_find(s, &key);
	if (!ef) {
		Elf *dbg = NULL;
		int dfd = -1;

		/* a stripped binary's symbols may be in its separate debug file
		 * (Debian's *-dbg / -dbgsym packages), found by build id */
		if (key.kind == 1 && key.len > 1) {
			char path[128];
			int n = snprintf(path, sizeof(path), "/usr/lib/debug/.build-id/%02x/", key.bytes[0]);

			for (int i = 1; i < key.len && n < (int)sizeof(path) - 3; i++)
				n += snprintf(path + n, sizeof(path) - (size_t)n, "%02x", key.bytes[i]);
			snprintf(path + n, sizeof(path) - (size_t)n, ".debug");
			dfd = open(path, O_RDONLY | O_CLOEXEC);
			if (dfd >= 0) {
				dbg = elf_begin(dfd, ELF_C_READ_MMAP, NULL);
				if (dbg && elf_kind(dbg) != ELF_K_ELF) {
					elf_end(dbg);
					dbg = NULL;
				}
			}
		}
		ef = elf_parse(e, dbg, &key);
		if (dbg)
			elf_end(dbg);
		if (dfd >= 0)
			close(dfd);
		if (ef) {
			s->elf_loads++;
			elf_insert(s, ef);
			ef = elf_find(s, &key); /* NULL if it could not be inserted */
		}
	}
	elf_end(e);
	close(fd);
	return ef;
fail:
	if (e)
		elf_end(e);
	if (fd >= 0)
		close(fd);
	if (m->key_state != KEY_OK)
		m->key_state = KEY_FAILED;
	return NULL;
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
	free(g);
}

static void gen_evict(struct agent_symbolizer *s, struct pid_gen *g)
{
	htab_remove(&s->gens, &g->h);
	lru_unlink(&g->lru);
	s->maps_bytes -= g->bytes;
	s->maps_evictions++;
	gen_free(g);
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
	s->maps_bytes -= g->bytes;
	g->bytes = sizeof(*g) + cap * sizeof(*g->maps) + pcap;
	s->maps_bytes += g->bytes;
	s->maps_loads++;
cleanup:
	free(line);
	free(maps);
	free(paths);
	fclose(f);
	return err;
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

static int gen_load(struct agent_symbolizer *s, uint32_t pid, struct pid_gen **out)
{
	struct pid_gen *g = calloc(1, sizeof(*g));
	int err;

	if (!g)
		return -ENOMEM;
	g->pid = pid;
	g->valid_to = INT64_MAX;
	lru_init(&g->lru);
	err = read_maps(s, g);
	if (err < 0) {
		gen_free(g);
		return err;
	}
	g->loaded_ns = sh_now_mono_ns();
	while (s->gens.n && (s->gens.n + 1 > s->opts.max_pid_maps ||
			     s->maps_bytes > s->opts.max_maps_bytes))
		gen_evict(s, container_of(s->gen_lru.prev, struct pid_gen, lru));
	if (htab_insert(&s->gens, &g->h, pid_hash(pid)) < 0) {
		s->maps_bytes -= g->bytes;
		gen_free(g);
		return -ENOMEM;
	}
	lru_push_front(&s->gen_lru, &g->lru);
	/* Parse the ELF files now, while the process (and its files) exist. */
	for (size_t i = 0; i < g->nmaps; i++)
		map_resolve_elf(s, g, &g->maps[i]);
	*out = g;
	return 0;
}

int agent_symbolizer_note_pid(struct agent_symbolizer *s, uint32_t pid, int64_t ts_ns)
{
	struct pid_gen *g;

	if (!pid)
		return -EINVAL;
	g = gen_current(s, pid);
	if (g) {
		lru_touch(&s->gen_lru, &g->lru);
		return 0;
	}
	return gen_load(s, pid, &g);
}

static void close_gen(struct agent_symbolizer *s, uint32_t pid, int64_t ts_ns, bool dead)
{
	struct pid_gen *g = gen_current(s, pid);

	if (!g)
		return;
	g->valid_to = ts_ns == INT64_MAX ? INT64_MAX - 1 : ts_ns;
	g->dead = dead;
}

void agent_symbolizer_pid_exec(struct agent_symbolizer *s, uint32_t pid, int64_t ts_ns)
{
	close_gen(s, pid, ts_ns, false);
}

void agent_symbolizer_pid_exit(struct agent_symbolizer *s, uint32_t pid, int64_t ts_ns)
{
	close_gen(s, pid, ts_ns, true);
}

static const struct map_ent *gen_lookup(const struct pid_gen *g, uint64_t addr)
{
	for (size_t i = 0; i < g->nmaps; i++)
		if (addr >= g->maps[i].start && addr < g->maps[i].end)
			return &g->maps[i];
	return NULL;
}

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

int agent_symbolize_user(struct agent_symbolizer *s, uint32_t pid, int64_t ts_ns, uint64_t addr,
			 struct agent_frame *f)
{
	struct pid_gen *g;
	struct map_ent *m;
	struct elf_file *ef;
	const struct elf_sym *sym;
	uint64_t vaddr;
	bool found_seg = false;

	memset(f, 0, sizeof(*f));
	if (!pid)
		return -ENOENT;
	g = gen_find(s, pid, ts_ns);
	if (!g && gen_load(s, pid, &g) < 0)
		return -ENOENT;
	lru_touch(&s->gen_lru, &g->lru);
	m = (struct map_ent *)gen_lookup(g, addr);
	if (!m && g->valid_to == INT64_MAX && !g->dead &&
	    sh_now_mono_ns() - g->loaded_ns > MAPS_REFRESH_NS) {
		/* Maybe mapped since we looked (dlopen, JIT): re-read once. */
		g->loaded_ns = sh_now_mono_ns();
		if (read_maps(s, g) == 0)
			m = (struct map_ent *)gen_lookup(g, addr);
	}
	if (!m)
		return -ENOENT;
	f->module = g->paths + m->path;
	f->file_offset = addr - m->start + m->pgoff;
	ef = map_resolve_elf(s, g, m);
	if (m->key_state == KEY_OK && m->key.kind == 1) {
		memcpy(f->build_id, m->key.bytes, m->key.len);
		f->build_id_len = m->key.len;
	}
	if (!ef)
		return -ENOENT;
	vaddr = 0;
	for (size_t i = 0; i < ef->nsegs; i++) {
		const struct elf_seg *sg = &ef->segs[i];

		if (f->file_offset >= sg->off && f->file_offset < sg->off + sg->filesz) {
			vaddr = f->file_offset - sg->off + sg->vaddr;
			found_seg = true;
			break;
		}
	}
	if (!found_seg)
		return -ENOENT;
	sym = elf_lookup(ef, vaddr);
	if (!sym)
		return -ENOENT;
	f->name = ef->names + sym->name;
	f->sym_offset = vaddr - sym->addr;
	return 0;
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
	file_ids_clear(s);
	free(s->file_ids.b);
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
}
