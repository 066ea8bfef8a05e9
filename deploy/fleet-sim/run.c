/* run.c: the simulator's main loop, on one thread.
 *
 * Each host sends like the real agent: one request at a time, holding a
 * fresh Hello and the oldest messages of its outbox, and nothing newer
 * until those are acknowledged. That matters: the aggregator dedupes by a
 * per-boot high-water mark of committed sequence numbers, so a host must
 * never have a later message committed before an earlier one. Many hosts
 * are in flight at once (up to --concurrency requests).
 *
 * An Ack item stored -> acknowledged; rejected -> counted, not resent; an
 * Ack RETRY, a timeout or a transport error -> the same messages (same
 * seqs) are sent again after a back-off. The loop: hand out idle request
 * slots round-robin to hosts with released messages (generating a host's
 * next intervals on the way), then wait for completions.
 *
 * With the control plane on, every host also long-polls for commands
 * (control.c) and takes the captures asked of it when their window has
 * passed (capture.c): the chunks go into its outbox ahead of the messages
 * generated in advance and not yet due (which move to later seqs), so they
 * leave at once, in seq order, acknowledged and resent like the rest. */
#include "run.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "agentreq.h"
#include "capture.h"
#include "capwire.h"
#include "control.h"
#include "fleet.h"
#include "gen.h"
#include "log.h"
#include "nngerr.h"
#include "timeutil.h"
#include "truth.h"
#include "wire.h"

#define BACKOFF_MIN_MS 100
#define BACKOFF_MAX_MS 5000
#define MAX_REASONS 32
#define WARN_EVERY_NS (10 * SH_NS_PER_SEC)
#define CAPTURE_SLICE_NS (50 * SH_NS_PER_MS) /* captures taken per loop turn, at most this long */

struct reason {
	char text[64];
	uint64_t n;
};

struct run {
	const struct fsim_run_opts *o;
	struct fsim_fleet *f;
	struct fsim_gen *g;
	struct fsim_wire *w;
	struct fsim_ctl *ctl;  /* NULL: control plane off */
	int64_t live_start_ns; /* true time the live part (and the recorders) began */
	uint32_t rr;	       /* round-robin position */
	bool gen_stopped;      /* a signal: generate nothing more */
	int fatal;	       /* a negative errno that ends the run */

	uint64_t requests, sent, acked, acked_summaries, acked_events, acked_chunks, rejected;
	uint64_t captures_done, captures_failed, chunks, capture_bytes, capture_raw_bytes;
	uint64_t capture_samples;
	int64_t capture_ns_max, capture_ns_sum;
	uint64_t retries, timeouts, failures;
	struct reason reasons[MAX_REASONS];
	size_t n_reasons;
	int64_t rtt_sum_ns, rtt_max_ns;
	uint64_t rtt_n;
	int64_t warn_next_ns;
	uint64_t warn_suppressed;
	int64_t *sent_mono; /* per host: when its request left */
};

/* warn logs a delivery problem: the first at once, then at most one line
 * every 10 s with the number of those not shown. */
