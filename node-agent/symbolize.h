/* symbolize.h: turns sampled addresses into names. Kernel addresses via
 * /proc/kallsyms (a sorted table, binary search; module names kept). User
 * addresses via (file, build id, file offset), then the file's ELF symbol
 * table (.symtab, else its separate debug file's, else .dynsym), parsed
 * once per build id and only when a frame in it is first named.
 *
 * Processes exit before their samples are printed, so the symbolizer keeps
 * per process generation (from start or exec until exec or exit) what it
 * learned while the process lived:
 *  - hints: for each sampled user frame the kernel's build id and file
 *    offset (agent_symbolizer_note_stack, from the sampler's build-id
 *    stack). These need no /proc access, so frames of processes that lived
 *    only a few milliseconds still name their file;
 *  - its /proc/PID/maps, read only when needed: a frame without a build id
 *    (anonymous/JIT code, or the kernel could not lock the mm), a build id
 *    whose file is not known yet, or agent_symbolizer_note_pid.
 * A build id is turned into a file through the mapping that covers the
 * address (while the process lives), an index of where each build id was
 * seen (mapped files whose build id was read; files processes exec'd,
 * read when a build id is missing), or its separate debug file
 * /usr/lib/debug/.build-id/xx/yyyy.debug alone. Exec and exit close a
 * generation at the event's time, so older samples still resolve against
 * what was mapped then. Generations, parsed files and the index are kept
 * in LRU caches bounded in entries and bytes.
 *
 * Threads: one thread at a time per agent_symbolizer. */
#ifndef AGENT_SYMBOLIZE_H
#define AGENT_SYMBOLIZE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct agent_symbolizer;

/* agent_symbolizer_opts: zero means the default for every field. */
struct agent_symbolizer_opts {
	const char *kallsyms_path;  /* default "/proc/kallsyms" (borrowed) */
	const char *proc_root;	    /* default "/proc" (borrowed; tests point it elsewhere) */
	size_t max_elf_bytes;	    /* ELF symbol cache, default 64 MiB */
	unsigned max_elf_files;	    /* default 512 */
	size_t max_maps_bytes;	    /* pid maps cache, default 16 MiB */
	unsigned max_pid_maps;	    /* pid generations kept, default 4096 */
	bool no_kernel;		    /* do not load kallsyms */
};

#define AGENT_BUILD_ID_MAX 20

/* agent_frame: one resolved address. Strings are borrowed from the
 * symbolizer and valid until the next non-const call on it. */
struct agent_frame {
	const char *name;    /* symbol, NULL when unresolved */
	uint64_t sym_offset; /* address - symbol start */
	const char *module;  /* kernel: module name or NULL for vmlinux; user: the
				mapped path ("/usr/lib/...", "[vdso]", "[anon]"), "[jit]"
				for JIT code named by a perf map, NULL when no
				mapping covers the address */
	uint64_t file_offset; /* user: offset of the address in module's file */
	uint8_t build_id[AGENT_BUILD_ID_MAX];
	uint8_t build_id_len; /* 0: unknown */
	bool kernel;
};

/* agent_frame_id: a user frame as the kernel resolved it at sample time
 * (struct sh_ubuild_frame): the mapped file's build id and the frame's
 * offset in that file. */
struct agent_frame_id {
	uint8_t build_id[AGENT_BUILD_ID_MAX];
	uint8_t build_id_len; /* 0: the kernel gave only the address */
	uint64_t file_offset;
};

/* agent_symbolizer_new creates a symbolizer; opts may be NULL. Kallsyms
 * that cannot be read (or show only zero addresses) leave kernel frames
 * unresolved rather than failing. On success *out is owned by the caller
 * (agent_symbolizer_free) and 0 is returned; else a negative errno. */
int agent_symbolizer_new(const struct agent_symbolizer_opts *opts, struct agent_symbolizer **out);

/* agent_symbolizer_reload_kernel re-reads /proc/kallsyms, e.g. after BPF
 * programs were loaded (they appear there as bpf_prog_* [bpf]); frames
 * resolved earlier become invalid. Returns 0 or a negative errno. */
int agent_symbolizer_reload_kernel(struct agent_symbolizer *s);

/* agent_symbolizer_free frees s; NULL is a no-op. */
void agent_symbolizer_free(struct agent_symbolizer *s);

/* agent_symbolizer_kernel_symbols returns how many kernel text symbols
 * were loaded (0: kernel frames will stay unresolved). */
size_t agent_symbolizer_kernel_symbols(const struct agent_symbolizer *s);

/* agent_symbolize_kernel resolves a kernel address into *f. Returns 0 when
 * a symbol was found, -ENOENT otherwise (*f is still filled: module NULL,
 * name NULL). */
int agent_symbolize_kernel(struct agent_symbolizer *s, uint64_t addr, struct agent_frame *f);

