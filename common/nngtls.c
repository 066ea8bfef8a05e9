/* nngtls.c: nng listeners and dialers with optional TLS (see nngtls.h). */
#include "nngtls.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <nng/supplemental/tls/tls.h>


#define PEM_MAX (1 << 20)

static bool set(const char *s)
{
	return s && s[0];
}

bool sh_tls_is_tls(const char *url)
{
	return url && strncmp(url, "tls+tcp", 7) == 0;
}

/* read_pem reads a whole PEM file into a NUL-terminated string. */
static int read_pem(const char *what, const char *path, char **out, char *err, size_t errlen)
{
	FILE *f = fopen(path, "re");
	size_t n;
	char *buf;

	if (!f) {
		snprintf(err, errlen, "cannot read %s \"%s\": %s", what, path, strerror(errno));
		return NNG_ENOENT;
	}
	buf = malloc(PEM_MAX + 1);
	if (!buf) {
		fclose(f);
		snprintf(err, errlen, "out of memory");
		return NNG_ENOMEM;
	}
	n = fread(buf, 1, PEM_MAX + 1, f);
	fclose(f);
	if (n == 0 || n > PEM_MAX || !strstr(buf, "-----BEGIN")) {
		snprintf(err, errlen, "%s \"%s\" is %s", what, path,
			 n > PEM_MAX ? "over 1 MiB" : "not a PEM file");
		free(buf);
		return NNG_EINVAL;
	}
	buf[n] = '\0';
	*out = buf;
	return 0;
}

/* url_host copies the host of "tls+tcp://HOST:PORT" (brackets of an IPv6
 * literal removed). */
static void url_host(const char *url, char *host, size_t len)
{
	const char *p = strstr(url, "://"), *end;

	host[0] = '\0';
	if (!p)
		return;
	p += 3;
	if (*p == '[') {
		p++;
		end = strchr(p, ']');
	} else {
		end = strrchr(p, ':');
	}
	if (!end)
		end = p + strlen(p);
	snprintf(host, len, "%.*s", (int)(end - p), p);
}

/* make_config builds the TLS configuration of one end. */
static int make_config(bool server, const char *url, const struct sh_tls *t,
		       nng_tls_config **out, char *err, size_t errlen)
{
	nng_tls_config *cfg = NULL;
	char *cert = NULL, *key = NULL, host[256];
	int rv;

	if (server && (!set(t->cert) || !set(t->key))) {
		snprintf(err, errlen, "tls_cert and tls_key are required to listen on %s", url);
		return NNG_EINVAL;
	}
	if (!server && !set(t->ca)) {
		snprintf(err, errlen,
			 "tls_ca is required to dial %s (the aggregator's certificate is verified)",
			 url);
		return NNG_EINVAL;
	}
	if (set(t->cert) != set(t->key)) {
		snprintf(err, errlen, "tls_cert and tls_key go together: set both or neither");
		return NNG_EINVAL;
	}
	if ((rv = nng_tls_config_alloc(&cfg, server ? NNG_TLS_MODE_SERVER : NNG_TLS_MODE_CLIENT))) {
		snprintf(err, errlen, "no TLS here: %s", nng_strerror(rv));
		return rv;
	}
	if (set(t->ca)) {
		if ((rv = nng_tls_config_ca_file(cfg, t->ca)) != 0) {
			snprintf(err, errlen, "cannot use tls_ca \"%s\": %s", t->ca, nng_strerror(rv));
			goto fail;
		}
	}
	rv = nng_tls_config_auth_mode(cfg, set(t->ca) ? NNG_TLS_AUTH_MODE_REQUIRED :
							 NNG_TLS_AUTH_MODE_NONE);
	if (rv != 0) {
		snprintf(err, errlen, "cannot set the TLS authentication mode: %s", nng_strerror(rv));
		goto fail;
	}
	if (set(t->cert)) {
		if ((rv = read_pem("tls_cert", t->cert, &cert, err, errlen)) != 0 ||
		    (rv = read_pem("tls_key", t->key, &key, err, errlen)) != 0)
			goto fail;
		if ((rv = nng_tls_config_own_cert(cfg, cert, key, NULL)) != 0) {
			snprintf(err, errlen, "cannot use tls_cert \"%s\" with tls_key \"%s\": %s",
				 t->cert, t->key, nng_strerror(rv));
			goto fail;
		}
	}
	if (!server) {
		if (set(t->server_name))
			snprintf(host, sizeof(host), "%s", t->server_name);
		else
			url_host(url, host, sizeof(host));
		if ((rv = nng_tls_config_server_name(cfg, host)) != 0) {
			snprintf(err, errlen, "cannot set the TLS server name \"%s\": %s", host,
				 nng_strerror(rv));
			goto fail;
		}
	}
	free(cert);
	free(key);
	*out = cfg;
	return 0;
fail:
	free(cert);
	free(key);
	nng_tls_config_free(cfg);
	return rv;
}

static int check_plain(const char *url, const struct sh_tls *t, char *err, size_t errlen)
{
	if (t && (set(t->cert) || set(t->key) || set(t->ca))) {
		snprintf(err, errlen, "TLS files are set but \"%s\" is not a tls+tcp:// address",
			 url);
		return NNG_EINVAL;
	}
	return 0;
}

/* start_end listens (server) or dials on s at url, with TLS for a
 * tls+tcp:// url. */
static int start_end(nng_socket s, const char *url, const struct sh_tls *t, bool server,
		     int flags, char *err, size_t errlen)
{
	static const struct sh_tls none;
	nng_tls_config *cfg;
	int rv;

	if (!t)
		t = &none;
	if (!sh_tls_is_tls(url)) {
		if ((rv = check_plain(url, t, err, errlen)) != 0)
			return rv;
		rv = server ? nng_listen(s, url, NULL, 0) : nng_dial(s, url, NULL, flags);
		if (rv != 0)
			snprintf(err, errlen, "%s", nng_strerror(rv));
		return rv;
	}
	if ((rv = make_config(server, url, t, &cfg, err, errlen)) != 0)
		return rv;
	/* the listener or dialer holds its own reference to cfg */
	if (server) {
		nng_listener l;

		if ((rv = nng_listener_create(&l, s, url)) == 0 &&
		    ((rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, cfg)) != 0 ||
		     (rv = nng_listener_start(l, 0)) != 0))
			nng_listener_close(l);
	} else {
		nng_dialer d;

		if ((rv = nng_dialer_create(&d, s, url)) == 0 &&
		    ((rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, cfg)) != 0 ||
		     (rv = nng_dialer_start(d, flags)) != 0))
			nng_dialer_close(d);
	}
	nng_tls_config_free(cfg);
	if (rv != 0)
		snprintf(err, errlen, "%s", nng_strerror(rv));
	return rv;
}

int sh_tls_listen(nng_socket s, const char *url, const struct sh_tls *t, char *err,
		  size_t errlen)
{
	return start_end(s, url, t, true, 0, err, errlen);
}

int sh_tls_dial(nng_socket s, const char *url, const struct sh_tls *t, int flags, char *err,
		size_t errlen)
{
	return start_end(s, url, t, false, flags, err, errlen);
}