static void warn(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void warn(struct run *r, const char *fmt, ...)
{
	int64_t now = sh_now_mono_ns();
	char msg[256];
	va_list ap;

	if (now < r->warn_next_ns) {
		r->warn_suppressed++;
		return;
	}
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (r->warn_suppressed)
		sh_warn("%s (and %" PRIu64 " more problems since the last warning)", msg,
			r->warn_suppressed);
	else
		sh_warn("%s", msg);
	r->warn_suppressed = 0;
	r->warn_next_ns = now + WARN_EVERY_NS;
}

static void count_reason(struct run *r, const char *why)
{
	size_t i;

	if (!why || !*why)
		why = "no reason given";
	for (i = 0; i < r->n_reasons; i++)
		if (strncmp(r->reasons[i].text, why, sizeof(r->reasons[i].text) - 1) == 0)
			break;
	if (i == r->n_reasons) {
		if (i == MAX_REASONS)
			i--; /* the last one collects the rest */
		else
			r->n_reasons++;
		snprintf(r->reasons[i].text, sizeof(r->reasons[i].text), "%s",
			 i == MAX_REASONS - 1 ? "other" : why);
	}
	r->reasons[i].n++;
}

static void backoff(struct run *r, struct fsim_host *h)
{
	int ms;

	h->backoff_ms = h->backoff_ms ? h->backoff_ms * 2 : BACKOFF_MIN_MS;
	if (h->backoff_ms > BACKOFF_MAX_MS)
		h->backoff_ms = BACKOFF_MAX_MS;
	ms = h->backoff_ms / 2 + (int)fsim_rng_below(&h->rng, (uint64_t)h->backoff_ms / 2 + 1);
	h->retry_at_ns = sh_now_mono_ns() + (int64_t)ms * SH_NS_PER_MS;
	r->retries++;
}

/* send_host frames h's released head messages with a fresh Hello into one
 * request and sends it. Returns 0 or a negative errno. */
static int send_host(struct run *r, struct fsim_host *h, int64_t now_wall)
{
	const struct fsim_run_opts *o = r->o;
	struct fsim_hello hello;
	size_t hlen, total, n = 0;
	uint8_t *p;
	nng_msg *msg;
	int rv;

	/* the simulated host's own clock says when it sends */
	fsim_host_hello(r->f, h, now_wall, &hello);
	hlen = spikehound__hello__get_packed_size(&hello.hello);
	total = sh_agentreq_field_size(hlen);
	while (n < h->out_n && n < (size_t)o->batch) {
		const struct fsim_out *e = &h->out[h->out_head + n];
		size_t add = sh_agentreq_field_size(e->len);

		if (e->release_ns > now_wall || (n > 0 && total + add > o->max_request_bytes))
			break;
		total += add;
		n++;
	}
	if (n == 0)
		return 0;
	if ((rv = nng_msg_alloc(&msg, total)) != 0)
		return sh_errno_from_nng(rv);
	p = sh_agentreq_put_hello(nng_msg_body(msg), &hello.hello, hlen);
	for (size_t i = 0; i < n; i++) {
		const struct fsim_out *e = &h->out[h->out_head + i];

		p = sh_agentreq_put_message(p, e->buf, e->len);
	}
	h->busy = true;
	h->inflight = n;
	r->sent_mono[h->idx] = sh_now_mono_ns();
	r->requests++;
	r->sent += n;
	return fsim_wire_send(r->w, msg, h);
}

/* apply_ack removes the in-flight entries the Ack settles (stored or
 * rejected); returns how many. */
static size_t apply_ack(struct run *r, struct fsim_host *h, const Spikehound__Ack *ack)
{
	bool done[1024] = {false};
	size_t n = h->inflight < 1024 ? h->inflight : 1024, removed = 0;

	for (size_t k = 0; k < ack->n_items; k++) {
		const Spikehound__Ack__Item *it = ack->items[k];
		bool rejected = it->rejected && it->rejected[0];
		size_t i;

		if (!it->stored && !rejected)
			continue;
		if (!it->boot_id || strcasecmp(it->boot_id, h->boot_id) != 0)
			continue;
		for (i = 0; i < n; i++)
			if (!done[i] && h->out[h->out_head + i].seq == it->seq)
				break;
		if (i == n)
			continue;
		done[i] = true;
		if (it->stored) {
			r->acked++;
			if (h->out[h->out_head + i].kind == FSIM_OUT_SUMMARY)
				r->acked_summaries++;
			else if (h->out[h->out_head + i].kind == FSIM_OUT_CHUNK)
				r->acked_chunks++;
			else
				r->acked_events++;
		} else {
			r->rejected++;
			count_reason(r, it->rejected);
			warn(r, "aggregator rejected message %s/%" PRIu64 " of %s: %s", h->boot_id,
			     it->seq, h->hostname, it->rejected);
		}
	}
	/* drop from the back so indices stay valid */
	for (size_t i = n; i-- > 0;) {
		if (!done[i])
			continue;
		fsim_host_drop(h, i);
		removed++;
	}
	return removed;
}

static void done_cb(void *arg, void *tag, int err, nng_msg *reply)
{
	struct run *r = arg;
	struct fsim_host *h = tag;
	Spikehound__Ack *ack = NULL;
	int64_t rtt = sh_now_mono_ns() - r->sent_mono[h->idx];
	size_t removed;

	h->busy = false;
	if (err) {
		r->failures++;
		if (err == -ETIMEDOUT)
			r->timeouts++;
		warn(r, "request of %s failed: %s; sending it again", h->hostname, strerror(-err));
		backoff(r, h);
		return;
	}
	ack = spikehound__ack__unpack(NULL, nng_msg_len(reply), nng_msg_body(reply));
	nng_msg_free(reply);
	if (!ack) {
		r->failures++;
		warn(r, "could not decode an ack for %s; sending again", h->hostname);
		backoff(r, h);
		return;
	}
	r->rtt_sum_ns += rtt;
	r->rtt_n++;
	if (rtt > r->rtt_max_ns)
		r->rtt_max_ns = rtt;
	if (ack->status == SPIKEHOUND__ACK__STATUS__RETRY) {
		warn(r, "aggregator asked %s to retry: %s", h->hostname,
		     ack->reason && *ack->reason ? ack->reason : "no reason given");
		backoff(r, h);
	} else if (ack->status == SPIKEHOUND__ACK__STATUS__REJECTED && ack->n_items == 0) {
		/* the request as a whole: none of it may be resent */
		warn(r, "aggregator rejected a request of %s: %s", h->hostname,
		     ack->reason && *ack->reason ? ack->reason : "no reason given");
		for (size_t i = 0; i < h->inflight; i++) {
			r->rejected++;
			count_reason(r, ack->reason);
			fsim_host_drop(h, 0);
		}
		h->backoff_ms = 0;
	} else {
		removed = apply_ack(r, h, ack);
		if (removed == 0) {
			warn(r,
			     "aggregator settled none of the %zu messages of %s (%s); sending again",
			     h->inflight, h->hostname,
			     ack->reason && *ack->reason ? ack->reason : "ok");
			backoff(r, h);
		} else {
			h->backoff_ms = 0;
			h->retry_at_ns = 0;
		}
	}
	h->inflight = 0;
	spikehound__ack__free_unpacked(ack, NULL);
}

/* queue_chunks puts the chunks of a capture (data, len; or, with tmpl's
 * error set, the one chunk saying why there is none) into h's outbox ahead
 * of its messages not yet due. Returns how many, or a negative errno. */
static int queue_chunks(struct run *r, struct fsim_host *h, const Spikehound__CaptureChunk *tmpl,
			const uint8_t *data, size_t len, int64_t now_wall)
{
	size_t cb = r->o->capture_chunk_bytes;
	bool failed = tmpl->error && tmpl->error[0];
	size_t n = failed ? 1 : sh_capwire_chunk_count(len, cb);
	size_t pos = fsim_host_first_unreleased(h, now_wall);
	uint64_t first = pos < h->out_n ? h->out[h->out_head + pos].seq : h->seq + 1;
	struct fsim_out *items = calloc(n ? n : 1, sizeof(*items));
	int rv = 0;

	if (!items)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		Spikehound__AgentMessage m = SPIKEHOUND__AGENT_MESSAGE__INIT;
		Spikehound__CaptureChunk ch = *tmpl;
		size_t mlen;

		if (!failed)
			sh_capwire_chunk_slice(&ch, data, len, cb, (uint32_t)i);
		m.host_id = h->host_id;
		m.boot_id = h->boot_id;
		m.seq = first + i;
		m.created_ns = now_wall + h->skew_ns;
		m.body_case = SPIKEHOUND__AGENT_MESSAGE__BODY_CHUNK;
		m.chunk = &ch;
		mlen = spikehound__agent_message__get_packed_size(&m);
		if (!(items[i].buf = malloc(mlen))) {
			rv = -ENOMEM;
			break;
		}
		spikehound__agent_message__pack(&m, items[i].buf);
		items[i].len = mlen;
		items[i].seq = m.seq;
		items[i].release_ns = 0;
		items[i].kind = FSIM_OUT_CHUNK;
	}
	if (rv == 0)
		rv = fsim_host_insert(h, pos, items, n);
	if (rv != 0)
		for (size_t i = 0; i < n; i++)
			free(items[i].buf);
	free(items);
	if (rv != 0)
		return rv;
	r->chunks += n;
	return (int)n;
}

