/* privs.c: dropping capabilities after the BPF setup (see privs.h). */
#include "privs.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/capability.h>
#include <sys/prctl.h>

#ifndef CAP_PERFMON
#define CAP_PERFMON 38
#endif
#ifndef CAP_BPF
#define CAP_BPF 39
#endif
#ifndef CAP_CHECKPOINT_RESTORE
#define CAP_CHECKPOINT_RESTORE 40
#endif

int agent_drop_privileges(char *kept, size_t keptlen, char *err, size_t errlen)
{
	cap_value_t keep[8], held[8];
	int n = 0, nheld = 0, rv = 0;
	cap_t caps;
	char *text;

	kept[0] = '\0';
	if (CAP_IS_SUPPORTED(CAP_BPF) && CAP_IS_SUPPORTED(CAP_PERFMON)) {
		keep[n++] = CAP_BPF;
		keep[n++] = CAP_PERFMON;
	} else {
		keep[n++] = CAP_SYS_ADMIN;
	}
	keep[n++] = CAP_SYS_PTRACE;
	if (CAP_IS_SUPPORTED(CAP_CHECKPOINT_RESTORE))
		keep[n++] = CAP_CHECKPOINT_RESTORE;
	keep[n++] = CAP_DAC_READ_SEARCH;
	keep[n++] = CAP_SYSLOG;

	if (!(caps = cap_get_proc())) {
		snprintf(err, errlen, "cannot read this process's capabilities: %s", strerror(errno));
		return -errno;
	}
	/* the bounding set first (that needs CAP_SETPCAP, which goes next) */
	for (cap_value_t c = 0; CAP_IS_SUPPORTED(c); c++) {
		bool k = false;

		for (int i = 0; i < n; i++)
			k |= keep[i] == c;
		if (!k && cap_get_bound(c) == 1 && cap_drop_bound(c) != 0 && errno != EPERM) {
			rv = -errno;
			snprintf(err, errlen, "cannot drop capability %d from the bounding set: %s", c,
				 strerror(errno));
			goto out;
		}
	}
	/* keep what we hold of the list, nothing else, nothing inheritable */
	for (int i = 0; i < n; i++) {
		cap_flag_value_t have = CAP_CLEAR;

		cap_get_flag(caps, keep[i], CAP_PERMITTED, &have);
		if (have == CAP_SET)
			held[nheld++] = keep[i];
	}
	if (cap_clear(caps) != 0 ||
	    (nheld && (cap_set_flag(caps, CAP_PERMITTED, nheld, held, CAP_SET) != 0 ||
		       cap_set_flag(caps, CAP_EFFECTIVE, nheld, held, CAP_SET) != 0)) ||
	    cap_set_proc(caps) != 0) {
		rv = -errno;
		snprintf(err, errlen, "cannot set this process's capabilities: %s", strerror(errno));
		goto out;
	}
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
		rv = -errno;
		snprintf(err, errlen, "cannot set no_new_privs: %s", strerror(errno));
		goto out;
	}
	cap_free(caps);
	caps = cap_get_proc();
	text = caps ? cap_to_text(caps, NULL) : NULL;
	snprintf(kept, keptlen, "%s", text ? text : "?");
	cap_free(text);
out:
	cap_free(caps);
	return rv;
}
