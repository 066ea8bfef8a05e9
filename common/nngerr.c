/* nngerr.c: nng result codes as negative errnos (see nngerr.h). */
#include "nngerr.h"

#include <errno.h>

#include <nng/nng.h>

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
