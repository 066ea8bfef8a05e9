/* nngerr.h: nng result codes as negative errnos, for functions that
 * return 0 or a negative errno (the house rule) around nng calls. */
#ifndef SH_NNGERR_H
#define SH_NNGERR_H

/* sh_errno_from_nng converts an nng result code to a negative errno: 0
 * stays 0, NNG_ESYSERR codes carry their errno, and nng's own codes map to
 * the nearest errno (-ETIMEDOUT, -ECANCELED for closed or canceled,
 * -ECONNRESET for any lost connection, ...); anything else is -EIO. */
int sh_errno_from_nng(int rv);

#endif
