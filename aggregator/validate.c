/* validate.c: acceptance checks for decoded agent requests. Everything an
 * agent sends is untrusted: a buggy or hostile agent gets a counted
 * rejection and the well-behaved ones keep being served. */
#include "validate.h"

#include "capture.h"

#include <ctype.h>
#include <string.h>

#define NS_S 1000000000LL

void agg_limits_default(struct agg_limits *l)
{
	l->max_future_ns = 3600 * NS_S;
	l->max_age_ns = 30LL * 86400 * NS_S;
	l->max_string = 4096;
	l->max_cmdline = 8192;
	l->max_items = 100000;
	l->max_messages = 1000;
	l->max_duration_ns = 3600 * NS_S;
}

int agg_is_uuid(const char *s)
{
	size_t n = 0;

	if (!s)
		return 0;
	for (const char *p = s; *p; p++) {
		if (*p == '-') {
			size_t pos = (size_t)(p - s);

			if (pos != 8 && pos != 13 && pos != 18 && pos != 23)
				return 0;
			continue;
		}
		if (!isxdigit((unsigned char)*p))
			return 0;
		n++;
	}
	return n == 32 && (strlen(s) == 32 || strlen(s) == 36);
}

size_t agg_sanitize_utf8(char *s)
{
	unsigned char *p = (unsigned char *)s;
	size_t bad = 0;

	if (!s)
		return 0;
	while (*p) {
		int need;
		unsigned cp;

		if (*p < 0x80) {
			p++;
			continue;
		}
		if ((*p & 0xE0) == 0xC0) {
			need = 1;
			cp = *p & 0x1F;
		} else if ((*p & 0xF0) == 0xE0) {
			need = 2;
			cp = *p & 0x0F;
		} else if ((*p & 0xF8) == 0xF0) {
			need = 3;
			cp = *p & 0x07;
		} else {
			*p++ = '?';
			bad++;
			continue;
		}
		int ok = 1;

		for (int i = 1; i <= need; i++) {
			if ((p[i] & 0xC0) != 0x80) {
				ok = 0;
				break;
			}
			cp = (cp << 6) | (p[i] & 0x3F);
		}
		/* overlong forms, surrogates, beyond U+10FFFF */
		if (ok && ((need == 1 && cp < 0x80) || (need == 2 && cp < 0x800) ||
			   (need == 3 && cp < 0x10000) || cp > 0x10FFFF ||
			   (cp >= 0xD800 && cp <= 0xDFFF)))
			ok = 0;
		if (!ok) {
			*p++ = '?';
			bad++;
			continue;
		}
		p += need + 1;
	}
	return bad;
}

/* str_ok sanitizes s and checks its length. */
static int str_ok(char *s, size_t max)
{
	if (!s)
		return 1;
	if (strlen(s) > max)
		return 0;
	agg_sanitize_utf8(s);
	return 1;
}

static int time_ok(int64_t t, int64_t now, const struct agg_limits *l)
{
	return t > 0 && t <= now + l->max_future_ns && t >= now - l->max_age_ns;
}

static const char *check_time(int64_t t, int64_t now, const struct agg_limits *l)
{
	if (t <= 0)
		return "bad_time";
	if (t > now + l->max_future_ns)
		return "time_in_future";
	if (t < now - l->max_age_ns)
		return "time_too_old";
	return NULL;
}

static const char *check_process(Spikehound__Process *p, const struct agg_limits *l,
				 int64_t now)
{
	if (!p)
		return "malformed";
	if (p->pid <= 0 || p->ppid < 0)
		return "bad_pid";
	if (!str_ok(p->comm, 64) || !str_ok(p->exe, l->max_string) ||
	    !str_ok(p->cmdline, l->max_cmdline) || !str_ok(p->cgroup, l->max_string))
		return "string_too_long";
	if (p->start_time_ns <= 0 || p->start_time_ns > now + l->max_future_ns)
		return "bad_time";
	if (p->exit_time_ns && (p->exit_time_ns < p->start_time_ns ||
				p->exit_time_ns > now + l->max_future_ns))
		return "bad_time";
	return NULL;
}