/* take_capture takes one capture job and reports its outcome. */
static void take_capture(struct run *r, const struct fsim_ctl_job *job, int64_t now_wall)
{
	struct fsim_host *h = &r->f->hosts[job->host];
	const Spikehound__CaptureRequest *req = job->req;
	Spikehound__CaptureChunk ch;
	struct fsim_capture_src src = {
		.f = r->f,
		.g = r->g,
		.h = h,
		.now_ns = now_wall + h->skew_ns,
		.sample_hz = 99,
	};
	struct fsim_capture_result res;
	int64_t t0 = sh_now_mono_ns();
	char reason[256];
	int rv, n;

	if (r->gen_stopped) {
		fsim_ctl_report(r->ctl, job->host, job->command_id, "failed",
				"the agent is stopping");
		r->captures_failed++;
		return;
	}
	/* the recorder holds what the host generated: bring it up to now */
	while (fsim_gen_due(r->g, h, now_wall)) {
		if ((rv = fsim_gen_step(r->g, h)) != 0) {
			sh_err("could not generate the data of %s: %s", h->hostname, strerror(-rv));
			r->fatal = rv;
			return;
		}
	}
	src.held_since_ns = src.now_ns - r->o->recorder_span_ns;
	if (src.held_since_ns < r->live_start_ns + h->skew_ns)
		src.held_since_ns = r->live_start_ns + h->skew_ns;
	sh_capwire_chunk_init(&ch, req);
	rv = fsim_capture_take(&src, req, &res);
	if (rv == 0) {
		ch.sha256 = res.sha256;
		ch.compressed_bytes = res.len;
		ch.raw_bytes = res.raw_bytes;
		ch.from_ns = res.held_from_ns;
		ch.to_ns = res.held_to_ns;
	} else {
		ch.error = res.error;
	}
	n = queue_chunks(r, h, &ch, res.data, res.len, now_wall);
	if (rv == 0 && n > 0) {
		snprintf(reason, sizeof(reason),
			 "%zu samples, %zu events, %zu metric seconds; %zu bytes in %d chunks%s",
			 res.samples, res.events, res.metrics, res.len, n,
			 res.truncated ? " (truncated at the size cap)" : "");
		r->captures_done++;
		r->capture_bytes += res.len;
		r->capture_raw_bytes += res.raw_bytes;
		r->capture_samples += res.samples;
		sh_debug("capture %s on %s: %s", ch.capture_id, h->hostname, reason);
	} else {
		snprintf(reason, sizeof(reason), "%s",
			 rv < 0 ? res.error : "could not queue the capture: out of memory");
		r->captures_failed++;
		warn(r, "capture %s on %s failed: %s", ch.capture_id, h->hostname, reason);
	}
	fsim_ctl_report(r->ctl, job->host, job->command_id, rv == 0 && n > 0 ? "done" : "failed",
			reason);
	fsim_capture_result_fini(&res);
	t0 = sh_now_mono_ns() - t0;
	r->capture_ns_sum += t0;
	if (t0 > r->capture_ns_max)
		r->capture_ns_max = t0;
}