/* agent_symbolize_user resolves addr in process pid as mapped at ts_ns
 * (CLOCK_MONOTONIC; INT64_MAX for "now"): by the generation's hint for
 * addr if there is one, else its maps (read now if the process lives and
 * they are not cached). Parses the ELF file on first use. Returns 0 when a
 * symbol was found, -ENOENT when not (*f still carries what is known:
 * module, build id, file offset; module may be NULL with a build id when
 * no file with it was found). For return addresses (every frame but the
 * innermost) pass addr - 1 so a call at a function's end resolves to that
 * function. */
int agent_symbolize_user(struct agent_symbolizer *s, uint32_t pid, int64_t ts_ns, uint64_t addr,
			 struct agent_frame *f);

/* agent_frame_format writes f as a flame graph frame into buf: "name",
 * "name [module]" (kernel modules), "[unknown] (module)", "[unknown]".
 * ';' and control characters are replaced. Returns the length written
 * (truncated to len - 1). */
size_t agent_frame_format(const struct agent_frame *f, char *buf, size_t len);

/* agent_symbolizer_note_pid makes sure the maps of live process pid are
 * cached (reads /proc/PID/maps when its current generation has none; no
 * ELF file is opened). Cheap when cached. Returns 0 or a negative errno
 * (-ESRCH: the process is gone). */
int agent_symbolizer_note_pid(struct agent_symbolizer *s, uint32_t pid, int64_t ts_ns);

/* agent_symbolizer_note_stack records a user stack of process pid sampled
 * at ts_ns: ips[0..n) the addresses (innermost first, borrowed), ids[i]
 * what the kernel said of ips[i] (borrowed; ids may be NULL: addresses
 * only). Frames with a build id become hints of the pid's generation at
 * ts_ns (created if needed). /proc/PID/maps is read (once per generation)
 * only for a leaf frame without a build id (or a stack without any), a
 * build id whose file is not known, or once the generation has had 16
 * stacks (a process that lives on); then the mapped file of an unknown
 * build id is opened to index it (its build id read, its symbols not).
 * Returns 1 the first time the generation's maps are cached (the kernel's
 * build ids are no longer needed for pid: agent_sampler_pid_mapped), else
 * 0, or a negative errno (-ESRCH: the maps were needed but the process is
 * gone). */
int agent_symbolizer_note_stack(struct agent_symbolizer *s, uint32_t pid, int64_t ts_ns,
				const uint64_t *ips, const struct agent_frame_id *ids, size_t n);

/* agent_symbolizer_note_exe remembers path (borrowed; a file a process
 * exec'd, e.g. the exec event's filename; relative paths are ignored) as a
 * place to look for a build id no mapping has shown. No I/O now: the
 * file's build id is read when such a build id is first looked for. */
void agent_symbolizer_note_exe(struct agent_symbolizer *s, const char *path);

/* agent_symbolizer_pid_exec / _pid_exit close pid's current maps
 * generation at ts_ns (the exec or exit time); exit also marks the pid
 * dead so its maps are not re-read (the pid may be reused). Return 1 when
 * agent_symbolizer_note_stack had returned 1 for that generation (so the
 * sampler should be told to forget the pid), else 0. */
int agent_symbolizer_pid_exec(struct agent_symbolizer *s, uint32_t pid, int64_t ts_ns);
int agent_symbolizer_pid_exit(struct agent_symbolizer *s, uint32_t pid, int64_t ts_ns);

/* agent_symbolizer_stats: cache sizes, for health reports and tests. */
struct agent_symbolizer_stats {
	size_t kernel_symbols;
	size_t elf_files;
	size_t elf_bytes;
	size_t pid_maps;
	size_t maps_bytes;
	uint64_t elf_loads;	/* ELF files parsed */
	uint64_t maps_loads;	/* /proc/PID/maps reads */
	uint64_t elf_evictions;
	uint64_t maps_evictions;
	size_t build_ids;	  /* index entries: build id -> file (or a miss) */
	size_t exe_files;	  /* exec'd files remembered */
	uint64_t exe_keys;	  /* build ids of exec'd files read */
	/* frames noted (agent_symbolizer_note_stack) */
	uint64_t frames_build_id; /* with the kernel's build id + offset */
	uint64_t frames_ip_only;  /* address only */
	uint64_t frames_unmapped; /* in no mapping (garbage of a frame pointer walk) */
	/* agent_symbolize_user outcomes */
	uint64_t resolved;
	uint64_t no_file;    /* build id (or mapped file) known, its ELF file not found */
	uint64_t no_mapping; /* no build id and no mapping covers the address */
	uint64_t other;	     /* mapping without a file ([anon], [vdso]), or no symbol there */
	uint64_t jit;	     /* of resolved: JIT code named by the process's perf map */
	uint64_t perfmap_loads; /* /tmp/perf-PID.map reads (perfmap.h) */
};

/* agent_symbolizer_stats fills *st. */
void agent_symbolizer_stats(const struct agent_symbolizer *s, struct agent_symbolizer_stats *st);

/* agent_elf_build_id reads the GNU build id of the ELF file at path into
 * id (AGENT_BUILD_ID_MAX bytes). Returns its length (> 0) or a negative
 * errno (-ENOENT: the file has no build id). */
int agent_elf_build_id(const char *path, uint8_t *id);

#endif
