/*
 * ctl_token: the token file of platformctl. See ctl_token.h.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "ctl_token.h"
#include "platform/xalloc.h"

#define PROG		"platformctl"
#define SUBDIR		"platform"
#define FILE_NAME	"token.json"
#define LOCK_NAME	"token.lock"

void
ctl_wipe_free(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

void
ctl_token_clear(struct ctl_token *t)
{
	ctl_wipe_free(t->access_token);
	ctl_wipe_free(t->refresh_token);
	free(t->account);
	free(t->auth);
	memset(t, 0, sizeof(*t));
}

/* $XDG_CONFIG_HOME, else ~/.config, malloc'd; NULL after a message. */
static char *
config_home(void)
{
	const char *x = getenv("XDG_CONFIG_HOME"), *home;
	struct passwd *pw;
	char *p;

	/* The XDG spec: a relative path is invalid and to be ignored. */
	if (x != NULL && x[0] == '/')
		return xstrdup(x);
	home = getenv("HOME");
	if ((home == NULL || home[0] == '\0') &&
	    (pw = getpwuid(getuid())) != NULL)
		home = pw->pw_dir;
	if (home == NULL || home[0] == '\0') {
		fprintf(stderr, PROG ": no $XDG_CONFIG_HOME and no home "
		    "folder to keep the login in\n");
		return NULL;
	}
	if (asprintf(&p, "%s/.config", home) < 0)
		abort();
	return p;
}

/* The folder of the file, malloc'd; NULL after a message. */
static char *
token_dir(void)
{
	char *home = config_home(), *d;

	if (home == NULL)
		return NULL;
	if (asprintf(&d, "%s/" SUBDIR, home) < 0)
		abort();
	free(home);
	return d;
}

static char *
in_dir(const char *name)
{
	char *d = token_dir(), *p;

	if (d == NULL)
		return NULL;
	if (asprintf(&p, "%s/%s", d, name) < 0)
		abort();
	free(d);
	return p;
}

char *
ctl_token_path(void)
{
	return in_dir(FILE_NAME);
}

/* Makes the folder (and the config home) 0700 when missing, and takes
 * group and other access away from an existing platform folder: it
 * holds credentials. 0, or -1 after a message. */
static int
make_dir(char **dir)
{
	char *home;
	struct stat st;

	if ((home = config_home()) == NULL)
		return -1;
	if (mkdir(home, 0700) != 0 && errno != EEXIST) {
		fprintf(stderr, PROG ": cannot make %s: %s\n", home,
		    strerror(errno));
		free(home);
		return -1;
	}
	free(home);
	if ((*dir = token_dir()) == NULL)
		return -1;
	if (mkdir(*dir, 0700) != 0 && errno != EEXIST)
		goto fail;
	if (stat(*dir, &st) != 0)
		goto fail;
	if ((st.st_mode & 077) != 0 && chmod(*dir, st.st_mode & 0700) != 0)
		goto fail;
	return 0;
fail:
	fprintf(stderr, PROG ": cannot make %s: %s\n", *dir, strerror(errno));
	free(*dir);
	*dir = NULL;
	return -1;
}

static char *
str_of(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	if (!json_is_string(v) || json_string_length(v) == 0)
		return NULL;
	return xstrdup(json_string_value(v));
}

/* jansson keeps its own copies of the strings: wipe them before they
 * go back to the allocator. */
static void
wipe_json(json_t *o)
{
	const char *k;
	json_t *v;

	json_object_foreach(o, k, v)
		if (json_is_string(v))
			explicit_bzero((char *)json_string_value(v),
			    json_string_length(v));
	json_decref(o);
}

