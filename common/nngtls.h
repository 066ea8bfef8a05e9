/* nngtls.h: listening and dialing nng sockets with or without TLS.
 *
 * A "tls+tcp://" URL gets a TLS configuration built from struct sh_tls
 * (nng's mbedTLS engine); any other URL is listened on or dialed as is, and
 * then no TLS file may be set (a key meant for TLS on a plain TCP URL is a
 * configuration mistake, said as such).
 *
 * Server (the aggregator's data and control planes): cert and key are
 * required; with ca set, every peer must present a certificate signed by
 * it (mutual TLS: only enrolled agents get in), else peers are not asked
 * for one.
 * Client (the agent): ca is required and the server's certificate must be
 * signed by it and name server_name (default: the URL's host), so commands
 * are only taken from the configured aggregator; cert and key (optional)
 * are presented when the server asks.
 */
#ifndef SH_NNGTLS_H
#define SH_NNGTLS_H

#include <stdbool.h>
#include <stddef.h>
#include <nng/nng.h>

/* struct sh_tls: PEM file paths (NULL or "" = unset), borrowed. */
struct sh_tls {
	const char *cert;        /* own certificate (chain) */
	const char *key;         /* its private key (unencrypted PEM) */
	const char *ca;          /* CA certificates to verify the peer with */
	const char *server_name; /* client: the name the server's certificate must carry */
};

/* sh_tls_is_tls tells whether url is a TLS URL ("tls+tcp://..."). */
bool sh_tls_is_tls(const char *url);

/* sh_tls_listen starts a listener on s at url. Returns 0, or an nng error
 * with a one-line message in err ("tls_cert is required for tls+tcp://",
 * "cannot read tls_ca \"/x\": ...", the nng error of the listen). */
int sh_tls_listen(nng_socket s, const char *url, const struct sh_tls *t, char *err,
		  size_t errlen);

/* sh_tls_dial starts a dialer on s to url (flags: 0 or NNG_FLAG_NONBLOCK,
 * as for nng_dial). Returns 0 or an nng error with a message in err. */
int sh_tls_dial(nng_socket s, const char *url, const struct sh_tls *t, int flags, char *err,
		size_t errlen);

#endif
