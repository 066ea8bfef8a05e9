/* privs.h: the agent gives up what it no longer needs once its BPF
 * programs are loaded and attached, before it opens any network socket.
 *
 * Kept (effective and permitted; everything else also leaves the bounding
 * set, and no_new_privs is set, so no exec can win anything back):
 *   CAP_BPF, CAP_PERFMON   re-attach the samplers to CPUs that come online
 *                          (CAP_SYS_ADMIN instead on kernels without them)
 *   CAP_SYS_PTRACE         read other users' /proc/PID/maps and files
 *                          through /proc/PID/root (symbols, perf maps)
 *   CAP_CHECKPOINT_RESTORE open mapped files through /proc/PID/map_files
 *   CAP_DAC_READ_SEARCH    read binaries and debug files of any user
 *   CAP_SYSLOG             read kernel addresses in /proc/kallsyms
 * The process keeps its user id (the spool, /proc/slabinfo and the like
 * belong to root), but not CAP_DAC_OVERRIDE, CAP_SYS_ADMIN, CAP_NET_*,
 * CAP_SYS_MODULE, CAP_KILL, CAP_SETUID ... : a bug in the code that talks
 * to the network cannot be turned into them.
 *
 * Capabilities are per thread: call this before starting any thread
 * (including nng's, which start with the first socket).
 */
#ifndef AGENT_PRIVS_H
#define AGENT_PRIVS_H

#include <stddef.h>

/* agent_drop_privileges keeps only the capabilities above. Returns 0 with
 * a description of what is kept in kept ("cap_bpf,cap_perfmon=ep ..."),
 * or a negative errno with the reason in err (the agent still runs). */
int agent_drop_privileges(char *kept, size_t keptlen, char *err, size_t errlen);

#endif
