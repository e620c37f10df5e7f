/* vassal.c -- the trivial vassal every emperor runs in bench/run.sh.
 *
 * Identical to the vassal that the baseline script (uwsgi_emperor_baseline.sh)
 * compiles, so figures stay comparable with its earlier runs. It speaks the
 * uWSGI emperor byte protocol on $UWSGI_EMPEROR_FD and writes timestamped
 * markers "<CLOCK_REALTIME ns> <pid>" to $BENCH_MARK_DIR:
 *   <name>.start<gen>   first thing after exec (gen = 0, 1 after a reload ...)
 *   <name>.reload<gen>  when it reads byte 1; it then re-execs itself (same pid)
 *   <name>.stop         when it reads byte 0/2; it then exits 0
 *   <name>.lost         when the emperor channel hits EOF; it then exits 0
 * On start it sends 1 (ready), 5 (accepting) and, unless BENCH_LOYAL=0, 17 (loyal).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *mark_dir = ".";
static char name[256] = "unknown";

static long long now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (long long) ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* write "<ns> <pid>\n" to <mark_dir>/<name>.<event> atomically (tmp + rename) */
static void mark(const char *event, long long ts) {
	char path[4096], tmp[4096], buf[64];
	snprintf(path, sizeof path, "%s/%s.%s", mark_dir, name, event);
	snprintf(tmp, sizeof tmp, "%s/.%s.%s.%d.tmp", mark_dir, name, event, (int) getpid());
	int n = snprintf(buf, sizeof buf, "%lld %d\n", ts, (int) getpid());
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) return;
	if (write(fd, buf, n) != n) { /* best effort */ }
	close(fd);
	rename(tmp, path);
}

static int has_ext(const char *s) {
	static const char *exts[] = { ".ini", ".xml", ".yml", ".yaml", ".json", ".js", 0 };
	size_t l = strlen(s);
	for (int i = 0; exts[i]; i++) {
		size_t e = strlen(exts[i]);
		if (l > e && !strcmp(s + l - e, exts[i])) return 1;
	}
	return 0;
}

int main(int argc, char **argv) {
	long long t0 = now_ns();
	const char *md = getenv("BENCH_MARK_DIR");
	if (md) mark_dir = md;
	/* the config path: last argument that looks like a config file */
	for (int i = argc - 1; i > 0; i--) {
		if (has_ext(argv[i])) {
			const char *base = strrchr(argv[i], '/');
			base = base ? base + 1 : argv[i];
			if (!strncmp(base, "emperor://", 10)) base += 10;
			snprintf(name, sizeof name, "%s", base);
			char *dot = strrchr(name, '.');
			if (dot) *dot = 0;
			break;
		}
	}
	const char *g = getenv("BENCH_GEN");
	int gen = g ? atoi(g) : 0;
	char ev[32];
	snprintf(ev, sizeof ev, "start%d", gen);
	mark(ev, t0);

	const char *efd_s = getenv("UWSGI_EMPEROR_FD");
	if (!efd_s) { for (;;) pause(); }
	int efd = atoi(efd_s);
	const char *loyal = getenv("BENCH_LOYAL");
	unsigned char hello[3] = { 1, 5, 17 };
	size_t hl = (loyal && !strcmp(loyal, "0")) ? 2 : 3;
	if (write(efd, hello, hl) < 0) { /* emperor may already be gone */ }

	for (;;) {
		unsigned char b;
		ssize_t r = read(efd, &b, 1);
		if (r < 0 && errno == EINTR) continue;
		long long t = now_ns();
		if (r <= 0) { mark("lost", t); _exit(0); }
		if (b == 0 || b == 2) { mark("stop", t); _exit(0); }
		if (b == 1) {
			snprintf(ev, sizeof ev, "reload%d", gen);
			mark(ev, t);
			char gs[16];
			snprintf(gs, sizeof gs, "%d", gen + 1);
			setenv("BENCH_GEN", gs, 1);
			execv("/proc/self/exe", argv);
			_exit(1);
		}
		/* any other byte: ignored */
	}
}
