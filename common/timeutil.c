/* timeutil.c: clocks and user-facing time/duration parsing. */
#include "timeutil.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int64_t sh_now_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * SH_NS_PER_SEC + ts.tv_nsec;
}

int64_t sh_now_mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * SH_NS_PER_SEC + ts.tv_nsec;
}

int sh_parse_duration(const char *s, int64_t *ns)
{
	static const struct {
		const char *unit;
		double mult;
	} units[] = {
		{ "ns", 1 },	      { "us", 1e3 },	   { "ms", 1e6 },
		{ "s", 1e9 },	      { "m", 60e9 },	   { "min", 60e9 },
		{ "h", 3600e9 },      { "d", 86400e9 },	   { "", 1e9 },
	};
	char *end;
	double v;

	if (!s || !*s)
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || !isfinite(v))
		return -EINVAL;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) == 0) {
			double r = v * units[i].mult;

			if (fabs(r) > 9.2e18)
				return -EINVAL;
			*ns = (int64_t)llround(r);
			return 0;
		}
	}
	return -EINVAL;
}

static int parse_iso(const char *s, int64_t *ns)
{
	struct tm tm = { 0 };
	int64_t frac = 0, offset = 0;
	const char *p;
	time_t secs;

	p = strptime(s, "%Y-%m-%d", &tm);
	if (!p)
		return -EINVAL;
	if (*p == 'T' || *p == ' ') {
		p = strptime(p + 1, "%H:%M", &tm);
		if (!p)
			return -EINVAL;
		if (*p == ':') {
			p = strptime(p + 1, "%S", &tm);
			if (!p)
				return -EINVAL;
		}
		if (*p == '.' || *p == ',') {
			int64_t scale = 100000000;

			p++;
			if (!isdigit((unsigned char)*p))
				return -EINVAL;
			while (isdigit((unsigned char)*p)) {
				frac += (*p - '0') * scale;
				scale /= 10;
				p++;
			}
		}
	}
	if (*p == 'Z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1, hh, mm = 0, n = 0;

		if (sscanf(p + 1, "%2d:%2d%n", &hh, &mm, &n) < 2 &&
		    sscanf(p + 1, "%2d%2d%n", &hh, &mm, &n) < 2 &&
		    sscanf(p + 1, "%2d%n", &hh, &n) < 1)
			return -EINVAL;
		if (n == 0)
			n = 2;
		offset = sign * ((int64_t)hh * 3600 + mm * 60);
		p += 1 + n;
	}
	if (*p)
		return -EINVAL;
	secs = timegm(&tm);
	if (secs == (time_t)-1)
		return -EINVAL;
	*ns = ((int64_t)secs - offset) * SH_NS_PER_SEC + frac;
	return 0;
}

int sh_parse_time(const char *s, int64_t now_ns, int64_t *ns)
{
	int64_t d;
	char *end;
	double v;

	if (!s || !*s)
		return -EINVAL;
	if (strcmp(s, "now") == 0) {
		*ns = now_ns;
		return 0;
	}
	if ((s[0] == '-' || s[0] == '+') && sh_parse_duration(s + 1, &d) == 0) {
		*ns = s[0] == '-' ? now_ns - d : now_ns + d;
		return 0;
	}
	if (s[0] == '@')
		s++;
	if (strchr(s, '-') == NULL && strchr(s, ':') == NULL) {
		errno = 0;
		v = strtod(s, &end);
		if (errno || end == s || *end || v < 0 || v > 9.2e9)
			return -EINVAL;
		*ns = (int64_t)llround(v * 1e9);
		return 0;
	}
	return parse_iso(s, ns);
}

char *sh_format_time(int64_t ns, char *buf, size_t len)
{
	time_t secs = (time_t)(ns / SH_NS_PER_SEC);
	int64_t ms = (ns % SH_NS_PER_SEC) / SH_NS_PER_MS;
	struct tm tm;

	if (ns < 0) {
		secs -= 1;
		ms += 1000;
	}
	gmtime_r(&secs, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
		 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)ms);
	return buf;
}