static void wake_cb(void *arg)
{
	fsim_wire_wake(arg);
}

/* run_captures takes the captures that are due, for at most a slice of
 * time (the rest wait for the next turn of the loop). */
static void run_captures(struct run *r, int64_t now_wall)
{
	struct fsim_ctl_job job;
	int64_t t0 = sh_now_mono_ns();

	while (!r->fatal && sh_now_mono_ns() - t0 < CAPTURE_SLICE_NS &&
	       fsim_ctl_next_job(r->ctl, now_wall, &job)) {
		take_capture(r, &job, now_wall);
		fsim_ctl_job_fini(&job);
	}
}

/* dispatch fills idle request slots, visiting hosts round-robin. */
static void dispatch(struct run *r, int64_t now_wall, int64_t now_mono)
{
	struct fsim_fleet *f = r->f;
	uint32_t scanned = 0;

	while (fsim_wire_idle(r->w) > 0 && scanned < f->n_hosts && !r->fatal) {
		struct fsim_host *h = &f->hosts[r->rr];

		r->rr = (r->rr + 1) % f->n_hosts;
		scanned++;
		if (h->busy || h->retry_at_ns > now_mono)
			continue;
		while (!r->gen_stopped && h->out_n < (size_t)r->o->batch &&
		       fsim_gen_due(r->g, h, now_wall)) {
			int rv = fsim_gen_step(r->g, h);

			if (rv) {
				sh_err("could not generate the data of %s: %s", h->hostname,
				       strerror(-rv));
				r->fatal = rv;
				return;
			}
		}
		if (h->out_n && h->out[h->out_head].release_ns <= now_wall) {
			int rv = send_host(r, h, now_wall);

			if (rv) {
				sh_err("could not send a request: %s", strerror(-rv));
				r->fatal = rv;
				return;
			}
			scanned = 0;
		}
	}
}

