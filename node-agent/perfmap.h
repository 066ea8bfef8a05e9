/* perfmap.h: symbols of just-in-time compiled code from perf map files.
 *
 * JIT runtimes (the JVM with perf-map-agent or -XX:+DumpPerfMapAtExit,
 * Node.js --perf-basic-prof, Python 3.12 -X perf, .NET, LuaJIT, PostgreSQL's
 * LLVM JIT) write /tmp/perf-PID.map: one "START SIZE name" line (hex
 * address and size) per compiled function, appended as code is generated.
 * perf reads it for addresses in anonymous executable memory; so does the
 * agent, with the file as the process sees it (/proc/PID/root/tmp/
 * perf-NSPID.map, NSPID its pid in its own pid namespace).
 *
 * The file is untrusted: it is read only when it is a regular file owned
 * by the process's user or root, not through a final symlink, at most
 * AGENT_PERFMAP_MAX_BYTES; malformed lines are skipped; names are cut at
 * AGENT_PERFMAP_MAX_NAME bytes and control characters replaced.
 */
#ifndef AGENT_PERFMAP_H
#define AGENT_PERFMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AGENT_PERFMAP_MAX_BYTES (64u << 20)
#define AGENT_PERFMAP_MAX_NAME 512

struct agent_perfmap;

/* agent_perfmap_load reads process pid's perf map under proc_root
 * ("/proc"). Returns 0 and *out (free with agent_perfmap_free), -ENOENT
 * when the process has none, -EPERM when it is not one we may read
 * (owner, type), -EFBIG, -ENOMEM or another negative errno. */
int agent_perfmap_load(const char *proc_root, uint32_t pid, struct agent_perfmap **out);

/* agent_perfmap_changed tells whether the file grew or was replaced since
 * pm was loaded (true also when it can no longer be read). */
bool agent_perfmap_changed(const struct agent_perfmap *pm, const char *proc_root, uint32_t pid);

/* agent_perfmap_lookup returns the name of the function covering addr and
 * its offset in *off, or NULL; the name is borrowed from pm. When ranges
 * overlap (code regenerated at the same place) the last line wins. */
const char *agent_perfmap_lookup(const struct agent_perfmap *pm, uint64_t addr, uint64_t *off);

/* agent_perfmap_count and agent_perfmap_bytes: entries, memory held. */
size_t agent_perfmap_count(const struct agent_perfmap *pm);
size_t agent_perfmap_bytes(const struct agent_perfmap *pm);

/* agent_perfmap_free frees pm; NULL is a no-op. */
void agent_perfmap_free(struct agent_perfmap *pm);

#endif
