/*
 * metrics_family: a server's own counters, gauges and histograms with
 * labels, for both exporters. See platform/metrics.h.
 */
#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_internal.h"
#include "platform/log.h"
#include "platform/xalloc.h"

static int
label_name_ok(const char *s, size_t n)
{
	if (n == 0 || (!isalpha((unsigned char)s[0]) && s[0] != '_'))
		return 0;
	for (size_t i = 1; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '_')
			return 0;
	return !(n == 7 && strncmp(s, "service", 7) == 0) &&
	    !(n == 2 && strncmp(s, "le", 2) == 0) &&
	    !(n == 4 && strncmp(s, "node", 4) == 0);
}

static void
family_free(struct metrics_family *f)
{
	for (size_t i = 0; i < f->nlabels; i++)
		free(f->labels[i]);
	for (size_t i = 0; i < f->nseries; i++)
		for (size_t j = 0; j < f->nlabels; j++)
			free(f->series[i].values[j]);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

struct metrics_family *
metrics_family(struct metrics *m, enum metrics_kind kind, const char *name,
    const char *help, const char *labels)
{
	struct metrics_family *f;
	const char *p = labels != NULL ? labels : "";
	size_t n;

	if (name == NULL || !label_name_ok(name, strlen(name)) ||
	    strlen(name) >= sizeof(f->name)) {
		log_warn("metrics: malformed series name", "name",
		    name != NULL ? name : "(null)");
		return NULL;
	}
	f = xcalloc(1, sizeof(*f));
	snprintf(f->name, sizeof(f->name), "%s", name);
	snprintf(f->help, sizeof(f->help), "%s", help != NULL ? help : name);
	f->kind = kind;
	pthread_mutex_init(&f->mu, NULL);
	while (*p != '\0') {
		const char *comma = strchr(p, ',');

		n = comma != NULL ? (size_t)(comma - p) : strlen(p);
		if (f->nlabels == METRICS_LABELS_MAX || !label_name_ok(p, n)) {
			log_warn("metrics: bad or too many labels", "name",
			    name, "labels", labels);
			family_free(f);
			return NULL;
		}
		f->labels[f->nlabels] = xcalloc(1, n + 1);
		memcpy(f->labels[f->nlabels++], p, n);
		p += n + (comma != NULL);
	}
	pthread_mutex_lock(&m->mu);
	n = atomic_load(&m->nfamilies);
	if (n == METRICS_FAMILIES_MAX) {
		pthread_mutex_unlock(&m->mu);
		log_warn("metrics: no room for another family; not served",
		    "name", name);
		family_free(f);
		return NULL;
	}
	m->families[n] = f;
	f->m = m;
	atomic_store(&m->nfamilies, n + 1);
	pthread_mutex_unlock(&m->mu);
	return f;
}

void
metrics_families_free(struct metrics *m)
{
	size_t n = atomic_load(&m->nfamilies);

	for (size_t i = 0; i < n; i++)
		family_free(m->families[i]);
	atomic_store(&m->nfamilies, 0);
}

/* The series of values, made on first use. Caller holds f->mu. */
static struct metrics_series *
series_locked(struct metrics_family *f, const char *const *values)
{
	size_t i, j;

	for (i = 0; i < f->nseries; i++) {
		for (j = 0; j < f->nlabels; j++)
			if (strcmp(f->series[i].values[j],
			    values[j] != NULL ? values[j] : "") != 0)
				break;
		if (j == f->nlabels)
			return &f->series[i];
	}
	if (f->nseries == METRICS_SERIES_MAX) {
		atomic_fetch_add(&f->m->series_dropped, 1);
		return &f->series[METRICS_SERIES_MAX - 1];
	}
	for (j = 0; j < f->nlabels; j++)
		f->series[f->nseries].values[j] = xstrdup(values[j] != NULL ?
		    values[j] : "");
	return &f->series[f->nseries++];
}

static void
record(struct metrics_family *f, enum metrics_kind kind,
    const char *const *values, double v)
{
	struct metrics_series *s;

	if (f == NULL || f->kind != kind ||
	    (f->nlabels > 0 && values == NULL))
		return;
	pthread_mutex_lock(&f->mu);
	s = series_locked(f, values);
	switch (kind) {
	case METRICS_COUNTER:
		if (v > 0)
			s->value += v;
		break;
	case METRICS_GAUGE:
		s->value = v;
		break;
	case METRICS_HISTOGRAM:
		s->buckets[metrics_bucket_of((int64_t)(v * 1e6))]++;
		s->count++;
		s->sum += v;
		break;
	}
	pthread_mutex_unlock(&f->mu);
}

void
plat_counter_add(struct metrics_family *f, const char *const *values,
    double n)
{
	record(f, METRICS_COUNTER, values, n);
}

void
plat_gauge_set(struct metrics_family *f, const char *const *values, double v)
{
	record(f, METRICS_GAUGE, values, v);
}

void
plat_histogram_observe(struct metrics_family *f, const char *const *values,
    double v)
{
	record(f, METRICS_HISTOGRAM, values, v);
}

/* A label value in the exposition format: \, " and newline escaped. */
static void
write_value(FILE *out, const char *v)
{
	for (; *v != '\0'; v++)
		if (*v == '\\' || *v == '"')
			fprintf(out, "\\%c", *v);
		else if (*v == '\n')
			fputs("\\n", out);
		else
			fputc(*v, out);
}

static void
write_labels(FILE *out, const char *service, const struct metrics_family *f,
    const struct metrics_series *s, const char *le)
{
	fprintf(out, "{service=\"%s\"", service);
	for (size_t j = 0; j < f->nlabels; j++) {
		fprintf(out, ",%s=\"", f->labels[j]);
		write_value(out, s->values[j]);
		fputc('"', out);
	}
	if (le != NULL)
		fprintf(out, ",le=\"%s\"", le);
	fputc('}', out);
}

static void
write_family(FILE *out, const char *service, struct metrics_family *f)
{
	static const char *const types[] = { "counter", "gauge", "histogram" };

	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help,
	    f->name, types[f->kind]);
	pthread_mutex_lock(&f->mu);
	for (size_t i = 0; i < f->nseries; i++) {
		struct metrics_series *s = &f->series[i];
		unsigned long long cum = 0;
		char le[32];

		if (f->kind != METRICS_HISTOGRAM) {
			fputs(f->name, out);
			write_labels(out, service, f, s, NULL);
			fprintf(out, " %.17g\n", s->value);
			continue;
		}
		for (int b = 0; b <= METRICS_BUCKETS; b++) {
			cum += s->buckets[b];
			if (b < METRICS_BUCKETS)
				snprintf(le, sizeof(le), "%g",
				    (double)metrics_bucket_us[b] / 1e6);
			else
				snprintf(le, sizeof(le), "+Inf");
			fprintf(out, "%s_bucket", f->name);
			write_labels(out, service, f, s, le);
			fprintf(out, " %llu\n", cum);
		}
		fprintf(out, "%s_sum", f->name);
		write_labels(out, service, f, s, NULL);
		fprintf(out, " %.17g\n%s_count", s->sum, f->name);
		write_labels(out, service, f, s, NULL);
		fprintf(out, " %llu\n", s->count);
	}
	pthread_mutex_unlock(&f->mu);
}

