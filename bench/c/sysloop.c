/* Syscall loops for the trace benchmarks: the cost of one syscall, and a
 * monitored process producing events as fast as the kernel lets it.
 *   sysloop getppid N        N getppid(2) calls (a syscall the tracer does not hook)
 *   sysloop read N           N read(2) of one byte from /dev/zero (hooked at entry and exit)
 *   sysloop open N           N openat(2) + close(2) of /dev/null (one event each when monitored)
 *   sysloop open-for SECS [MARK [distinct]]    openat + close for SECS seconds, prints the count
 *   sysloop open-rate RATE SECS [MARK [distinct]]  the same at RATE per second (as fast as it can when it cannot keep up)
 * MARK is ignored (a command-line marker for the agent's rule); with
 * "distinct" every open names another path (/nonexistent-sbb/PID/N, which fails
 * with ENOENT), so no two events carry the same data.
 * Prints ns per call (or the count) on stdout. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int distinct;
static long seq;

static void open_one(void)
{
	if (distinct) {
		char path[64];
		snprintf(path, sizeof(path), "/nonexistent-sbb/%d/%ld", (int)getpid(), seq++);
		int fd = open(path, O_RDONLY);
		if (fd >= 0)
			close(fd);
	} else
		close(open("/dev/null", O_RDONLY));
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	if (argc < 3)
		return 2;
	long n = atol(argv[2]);
	char buf[1];
	double t0;
	distinct = argc >= 6 && strcmp(argv[5], "distinct") == 0;
	if (strcmp(argv[1], "open-for") == 0)
		distinct = argc >= 5 && strcmp(argv[4], "distinct") == 0;
	if (strcmp(argv[1], "open-rate") == 0 && argc >= 4) {
		double rate = atof(argv[2]);
		double start = now(), end = start + atol(argv[3]) * 1e9;
		long count = 0;
		while (now() < end) {
			/* catch up to where the rate says we should be, then sleep a millisecond */
			long due = (long)((now() - start) * rate / 1e9);
			for (; count < due; count++)
				open_one();
			struct timespec ms = { 0, 1000000 };
			nanosleep(&ms, NULL);
		}
		printf("%ld\n", count);
		return 0;
	}
	if (strcmp(argv[1], "open-for") == 0) {
		double end = now() + n * 1e9;
		long count = 0;
		while (1) {
			for (int i = 0; i < 1000; i++)
				open_one();
			count += 1000;
			if (now() >= end)
				break;
		}
		printf("%ld\n", count);
		return 0;
	}
	int zero = open("/dev/zero", O_RDONLY);
	t0 = now();
	if (strcmp(argv[1], "getppid") == 0) {
		for (long i = 0; i < n; i++)
			getppid();
	} else if (strcmp(argv[1], "read") == 0) {
		for (long i = 0; i < n; i++)
			if (read(zero, buf, 1) != 1)
				return 1;
	} else if (strcmp(argv[1], "open") == 0) {
		for (long i = 0; i < n; i++)
			close(open("/dev/null", O_RDONLY));
	} else
		return 2;
	printf("%.2f\n", (now() - t0) / n);
	return 0;
}
