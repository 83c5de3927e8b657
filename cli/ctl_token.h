/*
 * ctl_token: platformctl's stored login, the token file.
 *
 * $XDG_CONFIG_HOME/platform/token.json (default ~/.config/platform/),
 * the folder 0700 and the file 0600, one JSON object:
 *   {"access_token", "refresh_token" (users only), "expires_at" (Unix
 *    seconds), "account", "auth" (the auth-srv address given at login)}
 * It is replaced atomically (a temporary file in the same folder, then
 * rename), so a reader sees the old pair or the new one, never half.
 * No client secret or password is ever stored.
 */
#ifndef CTL_TOKEN_H
#define CTL_TOKEN_H

#include <stdint.h>

struct ctl_token {
	char *access_token;
	char *refresh_token;		/* NULL: none (a service login) */
	int64_t expires_at;		/* Unix seconds */
	char *account;
	char *auth;			/* NULL: auth-srv through discovery */
};

/* The file's path, malloc'd; NULL after a message when there is neither
 * $XDG_CONFIG_HOME nor a home folder. */
char *ctl_token_path(void);

/* Reads the file into t: 0, 1 when there is no file (t is empty), or -1
 * after a message (unreadable or not a token file). */
int ctl_token_load(struct ctl_token *t);

/* Writes t (folders made as needed): 0, or -1 after a message. */
int ctl_token_save(const struct ctl_token *t);

/* Deletes the file: 0 (also when there was none), or -1 after a
 * message. */
int ctl_token_remove(void);

/* An exclusive lock beside the file, held while a refresh token is
 * spent so that two platformctl at once do not both spend it (the
 * second use would revoke the whole family). A descriptor for
 * ctl_token_unlock, or -1 when it cannot be had (then go on unlocked). */
int ctl_token_lock(void);
void ctl_token_unlock(int fd);

/* Wipes the tokens and frees every field; t is empty again. */
void ctl_token_clear(struct ctl_token *t);

/* A malloc'd copy of s wiped first: for strings that hold secrets. */
void ctl_wipe_free(char *s);

#endif