/* all_done tells whether every host has generated and delivered everything. */
static bool all_done(struct run *r)
{
	for (uint32_t i = 0; i < r->f->n_hosts; i++) {
		struct fsim_host *h = &r->f->hosts[i];

		if (h->busy || h->out_n || (!r->gen_stopped && !fsim_gen_done(r->g, h)))
			return false;
	}
	return true;
}

static uint64_t queued(const struct run *r)
{
	uint64_t n = 0;

	for (uint32_t i = 0; i < r->f->n_hosts; i++)
		n += r->f->hosts[i].out_n;
	return n;
}

static void progress(struct run *r, int64_t elapsed_ns, uint64_t acked_before, int64_t span_ns,
		     int64_t from_ns, int64_t end_ns)
{
	double secs = (double)elapsed_ns / 1e9, span = (double)span_ns / 1e9;
	double done = 0;
	char when[40], pos[32], caps[96] = "";
	int64_t min_cursor = INT64_MAX;

	for (uint32_t i = 0; i < r->f->n_hosts; i++) {
		int64_t c = r->f->hosts[i].cursor_ns;

		if (c < min_cursor)
			min_cursor = c;
		if (end_ns != INT64_MAX && end_ns > from_ns)
			done += (double)(c - from_ns) / (double)(end_ns - from_ns);
	}
	if (end_ns != INT64_MAX)
		snprintf(pos, sizeof(pos), "%.0f%% generated", 100 * done / r->f->n_hosts);
	else
		snprintf(pos, sizeof(pos), "live");
	sh_format_time(min_cursor, when, sizeof(when));
	if (r->ctl)
		snprintf(caps, sizeof(caps),
			 ", captures %" PRIu64 " done (%" PRIu64 "/%" PRIu64 " chunks acked)",
			 r->captures_done, r->acked_chunks, r->chunks);
	sh_info("%.0fs: acked %" PRIu64 " (%.0f/s; %" PRIu64 " summaries, %" PRIu64
		" events), in flight %d, queued %" PRIu64 ", retries %" PRIu64 ", rejected %" PRIu64
		", %s (every host past %s)%s",
		secs, r->acked, span > 0 ? (double)(r->acked - acked_before) / span : 0,
		r->acked_summaries, r->acked_events, fsim_wire_inflight(r->w), queued(r),
		r->retries, r->rejected, pos, when, caps);
}

