/* bench-fs-linux.c: the Linux side of `make bench-fs` (scripts/bench-fs.sh, scripts/bench/fs.sh).
 *
 * Does on a Linux file system what capmon's `fs bench [-n N] [-m MIB]` (cmds/src/fs.rs) does on
 * its store, and prints the same result lines, so one parser reads both:
 *   fs bench create+write 4K+sync: 1000 ops in 5617000 us: 178.0 ops/s, 0.729 MB/s
 *   fs bench creates: first 100 at 180.2 ops/s, last 100 at 176.9 ops/s: last/first 0.981x
 *   fs bench write 1M+sync: 64 ops in 512000 us: 125.0 ops/s, 131.072 MB/s
 *   fs bench read 1M: 64 ops in ...            fs bench open+read 4K: 1000 ops in ...
 *   fs bench rename+1 sync: 1000 ops in ...
 * In a new directory fs-bench-K (the first free K) below the current one, made durable before
 * any timing:
 *   creates, N times: a new file fI (O_CREAT|O_EXCL), 4 KiB written, fsync of the file and of
 *     the directory (capmon's sync makes the file and its name durable; fsync(2) on a file does
 *     not promise its directory entry), close;
 *   sequential: a new file, MIB writes of 1 MiB in order, then fsync;
 *   reads: that file in 1 MiB preads, then every small file opened, read whole and closed; each
 *     read compared with what was written. Caches are left as they are (no drop_caches), as
 *     capmon's reads come right after its writes too: a warm read-back;
 *   renames: fI to gI, N times, then one fsync of the directory.
 * With --no-fsync every fsync is left out (the rows then say so: `fs bench nofsync create+write
 * 4K`, `nofsync write 1M`, `nofsync read 1M`, `nofsync open+read 4K`, `nofsync rename`): what
 * ext4 does when nothing asks for durability, shown beside the fair comparison.
 * The bytes are drivers/block/src/pattern.rs `seed:I` for file I and `seed:N+K` for the K-th
 * MiB, as capmon writes them, made outside the timed spans; a row's time is the sum of its
 * operations' system calls. At the end the run's files and directory are removed and the
 * removal committed (fsync of the parent), untimed, so the next run starts as this one did.
 *
 * usage: bench-fs-linux [-n N] [-m MIB] [--no-fsync]   (N 10..100000, default 1000; MIB
 * 1..1024, default 16: capmon's bounds)
 *
 * Built static on the host by scripts/bench/fs.sh (gcc -static), copied into the initramfs.
 * Exit 0 on success, 1 with a message on stderr otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MIB (1u << 20)
#define SMALL 4096u

static int sync_on = 1;

static uint64_t now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* drivers/block/src/pattern.rs splitmix64: the k-th output of the stream seeded with `seed`. */
static uint64_t splitmix64(uint64_t seed, uint64_t k)
{
	uint64_t z = seed + (k + 1) * 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Pattern `seed:seed` from offset 0 (little-endian words: this is x86_64). */
static void fill(uint64_t *buf, size_t len, uint64_t seed)
{
	for (size_t j = 0; j < len / 8; j++)
		buf[j] = splitmix64(seed, j);
}

static int fail(const char *what, const char *name)
{
	fprintf(stderr, "bench-fs-linux: %s %s: %s\n", what, name, strerror(errno));
	return 1;
}

static int usage(void)
{
	fprintf(stderr, "usage: bench-fs-linux [-n N] [-m MIB] [--no-fsync]\n");
	return 1;
}

/* A row's name: capmon's, or the no-fsync one. */
static const char *row(const char *synced, const char *unsynced)
{
	return sync_on ? synced : unsynced;
}

static uint64_t per_s_x10(uint64_t n, uint64_t ns)
{
	return (uint64_t)((unsigned __int128)n * 10000000000ull / (ns ? ns : 1));
}

/* cmds/src/fs.rs `rate`: `fs bench ROW: N ops in U us: R ops/s[, M MB/s]`. */
static void report(const char *what, uint64_t n, uint64_t bytes, uint64_t ns)
{
	if (ns == 0)
		ns = 1;
	uint64_t r = per_s_x10(n, ns);
	printf("fs bench %s: %llu ops in %llu us: %llu.%llu ops/s", what, (unsigned long long)n,
	       (unsigned long long)(ns / 1000), (unsigned long long)(r / 10),
	       (unsigned long long)(r % 10));
	if (bytes) {
		uint64_t kb_s = (uint64_t)((unsigned __int128)bytes * 1000000 / ns);
		printf(", %llu.%03llu MB/s", (unsigned long long)(kb_s / 1000),
		       (unsigned long long)(kb_s % 1000));
	}
	printf("\n");
	fflush(stdout);
}

static int write_all(int fd, const void *buf, size_t len, off_t at, const char *name)
{
	for (size_t done = 0; done < len;) {
		ssize_t k = pwrite(fd, (const char *)buf + done, len - done, at + (off_t)done);
		if (k <= 0)
			return fail("write", name);
		done += (size_t)k;
	}
	return 0;
}

/* Reads len bytes at `at` (fewer only at the end of the file); the count, or -1. */
static ssize_t read_all(int fd, void *buf, size_t len, off_t at)
{
	size_t done = 0;
	while (done < len) {
		ssize_t k = pread(fd, (char *)buf + done, len - done, at + (off_t)done);
		if (k < 0)
			return -1;
		if (k == 0)
			break;
		done += (size_t)k;
	}
	return (ssize_t)done;
}

static int fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY);
	if (fd < 0 || fsync(fd) != 0)
		return fail("fsync", path);
	close(fd);
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t n = 1000, mib = 16;
	for (int a = 1; a < argc; a++) {
		char *end;
		if (strcmp(argv[a], "-n") == 0 && a + 1 < argc) {
			n = strtoull(argv[++a], &end, 10);
			if (*end || n < 10 || n > 100000)
				return usage();
		} else if (strcmp(argv[a], "-m") == 0 && a + 1 < argc) {
			mib = strtoull(argv[++a], &end, 10);
			if (*end || mib < 1 || mib > 1024)
				return usage();
		} else if (strcmp(argv[a], "--no-fsync") == 0) {
			sync_on = 0;
		} else {
			return usage();
		}
	}
	char dname[32];
	for (unsigned k = 0;; k++) {
		snprintf(dname, sizeof dname, "fs-bench-%u", k);
		if (mkdir(dname, 0755) == 0)
			break;
		if (errno != EEXIST)
			return fail("mkdir", dname);
	}
	if (fsync_path(".") != 0)
		return 1;
	int dir = open(dname, O_RDONLY | O_DIRECTORY);
	if (dir < 0)
		return fail("open", dname);
	uint64_t *data = malloc(SMALL), *want = malloc(SMALL);
	uint64_t *block = malloc(MIB), *buf = malloc(MIB);
	if (!data || !want || !block || !buf) {
		fprintf(stderr, "bench-fs-linux: out of memory\n");
		return 1;
	}
	char name[32], to[32];

	/* Creates. */
	uint64_t tenth = n / 10 ? n / 10 : 1, total = 0, first = 0, last = 0;
	for (uint64_t i = 0; i < n; i++) {
		fill(data, SMALL, i);
		snprintf(name, sizeof name, "f%llu", (unsigned long long)i);
		uint64_t t = now_ns();
		int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL, 0644);
		if (fd < 0)
			return fail("create", name);
		if (write_all(fd, data, SMALL, 0, name) != 0)
			return 1;
		if (sync_on && fsync(fd) != 0)
			return fail("fsync", name);
		if (sync_on && fsync(dir) != 0)
			return fail("fsync the directory of", name);
		if (close(fd) != 0)
			return fail("close", name);
		uint64_t dt = now_ns() - t;
		total += dt;
		if (i < tenth)
			first += dt;
		if (i >= n - tenth)
			last += dt;
	}
	report(row("create+write 4K+sync", "nofsync create+write 4K"), n, n * SMALL, total);
	if (sync_on) {
		uint64_t fr = per_s_x10(tenth, first), lr = per_s_x10(tenth, last);
		uint64_t ratio = (uint64_t)((unsigned __int128)lr * 1000 / (fr ? fr : 1));
		printf("fs bench creates: first %llu at %llu.%llu ops/s, last %llu at %llu.%llu ops/s: "
		       "last/first %llu.%03llux\n",
		       (unsigned long long)tenth, (unsigned long long)(fr / 10),
		       (unsigned long long)(fr % 10), (unsigned long long)tenth,
		       (unsigned long long)(lr / 10), (unsigned long long)(lr % 10),
		       (unsigned long long)(ratio / 1000), (unsigned long long)(ratio % 1000));
		fflush(stdout);
	}

	/* Sequential writes, then the sync. */
	int fd = openat(dir, "seq", O_RDWR | O_CREAT | O_EXCL, 0644);
	if (fd < 0)
		return fail("create", "seq");
	total = 0;
	for (uint64_t i = 0; i < mib; i++) {
		fill(block, MIB, n + i);
		uint64_t t = now_ns();
		if (write_all(fd, block, MIB, (off_t)(i * MIB), "seq") != 0)
			return 1;
		total += now_ns() - t;
	}
	uint64_t t = now_ns();
	if (sync_on && fsync(fd) != 0)
		return fail("fsync", "seq");
	total += now_ns() - t;
	report(row("write 1M+sync", "nofsync write 1M"), mib, mib * MIB, total);

	/* Reads: the sequential file, then every small one. */
	total = 0;
	for (uint64_t i = 0; i < mib; i++) {
		t = now_ns();
		ssize_t got = read_all(fd, buf, MIB, (off_t)(i * MIB));
		total += now_ns() - t;
		if (got < 0)
			return fail("read", "seq");
		fill(block, MIB, n + i);
		if (got != MIB || memcmp(buf, block, MIB) != 0) {
			fprintf(stderr, "bench-fs-linux: seq: 1 MiB at %llu read back wrong\n",
				(unsigned long long)(i * MIB));
			return 1;
		}
	}
	report(row("read 1M", "nofsync read 1M"), mib, mib * MIB, total);
	close(fd);
	total = 0;
	for (uint64_t i = 0; i < n; i++) {
		snprintf(name, sizeof name, "f%llu", (unsigned long long)i);
		t = now_ns();
		fd = openat(dir, name, O_RDONLY);
		if (fd < 0)
			return fail("open", name);
		ssize_t got = read_all(fd, data, SMALL, 0);
		if (got < 0)
			return fail("read", name);
		close(fd);
		total += now_ns() - t;
		fill(want, SMALL, i);
		if (got != SMALL || memcmp(data, want, SMALL) != 0) {
			fprintf(stderr, "bench-fs-linux: %s: read back wrong\n", name);
			return 1;
		}
	}
	report(row("open+read 4K", "nofsync open+read 4K"), n, n * SMALL, total);

	/* Renames, then one sync. */
	total = 0;
	for (uint64_t i = 0; i < n; i++) {
		snprintf(name, sizeof name, "f%llu", (unsigned long long)i);
		snprintf(to, sizeof to, "g%llu", (unsigned long long)i);
		t = now_ns();
		if (renameat(dir, name, dir, to) != 0)
			return fail("rename", name);
		total += now_ns() - t;
	}
	t = now_ns();
	if (sync_on && fsync(dir) != 0)
		return fail("fsync", dname);
	total += now_ns() - t;
	report(row("rename+1 sync", "nofsync rename"), n, 0, total);

	/* Untimed: the run's tree goes, durably. */
	for (uint64_t i = 0; i < n; i++) {
		snprintf(name, sizeof name, "g%llu", (unsigned long long)i);
		if (unlinkat(dir, name, 0) != 0)
			return fail("remove", name);
	}
	if (unlinkat(dir, "seq", 0) != 0)
		return fail("remove", "seq");
	close(dir);
	if (rmdir(dname) != 0)
		return fail("rmdir", dname);
	return fsync_path(".");
}