static const char *check_processes(Spikehound__Process **ps, size_t n,
				   const struct agg_limits *l, int64_t now)
{
	const char *r;

	if (n > l->max_items)
		return "too_many_items";
	for (size_t i = 0; i < n; i++)
		if ((r = check_process(ps[i], l, now)) != NULL)
			return r;
	return NULL;
}

static const char *check_task(Spikehound__Task *t, const struct agg_limits *l)
{
	if (!t)
		return NULL;
	if (!str_ok(t->comm, 64) || !str_ok(t->cgroup, l->max_string) || !str_ok(t->role, 64))
		return "string_too_long";
	if (t->n_kernel_stack > 512 || t->n_user_stack > 512)
		return "too_many_items";
	for (size_t i = 0; i < t->n_kernel_stack; i++)
		if (!str_ok(t->kernel_stack[i], 1024))
			return "string_too_long";
	for (size_t i = 0; i < t->n_user_stack; i++)
		if (!str_ok(t->user_stack[i], 1024))
			return "string_too_long";
	return NULL;
}

static const char *check_stacks(Spikehound__FoldedStack **s, size_t n, const struct agg_limits *l)
{
	if (n > l->max_items)
		return "too_many_items";
	for (size_t i = 0; i < n; i++) {
		if (!s[i])
			return "malformed";
		if (!str_ok(s[i]->stack, 65536))
			return "string_too_long";
	}
	return NULL;
}

static const char *check_summary(Spikehound__Summary *s, int64_t now, const struct agg_limits *l)
{
	const char *r;

	if ((r = check_time(s->start_ns, now, l)) || (r = check_time(s->end_ns, now, l)))
		return r;
	if (s->end_ns < s->start_ns)
		return "negative_duration";
	if (s->end_ns - s->start_ns > l->max_duration_ns)
		return "interval_too_long";
	if (s->n_metrics > 3600 || s->n_histograms > 256)
		return "too_many_items";
	for (size_t i = 0; i < s->n_metrics; i++) {
		int64_t t = s->metrics[i] ? s->metrics[i]->time_ns : 0;

		if (!s->metrics[i])
			return "malformed";
		if (t < s->start_ns - 2 * NS_S || t > s->end_ns + 2 * NS_S)
			return "metric_outside_interval";
	}
	if ((r = check_processes(s->started, s->n_started, l, now)) ||
	    (r = check_processes(s->exited, s->n_exited, l, now)) ||
	    (r = check_processes(s->snapshot, s->n_snapshot, l, now)))
		return r;
	for (size_t i = 0; i < s->n_exited; i++)
		if (!s->exited[i]->exit_time_ns)
			return "bad_time";
	if (s->n_proc_samples > l->max_items)
		return "too_many_items";
	for (size_t i = 0; i < s->n_proc_samples; i++)
		if (!s->proc_samples[i] || !str_ok(s->proc_samples[i]->comm, 64))
			return "string_too_long";
	if ((r = check_stacks(s->stacks, s->n_stacks, l)))
		return r;
	for (size_t i = 0; i < s->n_histograms; i++) {
		if (!s->histograms[i] || !str_ok(s->histograms[i]->kind, 64))
			return "string_too_long";
		if (s->histograms[i]->n_buckets > 1024)
			return "too_many_items";
	}
	return NULL;
}

static const char *check_event(Spikehound__SpikeEvent *e, int64_t now, const struct agg_limits *l)
{
	const char *r;

	if (!e->kind || !*e->kind)
		return "missing_kind";
	if (!str_ok(e->kind, 64) || !str_ok(e->detail, l->max_string))
		return "string_too_long";
	if ((r = check_time(e->start_ns, now, l)))
		return r;
	if (e->duration_ns < 0)
		return "negative_duration";
	if (e->duration_ns > l->max_duration_ns)
		return "duration_too_long";
	if (e->cpu < -1 || e->cpu > 65535)
		return "bad_cpu";
	if ((r = check_task(e->victim, l)))
		return r;
	if (e->n_culprits > 64 || e->n_attrs > 64)
		return "too_many_items";
	for (size_t i = 0; i < e->n_culprits; i++)
		if ((r = check_task(e->culprits[i], l)))
			return r;
	for (size_t i = 0; i < e->n_attrs; i++) {
		if (!e->attrs[i] || !str_ok(e->attrs[i]->key, 64) ||
		    !str_ok(e->attrs[i]->value, l->max_string))
			return "string_too_long";
	}
	return check_stacks(e->window_samples, e->n_window_samples, l);
}

