/* log.h: leveled logging to stderr, shared by every spikehound binary. */
#ifndef SH_LOG_H
#define SH_LOG_H

enum sh_log_level { SH_LOG_ERROR = 0, SH_LOG_WARN, SH_LOG_INFO, SH_LOG_DEBUG };

/* sh_log_level_current is the level below which sh_log* do nothing. */
extern int sh_log_level_current;

/* sh_log_set_level sets the level from a name ("error", "warn", "info",
 * "debug"); returns 0 or -EINVAL. */
int sh_log_set_level(const char *name);

/* sh_log_set_prog sets the program name printed in front of each line
 * (borrowed: must outlive logging). */
void sh_log_set_prog(const char *prog);

/* sh_log_write prints one line; use the macros, which do not evaluate their
 * arguments when the level is off. */
void sh_log_write(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sh_log(level, ...)                                                    \
	do {                                                                  \
		if ((level) <= sh_log_level_current)                          \
			sh_log_write((level), __VA_ARGS__);                   \
	} while (0)
#define sh_err(...) sh_log(SH_LOG_ERROR, __VA_ARGS__)
#define sh_warn(...) sh_log(SH_LOG_WARN, __VA_ARGS__)
#define sh_info(...) sh_log(SH_LOG_INFO, __VA_ARGS__)
#define sh_debug(...) sh_log(SH_LOG_DEBUG, __VA_ARGS__)

#endif