static void totals(struct run *r, double secs, double host_hours)
{
	const struct fsim_gen_stats *gs = fsim_gen_stats(r->g);
	uint64_t generated = gs->summaries + gs->events + r->chunks;
	uint64_t unacked = generated - r->acked - r->rejected;

	printf("hosts %u\n", r->f->n_hosts);
	printf("summaries %" PRIu64 "\n", gs->summaries);
	printf("events %" PRIu64 "\n", gs->events);
	printf("spikes_injected %" PRIu64 "\n", gs->spikes);
	printf("noise %" PRIu64 "\n", gs->noise);
	printf("bytes %" PRIu64 "\n", gs->bytes);
	printf("acked %" PRIu64 "\n", r->acked);
	printf("acked_summaries %" PRIu64 "\n", r->acked_summaries);
	printf("acked_events %" PRIu64 "\n", r->acked_events);
	printf("rejected %" PRIu64 "\n", r->rejected);
	for (size_t i = 0; i < r->n_reasons; i++)
		printf("rejected_reason %s %" PRIu64 "\n", r->reasons[i].text, r->reasons[i].n);
	printf("unacked %" PRIu64 "\n", unacked);
	printf("requests %" PRIu64 "\n", r->requests);
	printf("retries %" PRIu64 "\n", r->retries);
	printf("timeouts %" PRIu64 "\n", r->timeouts);
	printf("elapsed_s %.3f\n", secs);
	printf("acked_per_s %.1f\n", secs > 0 ? (double)r->acked / secs : 0);
	printf("summaries_per_s %.1f\n", secs > 0 ? (double)r->acked_summaries / secs : 0);
	printf("events_per_s %.1f\n", secs > 0 ? (double)r->acked_events / secs : 0);
	printf("host_hours %.1f\n", host_hours);
	printf("host_hours_per_s %.2f\n", secs > 0 ? host_hours / secs : 0);
	printf("rtt_avg_ms %.1f\n", r->rtt_n ? (double)r->rtt_sum_ns / (double)r->rtt_n / 1e6 : 0);
	printf("rtt_max_ms %.1f\n", (double)r->rtt_max_ns / 1e6);
	if (r->ctl) {
		const struct fsim_ctl_stats *cs = fsim_ctl_stats(r->ctl);

		printf("control_polls %" PRIu64 "\n", cs->polls);
		printf("control_failures %" PRIu64 "\n", cs->failures);
		printf("commands %" PRIu64 "\n", cs->commands);
		printf("commands_repeated %" PRIu64 "\n", cs->duplicates);
		printf("commands_refused %" PRIu64 "\n", cs->rejected);
		printf("statuses %" PRIu64 "\n", cs->statuses);
		printf("captures %" PRIu64 "\n", cs->captures);
		printf("captures_done %" PRIu64 "\n", r->captures_done);
		printf("captures_failed %" PRIu64 "\n", r->captures_failed);
		printf("capture_chunks %" PRIu64 "\n", r->chunks);
		printf("acked_chunks %" PRIu64 "\n", r->acked_chunks);
		printf("capture_bytes %" PRIu64 "\n", r->capture_bytes);
		printf("capture_raw_bytes %" PRIu64 "\n", r->capture_raw_bytes);
		printf("capture_samples %" PRIu64 "\n", r->capture_samples);
		printf("capture_take_avg_ms %.1f\n",
		       r->captures_done + r->captures_failed
			       ? (double)r->capture_ns_sum / 1e6 /
					 (double)(r->captures_done + r->captures_failed)
			       : 0.0);
		printf("capture_take_max_ms %.1f\n", (double)r->capture_ns_max / 1e6);
	}
	fflush(stdout);
	sh_info("done: %u hosts, %" PRIu64 " summaries, %" PRIu64 " events (%" PRIu64
		" spikes injected, %" PRIu64 " noise), %" PRIu64 " acknowledged, %" PRIu64
		" rejected, %" PRIu64 " not acknowledged, in %.1fs",
		r->f->n_hosts, gs->summaries, gs->events, gs->spikes, gs->noise, r->acked,
		r->rejected, unacked, secs);
}

