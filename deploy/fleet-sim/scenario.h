/* scenario.h: the fleet simulator's scenario file (INI): the [fleet]
 * section (size, kernel/label mixes, noise, clock skew) and one section
 * per injected cause. The format is documented in tests/fleet/README.md. */
#ifndef FSIM_SCENARIO_H
#define FSIM_SCENARIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Spike kinds, as the real detectors name them (fleet-spec.md). */
enum fsim_kind {
	FSIM_K_MMAP_LOCK,
	FSIM_K_SYSCALL,
	FSIM_K_RUNQ,
	FSIM_K_RECLAIM,
	FSIM_K_SOFTIRQ,
	FSIM_K_CPU_STALL,
	FSIM_K_ACCOUNTING,
	FSIM_K_PROBE,
	FSIM_NKINDS
};

/* fsim_kind_names are the kinds' wire names, by enum fsim_kind. */
extern const char *const fsim_kind_names[FSIM_NKINDS];

/* fsim_kind_parse returns the enum fsim_kind named name, or -1. */
int fsim_kind_parse(const char *name);

/* struct fsim_wlist is a weighted list ("a:3, b:1"; a bare name weighs 1). */
struct fsim_wlist {
	char **names;
	double *weights;
	uint32_t n;
	double total;
};

enum fsim_cause_type {
	FSIM_PERIODIC,	 /* hosts running a process spike every period */
	FSIM_BURST,	 /* a labelled group spikes together at random times */
	FSIM_RATE,	 /* selected hosts spike at a rate, at random times */
	FSIM_DECOY,	 /* a process that is not a cause */
	FSIM_REGRESSION, /* a kernel's hosts: slower histograms, more spikes */
};

/* fsim_cause_type_names are the "type =" values, by enum fsim_cause_type. */
extern const char *const fsim_cause_type_names[];

enum fsim_count_mode { FSIM_COUNT_ALL, FSIM_COUNT_N, FSIM_COUNT_PCT };

/* struct fsim_cause is one cause (or decoy) section. Strings are owned by
 * the scenario. */
struct fsim_cause {
	char *name; /* the section name: the truth's cause and incident id */
	int line;   /* the section header's line */
	enum fsim_cause_type type;
	int kind;	     /* enum fsim_kind; -1 for a decoy without kind */
	char *detail;	     /* SpikeEvent.detail, NULL: the kind's usual */
	int64_t duration_ns; /* median spike duration (lognormal) */
	double duration_sigma;
	double evidence; /* probability the culprit is the cause's process */
	char *victim;	 /* comm of the victim process, NULL: the host's main one */
	char *feature;	 /* the ground-truth feature string (resolved) */

	/* the process of a periodic cause or decoy */
	char *comm, *cmdline, *exe;
	enum fsim_count_mode hosts_mode;
	double hosts_value;
	double spiking; /* share of the process's hosts that spike */
	int64_t period_ns, jitter_ns;
	bool phase_aligned;  /* occurrences on the host clock's period grid */
	int64_t lifetime_ns; /* 0: a daemon; else each occurrence runs this long */
	int64_t offset_ns;   /* spike within this much after an occurrence starts */

	/* host selection (burst, rate, regression; optional for periodic) */
	char *sel_kernel, *sel_label_key, *sel_label_value, *sel_process;

	double rate;	   /* burst: firings per hour; rate: events per host-hour */
	double fraction;   /* burst: share of the group per firing; rate: of the selected hosts */
	int64_t spread_ns; /* burst: +- true-time spread of one firing */
	char *with;	   /* decoy: also on every spiking host of this cause */
	int with_cause;	   /* resolved index of with, or -1 */

	double factor;		     /* regression: histogram latency multiplier */
	double rate_factor;	     /* regression: spike rate multiplier */
	bool hist_kind[FSIM_NKINDS]; /* regression: histograms that shift */
};

/* struct fsim_scenario is a parsed scenario file (or the defaults). */
struct fsim_scenario {
	char *path; /* NULL: built-in defaults */
	uint32_t hosts;
	int64_t interval_ns;
	struct fsim_wlist kernels, clusters, racks, roles, noise_kinds;
	double noise_rate;	 /* baseline spikes per host-hour, all kinds */
	int64_t skew_ns;	 /* most hosts: clock skew uniform in +-skew */
	double skew_outliers;	 /* share of hosts with a skew of seconds */
	int64_t skew_outlier_ns; /* their skew: uniform in +-[1 s, this] */
	struct fsim_cause *causes;
	size_t n_causes;
};

/* fsim_scenario_defaults fills sc with the built-in fleet and no causes.
 * Returns 0 or -ENOMEM. */
int fsim_scenario_defaults(struct fsim_scenario *sc);

/* fsim_scenario_load parses path into sc (which it initializes). On error
 * returns a negative errno and writes "path:line: message" into err. */
int fsim_scenario_load(struct fsim_scenario *sc, const char *path, char *err, size_t errlen);

/* fsim_scenario_fini frees what sc owns. */
void fsim_scenario_fini(struct fsim_scenario *sc);

/* fsim_normalize_cmdline writes cmdline normalized as the correlator's
 * cmdline: feature wants it (digit runs -> '#', whitespace collapsed, cut
 * at 120 bytes) into out (at least 121 bytes). */
void fsim_normalize_cmdline(const char *cmdline, char *out, size_t len);

#endif
