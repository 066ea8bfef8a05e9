/* truth.c: writes the ground truth of a run. Header lines (run, host,
 * cause) are built with jansson, since cmdline features and paths may need
 * escaping; spike and noise lines carry only ids, kind names and numbers
 * and are printed directly (cause names are checked by scenario.c). */
#include "truth.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "log.h"
#include "timeutil.h"

struct fsim_truth {
	const char *path;
	FILE *spikes; /* anonymous temporary file */
	int write_err;
};

int fsim_truth_open(struct fsim_truth **out, const char *path)
{
	struct fsim_truth *t = calloc(1, sizeof(*t));
	int err;

	*out = NULL;
	if (!t)
		return -ENOMEM;
	t->path = path;
	t->spikes = tmpfile();
	if (!t->spikes) {
		err = -errno;
		sh_err("could not create a temporary file for the truth: %s", strerror(errno));
		free(t);
		return err;
	}
	*out = t;
	return 0;
}

void fsim_truth_spike(struct fsim_truth *t, const char *incident, const char *cause,
		      const char *host_id, const char *kind, int64_t ts_ns, int64_t host_ts_ns,
		      int64_t duration_ns)
{
	if (!t)
		return;
	if (fprintf(t->spikes,
		    "{\"type\":\"spike\",\"incident\":\"%s\",\"cause\":\"%s\",\"host_id\":\"%s\","
		    "\"kind\":\"%s\",\"ts_ns\":%" PRId64 ",\"host_ts_ns\":%" PRId64
		    ",\"duration_ns\":%" PRId64 "}\n",
		    incident, cause, host_id, kind, ts_ns, host_ts_ns, duration_ns) < 0)
		t->write_err = errno ? errno : EIO;
}

void fsim_truth_noise(struct fsim_truth *t, const char *host_id, const char *kind, int64_t ts_ns)
{
	if (!t)
		return;
	if (fprintf(t->spikes,
		    "{\"type\":\"noise\",\"host_id\":\"%s\",\"kind\":\"%s\",\"ts_ns\":%" PRId64
		    "}\n",
		    host_id, kind, ts_ns) < 0)
		t->write_err = errno ? errno : EIO;
}

/* put_line writes j (stolen) as one compact line. */
static int put_line(FILE *f, json_t *j)
{
	char *s = j ? json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15)) : NULL;
	int rv = 0;

	if (!s || fprintf(f, "%s\n", s) < 0)
		rv = -EIO;
	free(s);
	json_decref(j);
	return rv;
}

static int write_headers(FILE *out, const struct fsim_fleet *f, const struct fsim_truth_run *run)
{
	const struct fsim_scenario *sc = f->sc;
	double hours = (double)(run->to_ns - run->from_ns) / 3600e9;
	int rv;

	rv = put_line(out,
		      json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:s}", "type", "run", "seed",
				(json_int_t)run->seed, "hosts", (json_int_t)f->n_hosts, "from_ns",
				(json_int_t)run->from_ns, "to_ns", (json_int_t)run->to_ns,
				"interval_s", (json_int_t)(run->interval_ns / SH_NS_PER_SEC),
				"host_hours", hours * f->n_hosts, "scenario",
				run->scenario ? run->scenario : ""));
	for (uint32_t i = 0; rv == 0 && i < f->n_hosts; i++) {
		const struct fsim_host *h = &f->hosts[i];

		rv = put_line(out, json_pack("{s:s, s:s, s:s, s:s, s:{s:s, s:s, s:s}, s:f}", "type",
					     "host", "host_id", h->host_id, "hostname", h->hostname,
					     "kernel", sc->kernels.names[h->kernel], "labels",
					     "rack", sc->racks.names[h->rack], "cluster",
					     sc->clusters.names[h->cluster], "role",
					     sc->roles.names[h->role], "skew_ms",
					     (double)h->skew_ns / 1e6));
	}
	for (size_t i = 0; rv == 0 && i < sc->n_causes; i++) {
		const struct fsim_cause *c = &sc->causes[i];

		rv = put_line(out,
			      json_pack("{s:s, s:s, s:s, s:s, s:b, s:I}", "type", "cause", "name",
					c->name, "feature", c->feature ? c->feature : "", "kind",
					c->kind >= 0 ? fsim_kind_names[c->kind] : "", "decoy",
					c->type == FSIM_DECOY, "hosts",
					(json_int_t)f->cause_hosts[i]));
	}
	return rv;
}

int fsim_truth_close(struct fsim_truth *t, const struct fsim_fleet *f,
		     const struct fsim_truth_run *run)
{
	char tmp[4096], buf[65536];
	FILE *out = NULL;
	size_t n;
	int rv = 0;

	if (!t)
		return 0;
	if (t->write_err) {
		rv = -t->write_err;
		sh_err("could not write the truth: %s", strerror(t->write_err));
		goto cleanup;
	}
	snprintf(tmp, sizeof(tmp), "%s.tmp", t->path);
	out = fopen(tmp, "we");
	if (!out) {
		rv = -errno;
		sh_err("could not create \"%s\": %s", tmp, strerror(errno));
		goto cleanup;
	}
	rv = write_headers(out, f, run);
	rewind(t->spikes);
	while (rv == 0 && (n = fread(buf, 1, sizeof(buf), t->spikes)) > 0)
		if (fwrite(buf, 1, n, out) != n)
			rv = -EIO;
	if (rv == 0 && ferror(t->spikes))
		rv = -EIO;
	if (fclose(out) != 0 && rv == 0)
		rv = -errno;
	out = NULL;
	if (rv == 0 && rename(tmp, t->path) != 0)
		rv = -errno;
	if (rv != 0) {
		sh_err("could not write the truth to \"%s\": %s", t->path, strerror(-rv));
		unlink(tmp);
	}
cleanup:
	if (out)
		fclose(out);
	fclose(t->spikes);
	free(t);
	return rv;
}

void fsim_truth_discard(struct fsim_truth *t)
{
	if (!t)
		return;
	fclose(t->spikes);
	free(t);
}