int fsim_run(const struct fsim_run_opts *o, volatile sig_atomic_t *stop)
{
	struct run r = {0};
	struct fsim_gen_opts go = {0};
	struct fsim_wire_opts wo = {0};
	struct fsim_truth *truth = NULL;
	int64_t start_wall = sh_now_wall_ns(), start_mono = sh_now_mono_ns(), from, end;
	int64_t next_progress, last_progress, drain_deadline = 0, max_cursor;
	uint64_t acked_at_progress = 0;
	int rv, status;

	r.o = o;
	from = start_wall - o->backfill_ns;
	end = o->duration_ns < 0 ? INT64_MAX : start_wall + o->duration_ns;
	if (end < start_wall)
		end = start_wall;
	if ((rv = fsim_fleet_new(&r.f, o->sc, o->hosts, o->seed, from)) != 0) {
		sh_err("could not build the fleet: %s", strerror(-rv));
		return rv;
	}
	r.sent_mono = calloc(o->hosts, sizeof(*r.sent_mono));
	if (!r.sent_mono) {
		rv = -ENOMEM;
		goto cleanup;
	}
	if (o->truth_path && (rv = fsim_truth_open(&truth, o->truth_path)) != 0)
		goto cleanup;
	go.backfill_end_ns = start_wall;
	go.end_ns = end;
	go.interval_ns = o->interval_ns;
	go.backfill_interval_ns = o->backfill_interval_ns;
	go.backfill_step_ns = o->backfill_step_ns;
	go.record = o->control_url != NULL;
	go.record_keep_ns = o->recorder_span_ns + 10 * SH_NS_PER_SEC;
	r.live_start_ns = start_wall;
	if ((rv = fsim_gen_new(&r.g, r.f, &go, truth)) != 0)
		goto cleanup;
	wo.url = o->url;
	wo.sockets = o->sockets;
	wo.slots = o->concurrency;
	wo.timeout_ms = o->timeout_ms;
	if ((rv = fsim_wire_new(&r.w, &wo)) != 0)
		goto cleanup;
	if (o->control_url) {
		struct fsim_ctl_opts co = {
			.url = o->control_url,
			.wait_ms = o->control_wait_ms,
			.wake = wake_cb,
			.wake_arg = r.w,
		};

		if ((rv = fsim_ctl_new(&r.ctl, &co, r.f)) != 0)
			goto cleanup;
	}
	sh_info("%u hosts to %s: %s%s%s, batch %d, %d in flight", o->hosts, o->url,
		o->backfill_ns ? "backfill" : "",
		o->backfill_ns && end > start_wall ? " then " : "", end > start_wall ? "live" : "",
		o->batch, o->concurrency);

	next_progress = start_mono + o->progress_ns;
	last_progress = start_mono;
	for (;;) {
		int64_t now_wall = sh_now_wall_ns(), now_mono = sh_now_mono_ns();
		int wait_ms;

		if (*stop && !r.gen_stopped) {
			r.gen_stopped = true;
			drain_deadline = now_mono + o->drain_ns;
			sh_info("stopping: generating nothing more, waiting up to %.0fs for acks",
				(double)o->drain_ns / 1e9);
		}
		if (*stop >= 2 || (r.gen_stopped && now_mono >= drain_deadline)) {
			sh_warn("stopped with %d requests in flight", fsim_wire_inflight(r.w));
			break;
		}
		if (r.ctl) {
			fsim_ctl_step(r.ctl, now_wall);
			run_captures(&r, now_wall);
		}
		dispatch(&r, now_wall, now_mono);
		if (r.fatal)
			break;
		if (fsim_wire_inflight(r.w) == 0 && all_done(&r))
			break;
		if (o->progress_ns && now_mono >= next_progress) {
			progress(&r, now_mono - start_mono, acked_at_progress,
				 now_mono - last_progress, from, fsim_gen_end(r.g));
			acked_at_progress = r.acked;
			last_progress = now_mono;
			next_progress = now_mono + o->progress_ns;
		}
		/* completions wake us at once; live hosts have messages
		 * coming due by the clock, so look again soon */
		wait_ms = end > start_wall ? 50 : 200;
		if (r.ctl) {
			int64_t due = fsim_ctl_next_due(r.ctl);

			if (due != INT64_MAX && due - now_wall < (int64_t)wait_ms * SH_NS_PER_MS)
				wait_ms = due <= now_wall
						  ? 0
						  : (int)((due - now_wall) / SH_NS_PER_MS) + 1;
		}
		fsim_wire_poll(r.w, wait_ms, done_cb, &r);
	}
	/* the requests still in flight are dropped unreported: their messages
	 * count as not acknowledged; polls are cut off first (they wake w) */
	if (r.ctl)
		fsim_ctl_stop(r.ctl);
	fsim_wire_free(r.w);
	r.w = NULL;
	max_cursor = from;
	for (uint32_t i = 0; i < r.f->n_hosts; i++)
		if (r.f->hosts[i].cursor_ns > max_cursor)
			max_cursor = r.f->hosts[i].cursor_ns;
	{
		double secs = (double)(sh_now_mono_ns() - start_mono) / 1e9;
		double host_hours = (double)(max_cursor - from) / 3600e9 * r.f->n_hosts;
		const struct fsim_gen_stats *gs = fsim_gen_stats(r.g);
		struct fsim_truth_run tr = {
			.seed = o->seed,
			.from_ns = from,
			.to_ns = max_cursor,
			.interval_ns =
				max_cursor > start_wall ? o->interval_ns : o->backfill_interval_ns,
			.scenario = o->sc->path,
		};

		totals(&r, secs, host_hours);
		rv = fsim_truth_close(truth, r.f, &tr);
		truth = NULL;
		if (r.fatal)
			status = r.fatal;
		else
			status = (rv == 0 && r.rejected == 0 &&
				  r.acked == gs->summaries + gs->events + r.chunks)
					 ? 0
					 : 1;
	}
	rv = status;
cleanup:
	fsim_truth_discard(truth);
	fsim_ctl_free(r.ctl);
	fsim_wire_free(r.w);
	fsim_gen_free(r.g);
	fsim_fleet_free(r.f);
	free(r.sent_mono);
	return rv;
}