static const char *check_hello(Spikehound__Hello *h, int64_t now, const struct agg_limits *l)
{
	if (!h)
		return "no_hello";
	if (!agg_is_uuid(h->host_id))
		return "bad_host_id";
	if (!agg_is_uuid(h->boot_id))
		return "bad_boot_id";
	if (!str_ok(h->hostname, 255) || !str_ok(h->kernel_release, 255) ||
	    !str_ok(h->kernel_version, 1024) || !str_ok(h->cpu_model, 255) ||
	    !str_ok(h->agent_version, 64))
		return "string_too_long";
	if (!h->kernel_release || !*h->kernel_release)
		return "missing_kernel_release";
	if (h->n_labels > 64)
		return "too_many_items";
	for (size_t i = 0; i < h->n_labels; i++) {
		if (!h->labels[i] || !h->labels[i]->key || !*h->labels[i]->key ||
		    !str_ok(h->labels[i]->key, 64) || !str_ok(h->labels[i]->value, 256))
			return "bad_label";
	}
	if (h->cpu_count > 65536)
		return "bad_cpu";
	if (h->boot_time_ns && !time_ok(h->boot_time_ns, now, l) &&
	    h->boot_time_ns > now + l->max_future_ns)
		return "time_in_future";
	return NULL;
}

const char *agg_validate_request(Spikehound__AgentRequest *req, int64_t now_ns,
				 const struct agg_limits *l, const char **msg_reasons)
{
	const char *r;

	if ((r = check_hello(req->hello, now_ns, l)))
		return r;
	if (req->n_messages > l->max_messages)
		return "too_many_messages";
	for (size_t i = 0; i < req->n_messages; i++) {
		Spikehound__AgentMessage *m = req->messages[i];

		r = NULL;
		if (!m)
			r = "malformed";
		else if (!m->host_id || strcasecmp(m->host_id, req->hello->host_id) != 0)
			r = "host_mismatch";
		else if (!agg_is_uuid(m->boot_id))
			r = "bad_boot_id";
		else if (m->seq == 0 || m->seq > (uint64_t)INT64_MAX)
			r = "bad_seq";
		else if ((r = check_time(m->created_ns, now_ns, l)))
			;
		else if (strcasecmp(m->boot_id, req->hello->boot_id) == 0 &&
			 req->hello->boot_time_ns &&
			 m->created_ns < req->hello->boot_time_ns - 60 * NS_S)
			r = "before_boot";
		else if (m->body_case == SPIKEHOUND__AGENT_MESSAGE__BODY_SUMMARY)
			r = check_summary(m->summary, now_ns, l);
		else if (m->body_case == SPIKEHOUND__AGENT_MESSAGE__BODY_EVENT)
			r = check_event(m->event, now_ns, l);
		else if (m->body_case == SPIKEHOUND__AGENT_MESSAGE__BODY_CHUNK)
			r = m->chunk ? agg_capture_check_chunk(m->chunk) : "malformed";
		else
			r = "empty_body";
		/* within one request, seqs of a boot must increase */
		for (size_t k = i; !r && k-- > 0;) {
			Spikehound__AgentMessage *p = req->messages[k];

			if (p && p->boot_id && strcasecmp(p->boot_id, m->boot_id) == 0) {
				if (p->seq >= m->seq)
					r = "seq_order";
				break;
			}
		}
		msg_reasons[i] = r;
	}
	return NULL;
}
