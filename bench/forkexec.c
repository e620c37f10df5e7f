/* forkexec.c -- the physical floor of a spawn: one bare fork + exec of the
 * bench vassal, timed the way the emperor benchmarks time a spawn.
 *
 * usage: forkexec VASSAL MARK_DIR TRIALS [WARMUP]
 *
 * Per trial: a socketpair whose far end the vassal gets as UWSGI_EMPEROR_FD
 * (as under an emperor); t0 = CLOCK_REALTIME just before fork(); the child
 * only execs `VASSAL --ini floor.ini`. The parent blocks on the channel
 * until the vassal's first byte (sent right after it wrote its start
 * marker), reads the marker's timestamp, sends byte 0 (stop) and reaps it.
 * Prints one line per measured trial: "<marker - t0 in ns> <byte received - t0 in ns>".
 * Nothing is polled; nothing is left running (the child is reaped each trial).
 *
 * usage: forkexec VASSAL MARK_DIR --keep N [native]
 *
 * The floor of a convergence: N vassals forked and exec'd back to back and
 * kept running, as an emperor starting N configs present at start would
 * (`VASSAL --ini k<i>.ini`). With a channel each (UWSGI_EMPEROR_FD, the
 * parent keeps its end, as for uWSGI-style vassals), or with none
 * ("native": the vassal just waits). t0 = CLOCK_REALTIME before the first
 * fork; once every vassal has written its start marker, prints
 * "<last marker - t0 in ns>", then stops them all (channel closed, or
 * SIGTERM) and reaps them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* the start markers k<i>.start0 in `marks`: how many, and (when `last` is
 * not NULL) the latest time written in them */
static int keep_markers(const char *marks, long long *last) {
	DIR *d = opendir(marks);
	if (!d) return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d))) {
		size_t l = strlen(e->d_name);
		if (e->d_name[0] != 'k' || l < 8 || strcmp(e->d_name + l - 7, ".start0")) continue;
		if (!last) { n++; continue; }
		char path[4096];
		snprintf(path, sizeof path, "%s/%s", marks, e->d_name);
		FILE *f = fopen(path, "r");
		long long ts = 0;
		int vpid = 0;
		if (f && fscanf(f, "%lld %d", &ts, &vpid) == 2) {
			n++;
			if (ts > *last) *last = ts;
		}
		if (f) fclose(f);
	}
	closedir(d);
	return n;
}

static int keep(const char *vassal, const char *marks, int n, int native) {
	int *chan = calloc(n, sizeof *chan);
	pid_t *pids = calloc(n, sizeof *pids);
	if (!chan || !pids) { perror("calloc"); return 1; }
	if (native) unsetenv("UWSGI_EMPEROR_FD");
	long long t0 = now_ns();
	for (int i = 0; i < n; i++) {
		int theirs = -1;
		chan[i] = -1;
		if (!native) {
			int sv[2];
			if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) { perror("socketpair"); return 1; }
			theirs = dup(sv[1]);
			close(sv[1]);
			chan[i] = sv[0];
			char fds[16];
			snprintf(fds, sizeof fds, "%d", theirs);
			setenv("UWSGI_EMPEROR_FD", fds, 1);
		}
		char ini[32];
		snprintf(ini, sizeof ini, "k%d.ini", i);
		pids[i] = fork();
		if (pids[i] < 0) { perror("fork"); return 1; }
		if (pids[i] == 0) {
			char *args[] = { (char *) vassal, "--ini", ini, NULL };
			execv(vassal, args);
			_exit(127);
		}
		if (theirs >= 0) close(theirs);
	}
	long long last = 0;
	int seen = 0;
	for (int tries = 0; tries < 60000 && seen < n; tries++) {
		seen = keep_markers(marks, NULL);
		if (seen < n) usleep(5000);
	}
	if (seen >= n) seen = keep_markers(marks, &last);
	if (seen < n) fprintf(stderr, "only %d of %d vassals started\n", seen, n);
	else printf("%lld\n", last - t0);
	fflush(stdout);
	for (int i = 0; i < n; i++) {
		if (native) kill(pids[i], SIGTERM);
		else close(chan[i]);
	}
	for (int i = 0; i < n; i++) {
		int status;
		while (waitpid(pids[i], &status, 0) < 0 && errno == EINTR) {}
	}
	return seen < n;
}

int main(int argc, char **argv) {
	if (argc >= 5 && !strcmp(argv[3], "--keep")) {
		setenv("BENCH_MARK_DIR", argv[2], 1);
		unsetenv("BENCH_GEN");
		return keep(argv[1], argv[2], atoi(argv[4]), argc > 5 && !strcmp(argv[5], "native"));
	}
	if (argc < 4) {
		fprintf(stderr, "usage: %s VASSAL MARK_DIR TRIALS [WARMUP]\n", argv[0]);
		return 2;
	}
	const char *vassal = argv[1], *marks = argv[2];
	int trials = atoi(argv[3]), warmup = argc > 4 ? atoi(argv[4]) : 10;
	char marker[4096], stopm[4096];
	snprintf(marker, sizeof marker, "%s/floor.start0", marks);
	snprintf(stopm, sizeof stopm, "%s/floor.stop", marks);
	setenv("BENCH_MARK_DIR", marks, 1);
	unsetenv("BENCH_GEN");
	for (int i = -warmup; i < trials; i++) {
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) { perror("socketpair"); return 1; }
		int theirs = dup(sv[1]); /* without CLOEXEC: inherited by the vassal */
		close(sv[1]);
		char fds[16];
		snprintf(fds, sizeof fds, "%d", theirs);
		setenv("UWSGI_EMPEROR_FD", fds, 1);
		unlink(marker);
		long long t0 = now_ns();
		pid_t pid = fork();
		if (pid < 0) { perror("fork"); return 1; }
		if (pid == 0) {
			char *args[] = { (char *) vassal, "--ini", "floor.ini", NULL };
			execv(vassal, args);
			_exit(127);
		}
		close(theirs);
		unsigned char b;
		ssize_t r;
		do { r = read(sv[0], &b, 1); } while (r < 0 && errno == EINTR);
		long long t1 = now_ns();
		if (r != 1) { fprintf(stderr, "vassal did not answer\n"); return 1; }
		long long ts = 0;
		int vpid = 0;
		FILE *f = fopen(marker, "r");
		if (!f || fscanf(f, "%lld %d", &ts, &vpid) != 2) { fprintf(stderr, "no start marker\n"); return 1; }
		fclose(f);
		unsigned char stop = 0;
		if (write(sv[0], &stop, 1) != 1) { perror("write"); }
		int status;
		while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {}
		close(sv[0]);
		if (i >= 0) printf("%lld %lld\n", ts - t0, t1 - t0);
	}
	unlink(marker);
	unlink(stopm);
	return 0;
}
