/* timeutil.h: clocks, and parsing/printing of times and durations the way
 * users type them ("30s", "-60s", "now", "2026-11-22T10:21:07Z"). */
#ifndef SH_TIMEUTIL_H
#define SH_TIMEUTIL_H

#include <stddef.h>
#include <stdint.h>

#define SH_NS_PER_SEC 1000000000LL
#define SH_NS_PER_MS 1000000LL

/* sh_now_wall_ns returns CLOCK_REALTIME in ns. */
int64_t sh_now_wall_ns(void);

/* sh_now_mono_ns returns CLOCK_MONOTONIC in ns (BPF's bpf_ktime_get_ns). */
int64_t sh_now_mono_ns(void);

/* sh_parse_duration parses "250ms", "30s", "5m", "2h", "1d", "1500us",
 * "10ns" or a bare number of seconds ("1.5") into *ns. Returns 0 or
 * -EINVAL. A leading '-' is accepted. */
int sh_parse_duration(const char *s, int64_t *ns);

/* sh_parse_time parses an absolute or relative time into wall-clock ns:
 * "now"; a duration relative to now ("-60s", "-5m"); ISO 8601
 * "2026-11-22T10:21:07[.123][Z|+02:00]" or with a space instead of 'T'
 * (no zone: UTC); "@1763806867" or a bare number of Unix seconds (with an
 * optional fraction). Returns 0 or -EINVAL. */
int sh_parse_time(const char *s, int64_t now_ns, int64_t *ns);

/* sh_format_time writes ns as "2026-11-22T10:21:07.123Z" into buf (at least
 * 32 bytes); returns buf. */
char *sh_format_time(int64_t ns, char *buf, size_t len);

#endif
