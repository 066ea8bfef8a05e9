/* nngerr.c: nng result codes as negative errnos (see nngerr.h). */
#include "nngerr.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <nng/nng.h>

#include "log.h"

#ifndef SH_NNG_PATCHED
#define SH_NNG_PATCHED 0
#endif

int sh_errno_from_nng(int rv)
{
	if (rv & NNG_ESYSERR)
		return -(rv & ~NNG_ESYSERR);
	switch (rv) {
	case 0:
		return 0;
	case NNG_ENOMEM:
		return -ENOMEM;
	case NNG_ETIMEDOUT:
		return -ETIMEDOUT;
	case NNG_ECLOSED:
	case NNG_ECANCELED:
		return -ECANCELED;
	case NNG_EINVAL:
	case NNG_EADDRINVAL:
		return -EINVAL;
	case NNG_ENOTSUP:
		return -ENOTSUP;
	case NNG_ECONNREFUSED:
		return -ECONNREFUSED;
	case NNG_ECONNRESET:
	case NNG_ECONNSHUT:
	case NNG_ECONNABORTED:
		return -ECONNRESET;
	case NNG_EMSGSIZE:
		return -EMSGSIZE;
	case NNG_EPROTO:
		return -EPROTO;
	case NNG_EUNREACHABLE:
		return -EHOSTUNREACH;
	default:
		return -EIO;
	}
}

const char *sh_nng_describe(void)
{
	static char buf[64];

	snprintf(buf, sizeof(buf), "nng %s, %s", nng_version(),
		 SH_NNG_PATCHED ? "patched (deploy/nng)" : "unpatched");
	return buf;
}

void sh_nng_warn_unpatched(const char *who)
{
	/* 1.6 and later carry upstream's fix */
	if (!SH_NNG_PATCHED && strncmp(nng_version(), "1.5.", 4) == 0)
		sh_warn("%s: linked with the system's nng %s, without the fix in deploy/nng/: "
			"after a lost connection it may never reconnect; build with "
			"deploy/build-nng.sh",
			who, nng_version());
}