int
ctl_token_load(struct ctl_token *t)
{
	char *path = ctl_token_path();
	json_error_t je;
	json_t *o, *exp;
	FILE *f;

	memset(t, 0, sizeof(*t));
	if (path == NULL)
		return -1;
	if ((f = fopen(path, "r")) == NULL) {
		if (errno == ENOENT) {
			free(path);
			return 1;
		}
		fprintf(stderr, PROG ": cannot read %s: %s\n", path,
		    strerror(errno));
		free(path);
		return -1;
	}
	o = json_loadf(f, 0, &je);
	fclose(f);
	if (!json_is_object(o)) {
		fprintf(stderr, PROG ": %s is not a token file (log in "
		    "again)\n", path);
		json_decref(o);
		free(path);
		return -1;
	}
	t->access_token = str_of(o, "access_token");
	t->refresh_token = str_of(o, "refresh_token");
	t->account = str_of(o, "account");
	t->auth = str_of(o, "auth");
	exp = json_object_get(o, "expires_at");
	t->expires_at = json_is_integer(exp) ? json_integer_value(exp) : 0;
	wipe_json(o);
	if (t->access_token == NULL || t->account == NULL) {
		fprintf(stderr, PROG ": %s holds no access token (log in "
		    "again)\n", path);
		ctl_token_clear(t);
		free(path);
		return -1;
	}
	free(path);
	return 0;
}

static int
write_all(int fd, const char *s, size_t n)
{
	ssize_t w;

	while (n > 0) {
		if ((w = write(fd, s, n)) < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		s += w;
		n -= (size_t)w;
	}
	return 0;
}

int
ctl_token_save(const struct ctl_token *t)
{
	char *dir = NULL, *tmp = NULL, *path = NULL, *text;
	json_t *o;
	int fd = -1, rc = -1;

	if (make_dir(&dir) != 0)
		return -1;
	o = json_pack("{s:s, s:I, s:s}", "access_token", t->access_token,
	    "expires_at", (json_int_t)t->expires_at, "account", t->account);
	if (o == NULL)
		abort();
	if (t->refresh_token != NULL)
		json_object_set_new(o, "refresh_token",
		    json_string(t->refresh_token));
	if (t->auth != NULL)
		json_object_set_new(o, "auth", json_string(t->auth));
	text = json_dumps(o, JSON_INDENT(2) | JSON_SORT_KEYS);
	wipe_json(o);
	if (text == NULL)
		abort();
	if (asprintf(&tmp, "%s/." FILE_NAME ".XXXXXX", dir) < 0 ||
	    asprintf(&path, "%s/" FILE_NAME, dir) < 0)
		abort();
	/* mkstemp makes the file 0600 whatever the umask. */
	if ((fd = mkstemp(tmp)) < 0)
		goto fail;
	if (fchmod(fd, 0600) != 0 || write_all(fd, text, strlen(text)) != 0 ||
	    write_all(fd, "\n", 1) != 0 || fsync(fd) != 0)
		goto fail;
	if (close(fd) != 0) {
		fd = -1;
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) != 0)
		goto fail;
	rc = 0;
	goto out;
fail:
	fprintf(stderr, PROG ": cannot write %s: %s\n", path, strerror(errno));
	if (fd >= 0)
		close(fd);
	unlink(tmp);
out:
	ctl_wipe_free(text);
	free(tmp);
	free(path);
	free(dir);
	return rc;
}

int
ctl_token_remove(void)
{
	char *path = ctl_token_path();

	if (path == NULL)
		return -1;
	if (unlink(path) != 0 && errno != ENOENT) {
		fprintf(stderr, PROG ": cannot delete %s: %s\n", path,
		    strerror(errno));
		free(path);
		return -1;
	}
	free(path);
	return 0;
}

int
ctl_token_lock(void)
{
	char *dir = NULL, *p;
	int fd;

	if (make_dir(&dir) != 0)
		return -1;
	if (asprintf(&p, "%s/" LOCK_NAME, dir) < 0)
		abort();
	free(dir);
	fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	free(p);
	if (fd < 0)
		return -1;
	while (flock(fd, LOCK_EX) != 0)
		if (errno != EINTR) {
			close(fd);
			return -1;
		}
	return fd;
}

void
ctl_token_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}
