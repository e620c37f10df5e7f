/* dropexec.c -- the "exec helper" way to start a vassal under another user,
 * measured against emperor --tyrant by bench/tyrant.sh.
 *
 * Run as root with DROP_UID, DROP_GID and DROP_EXEC in its environment, it
 * sets the supplementary groups the way initgroups does (getgrouplist of the
 * uid's passwd entry, none without one), then the gid, then the uid, and
 * execs DROP_EXEC with its own argv: one exec more per spawn than dropping
 * privileges in the spawned child itself.
 */
#define _GNU_SOURCE
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

int main(int argc, char **argv) {
	(void) argc;
	const char *u = getenv("DROP_UID"), *g = getenv("DROP_GID"), *exe = getenv("DROP_EXEC");
	if (!u || !g || !exe) { fprintf(stderr, "dropexec: DROP_UID, DROP_GID and DROP_EXEC are needed\n"); return 126; }
	uid_t uid = (uid_t) strtoul(u, NULL, 10);
	gid_t gid = (gid_t) strtoul(g, NULL, 10);
	gid_t groups[256];
	int n = 0;
	struct passwd *pw = getpwuid(uid);
	if (pw) {
		n = 256;
		if (getgrouplist(pw->pw_name, gid, groups, &n) < 0) n = 0;
	}
	if (setgroups((size_t) n, groups) || setgid(gid) || setuid(uid)) { perror("dropexec"); return 126; }
	execv(exe, argv);
	perror("dropexec: exec");
	return 127;
}
