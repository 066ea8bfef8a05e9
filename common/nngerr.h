/* nngerr.h: nng result codes as negative errnos, for functions that
 * return 0 or a negative errno (the house rule) around nng calls. */
#ifndef SH_NNGERR_H
#define SH_NNGERR_H

/* sh_errno_from_nng converts an nng result code to a negative errno: 0
 * stays 0, NNG_ESYSERR codes carry their errno, and nng's own codes map to
 * the nearest errno (-ETIMEDOUT, -ECANCELED for closed or canceled,
 * -ECONNRESET for any lost connection, ...); anything else is -EIO. */
int sh_errno_from_nng(int rv);

/* sh_nng_describe names the nng library linked in ("nng 1.5.2, patched" or
 * "nng 1.5.2, unpatched"); sh_nng_warn_unpatched logs a warning when it is
 * a 1.5 without deploy/nng's fix (a closed pipe can leave the process
 * disconnected for good). */
const char *sh_nng_describe(void);
void sh_nng_warn_unpatched(const char *who);

#endif