void
metrics_families_write(struct metrics *m, FILE *out)
{
	size_t n = atomic_load(&m->nfamilies);

	for (size_t i = 0; i < n; i++)
		write_family(out, m->service, m->families[i]);
	fprintf(out, "# HELP platform_metrics_series_dropped Label "
	    "combinations past a family's room, folded into its last "
	    "series.\n# TYPE platform_metrics_series_dropped counter\n"
	    "platform_metrics_series_dropped{service=\"%s\"} %llu\n",
	    m->service, (unsigned long long)atomic_load(&m->series_dropped));
}

/* "label:value,..." with statsd's reserved characters replaced. */
static void
series_tags(const struct metrics_family *f, const struct metrics_series *s,
    char *out, size_t len)
{
	size_t o = 0;

	out[0] = '\0';
	for (size_t j = 0; j < f->nlabels && o + 1 < len; j++) {
		int n = snprintf(out + o, len - o, "%s%s:", j > 0 ? "," : "",
		    f->labels[j]);

		if (n < 0 || (size_t)n >= len - o)
			break;
		o += (size_t)n;
		for (const char *v = s->values[j]; *v != '\0' && o + 1 < len;
		    v++)
			out[o++] = strchr(",|#\n", *v) != NULL ? '_' : *v;
		out[o] = '\0';
	}
}

void
metrics_families_push(struct metrics *m,
    void (*line)(void *arg, const char *name, double v, const char *type,
    const char *tags), void *arg)
{
	size_t n = atomic_load(&m->nfamilies);
	char tags[300], name[128];

	for (size_t i = 0; i < n; i++) {
		struct metrics_family *f = m->families[i];

		pthread_mutex_lock(&f->mu);
		for (size_t k = 0; k < f->nseries; k++) {
			struct metrics_series *s = &f->series[k];
			unsigned long long d[METRICS_BUCKETS + 1];
			unsigned long long count = s->count - s->pushed_count;

			series_tags(f, s, tags, sizeof(tags));
			if (f->kind == METRICS_COUNTER) {
				if (s->value > s->pushed_value)
					line(arg, f->name, s->value -
					    s->pushed_value, "c", tags);
				s->pushed_value = s->value;
				continue;
			}
			if (f->kind == METRICS_GAUGE) {
				line(arg, f->name, s->value, "g", tags);
				continue;
			}
			for (int b = 0; b <= METRICS_BUCKETS; b++) {
				d[b] = s->buckets[b] - s->pushed_buckets[b];
				s->pushed_buckets[b] = s->buckets[b];
			}
			if (count > 0) {
				int b = metrics_bucket_quantile(d, count, 99);

				snprintf(name, sizeof(name), "%s.count",
				    f->name);
				line(arg, name, (double)count, "c", tags);
				snprintf(name, sizeof(name), "%s.avg", f->name);
				line(arg, name, (s->sum - s->pushed_sum) /
				    (double)count, "g", tags);
				snprintf(name, sizeof(name), "%s.p99", f->name);
				line(arg, name, (double)metrics_bucket_us[b] /
				    1e6, "g", tags);
			}
			s->pushed_count = s->count;
			s->pushed_sum = s->sum;
		}
		pthread_mutex_unlock(&f->mu);
	}
}
