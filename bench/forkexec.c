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
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
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
