/* detect.c: the registry of spike detectors. The build lists every
 * node-agent/det_<name>.c in detectors.inc (SH_DETECTOR(name) lines, made
 * by node-agent/CMakeLists.txt); a detector is started when the config
 * enables it, and skipped with a logged reason when it cannot run here. */
#include "detect.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "log.h"

#define TRACEFS_MAGIC_ 0x74726163

#define SH_DETECTOR(name) extern const struct agent_detector_ops det_##name##_ops;
#include "detectors.inc"
#undef SH_DETECTOR

#define MAX_DETECTORS 16

struct running {
	const struct agent_detector_ops *ops;
	void *state;
};

struct agent_detectors {
	struct running run[MAX_DETECTORS];
	size_t n;
};

bool agent_detector_enabled(const struct agent_config *cfg, const char *name)
{
	const char *p = cfg->detectors;
	size_t len = strlen(name);

	if (strcmp(p, "all") == 0)
		return true;
	while (*p) {
		const char *end = strchr(p, ',');
		size_t n = end ? (size_t)(end - p) : strlen(p);

		while (n && *p == ' ') {
			p++;
			n--;
		}
		while (n && p[n - 1] == ' ')
			n--;
		if (n == len && strncmp(p, name, len) == 0)
			return true;
		if (!end)
			break;
		p = end + 1;
	}
	return false;
}

int agent_tracefs_ensure(void)
{
	struct statfs sf;

	if (statfs("/sys/kernel/tracing", &sf) == 0 && (unsigned)sf.f_type == TRACEFS_MAGIC_)
		return 0;
	if (mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, NULL) != 0 && errno != EBUSY) {
		int err = -errno;

		sh_warn("could not mount tracefs on /sys/kernel/tracing: %s", strerror(errno));
		return err;
	}
	sh_info("mounted tracefs on /sys/kernel/tracing (per-syscall tracepoints need it)");
	return 0;
}

int agent_detectors_start(const struct agent_det_ctx *ctx, struct agent_detectors **out)
{
	const struct agent_detector_ops *all[] = {
#define SH_DETECTOR(name) &det_##name##_ops,
#include "detectors.inc"
#undef SH_DETECTOR
		NULL,
	};
	struct agent_detectors *d = calloc(1, sizeof(*d));

	if (!d)
		return -ENOMEM;
	for (size_t i = 0; all[i]; i++) {
		const struct agent_detector_ops *ops = all[i];
		void *state = NULL;
		int rv;

		if (!ops || !agent_detector_enabled(ctx->cfg, ops->name))
			continue;
		rv = ops->start(ctx, &state);
		if (rv == -ENODATA) {
			sh_info("detector \"%s\" has nothing to watch (not configured)", ops->name);
			continue;
		}
		if (rv != 0) {
			sh_warn("detector \"%s\" not running: %s", ops->name, strerror(-rv));
			continue;
		}
		d->run[d->n].ops = ops;
		d->run[d->n].state = state;
		d->n++;
	}
	*out = d;
	return 0;
}

size_t agent_detectors_fds(struct agent_detectors *d, int *fds, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; d && i < d->n && n < max; i++) {
		int fd = d->run[i].ops->fd ? d->run[i].ops->fd(d->run[i].state) : -1;

		if (fd >= 0)
			fds[n++] = fd;
	}
	return n;
}

void agent_detectors_poll(struct agent_detectors *d)
{
	for (size_t i = 0; d && i < d->n; i++)
		if (d->run[i].ops->poll)
			d->run[i].ops->poll(d->run[i].state);
}

void agent_detectors_tick(struct agent_detectors *d, int64_t wall_ns)
{
	for (size_t i = 0; d && i < d->n; i++)
		if (d->run[i].ops->tick)
			d->run[i].ops->tick(d->run[i].state, wall_ns);
}

size_t agent_detectors_running(const struct agent_detectors *d, char *buf, size_t len)
{
	size_t off = 0;

	if (len)
		buf[0] = '\0';
	for (size_t i = 0; d && i < d->n; i++) {
		int n = snprintf(buf + off, len > off ? len - off : 0, "%s%s", i ? "," : "",
				 d->run[i].ops->name);

		if (n > 0)
			off += (size_t)n;
	}
	return d ? d->n : 0;
}

void *agent_detectors_state(const struct agent_detectors *d, const char *name)
{
	for (size_t i = 0; d && i < d->n; i++)
		if (strcmp(d->run[i].ops->name, name) == 0)
			return d->run[i].state;
	return NULL;
}

void agent_detectors_stop(struct agent_detectors *d)
{
	if (!d)
		return;
	for (size_t i = 0; i < d->n; i++)
		if (d->run[i].ops->stop)
			d->run[i].ops->stop(d->run[i].state);
	free(d);
}
