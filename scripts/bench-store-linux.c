/* bench-store-linux.c: the Linux side of `make bench-store` (scripts/bench-store.sh,
 * scripts/bench/store.sh).
 *
 * Does on a Linux file system what capmon's `store bench [-n N] SIZES...` does on its object
 * store, with files for objects, and prints the same result lines, so one parser reads both:
 *   store bench put 4096: 200 ops in 812 ms: 246.3 ops/s, mean 4060 us
 *   store bench get 4096: 200 ops in 95 ms: 2105.2 ops/s, mean 475 us
 * Works in a new directory bench-K (the first free K) below the current one, made and made
 * durable before any timing. For each SIZE in turn:
 *   put, N times: create a new file (O_CREAT|O_EXCL), write SIZE bytes, fsync the file, fsync
 *     the directory, close. The directory's fsync is there because a create is durable only
 *     once the new name is: fsync(2) on a file does not promise its directory entry (POSIX;
 *     ext4 happens to commit both in one journal transaction, which leaves the second fsync
 *     at most a disk cache flush there, but a program that wants durability cannot count on
 *     that).
 *   get, N times: open one of those files, read it to its end, close, compare its bytes with
 *     what was written (length and content). The files are read right after they were written
 *     and caches are left as they are (no drop_caches), so a get is served from the page
 *     cache: capmon's get reads back its objects just as warm.
 * Every file's bytes are distinct (splitmix64 seeded per run, size and file). They are made
 * before each op, outside the timed span; an op's time is the span of its system calls (and,
 * for a get, the comparison), and the printed total is the sum of those spans: ops/s = N /
 * total, mean = total / N. At the end the run removes what it made, as capmon's bench unbinds
 * its names, and commits the removal (fsync of the parent directory) so that it is not left
 * in the journal for the next run's first put to pay for; none of that is timed.
 *
 * usage: bench-store-linux [-n N] SIZE...   (N: 200 by default; SIZE as capmon parses it:
 * decimal or 0x hex, `_` allowed, an optional K, M or G suffix, binary, not on hex)
 *
 * Built static on the host by scripts/bench/store.sh (gcc -static), copied into the
 * initramfs. Exit 0 on success, 1 with a message on stderr otherwise.
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

#define DEFAULT_OPS 200ull
#define MAX_OPS 1000000ull
#define MAX_SIZE (256ull << 20)
#define MAX_SIZES 16
#define RAND_SEED 0x6361706d6f6eull /* "capmon" */

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

/* shell/src/parse.rs number + size: decimal or 0x hex with `_` separators, and an optional
 * K/M/G (KiB, MiB, GiB) suffix, case-insensitive, not after hex. 0 if it is not one. */
static uint64_t parse_size(const char *s)
{
	size_t len = strlen(s);
	unsigned shift = 0;
	if (len && strchr("kK", s[len - 1]))
		shift = 10;
	else if (len && strchr("mM", s[len - 1]))
		shift = 20;
	else if (len && strchr("gG", s[len - 1]))
		shift = 30;
	if (shift)
		len--;
	unsigned radix = 10;
	size_t i = 0;
	if (len >= 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		if (shift)
			return 0;
		radix = 16;
		i = 2;
	}
	uint64_t v = 0;
	int any = 0;
	for (; i < len; i++) {
		unsigned d;
		if (s[i] == '_')
			continue;
		if (s[i] >= '0' && s[i] <= '9')
			d = (unsigned)(s[i] - '0');
		else if (radix == 16 && s[i] >= 'a' && s[i] <= 'f')
			d = (unsigned)(s[i] - 'a' + 10);
		else if (radix == 16 && s[i] >= 'A' && s[i] <= 'F')
			d = (unsigned)(s[i] - 'A' + 10);
		else
			return 0;
		if (d >= radix || v > (MAX_SIZE - d) / radix)
			return 0;
		v = v * radix + d;
		any = 1;
	}
	if (!any || v > MAX_SIZE >> shift)
		return 0;
	return v << shift;
}

static int usage(void)
{
	fprintf(stderr, "usage: bench-store-linux [-n N] SIZE...\n");
	return 1;
}

static int fail(const char *what, const char *name)
{
	fprintf(stderr, "bench-store-linux: %s %s: %s\n", what, name, strerror(errno));
	return 1;
}

/* The bytes of file `i` of this size in this run. */
static void fill(uint64_t *buf, uint64_t size, uint64_t seed, uint64_t i)
{
	for (uint64_t j = 0; j < size / 8; j++)
		buf[j] = splitmix64(seed, i * (size / 8) + j);
}

static void report(const char *op, uint64_t size, uint64_t ops, uint64_t total_ns)
{
	if (total_ns == 0)
		total_ns = 1;
	uint64_t rate10 = (uint64_t)((unsigned __int128)ops * 10000000000ull / total_ns);
	printf("store bench %s %llu: %llu ops in %llu ms: %llu.%llu ops/s, mean %llu us\n", op,
	       (unsigned long long)size, (unsigned long long)ops,
	       (unsigned long long)(total_ns / 1000000), (unsigned long long)(rate10 / 10),
	       (unsigned long long)(rate10 % 10), (unsigned long long)(total_ns / ops / 1000));
	fflush(stdout);
}

/* File i of the s-th size (the s keeps a size given twice apart). */
static void file_name(char *name, size_t len, int s, uint64_t size, uint64_t i)
{
	snprintf(name, len, "%d-%llu-%llu", s, (unsigned long long)size, (unsigned long long)i);
}

/* One put: a new file `name` in `dir` holding `size` bytes of `buf`, durable. */
static int put(int dir, const char *name, const uint64_t *buf, uint64_t size)
{
	int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL, 0644);
	if (fd < 0)
		return fail("create", name);
	for (uint64_t done = 0; done < size;) {
		ssize_t n = write(fd, (const char *)buf + done, size - done);
		if (n <= 0)
			return fail("write", name);
		done += (uint64_t)n;
	}
	if (fsync(fd) != 0)
		return fail("fsync", name);
	if (fsync(dir) != 0)
		return fail("fsync the directory of", name);
	if (close(fd) != 0)
		return fail("close", name);
	return 0;
}

/* One get: file `name` read to its end into `got` (room for size + 1 bytes), checked against
 * `want`. */
static int get(int dir, const char *name, const uint64_t *want, uint64_t *got, uint64_t size)
{
	int fd = openat(dir, name, O_RDONLY);
	if (fd < 0)
		return fail("open", name);
	uint64_t done = 0;
	for (;;) {
		ssize_t n = read(fd, (char *)got + done, size + 1 - done);
		if (n < 0)
			return fail("read", name);
		if (n == 0 || (done += (uint64_t)n) > size)
			break;
	}
	if (close(fd) != 0)
		return fail("close", name);
	if (done != size || memcmp(got, want, size) != 0) {
		fprintf(stderr, "bench-store-linux: %s: %s\n", name,
			done != size ? "wrong length" : "bytes differ from those written");
		return 1;
	}
	return 0;
}

/* Removes the run's files and directory `dname` (open as `dir`, closed here), durably. */
static int remove_run(int dir, const char *dname, const uint64_t *sizes, int nsizes, uint64_t ops)
{
	char name[48];
	for (int s = 0; s < nsizes; s++) {
		for (uint64_t i = 0; i < ops; i++) {
			file_name(name, sizeof name, s, sizes[s], i);
			if (unlinkat(dir, name, 0) != 0)
				return fail("remove", name);
		}
	}
	close(dir);
	if (rmdir(dname) != 0)
		return fail("rmdir", dname);
	int parent = open(".", O_RDONLY | O_DIRECTORY);
	if (parent < 0 || fsync(parent) != 0)
		return fail("fsync", ".");
	close(parent);
	return 0;
}

int main(int argc, char **argv)
{
	uint64_t ops = DEFAULT_OPS, sizes[MAX_SIZES];
	int nsizes = 0;
	for (int a = 1; a < argc; a++) {
		if (strcmp(argv[a], "-n") == 0 && a + 1 < argc) {
			char *end;
			ops = strtoull(argv[++a], &end, 10);
			if (*end || ops == 0 || ops > MAX_OPS)
				return usage();
		} else if (nsizes < MAX_SIZES && (sizes[nsizes] = parse_size(argv[a])) != 0) {
			/* Whole 64-bit words keep fill() simple; capmon's sizes are sector multiples. */
			if (sizes[nsizes] % 8)
				return usage();
			nsizes++;
		} else {
			return usage();
		}
	}
	if (nsizes == 0)
		return usage();

	/* A directory of its own, durable before the first put. */
	char dname[32];
	for (unsigned k = 0;; k++) {
		snprintf(dname, sizeof dname, "bench-%u", k);
		if (mkdir(dname, 0755) == 0)
			break;
		if (errno != EEXIST)
			return fail("mkdir", dname);
	}
	int parent = open(".", O_RDONLY | O_DIRECTORY);
	if (parent < 0 || fsync(parent) != 0)
		return fail("fsync", ".");
	close(parent);
	int dir = open(dname, O_RDONLY | O_DIRECTORY);
	if (dir < 0)
		return fail("open", dname);
	uint64_t seed = splitmix64(RAND_SEED, now_ns());

	for (int s = 0; s < nsizes; s++) {
		uint64_t size = sizes[s];
		uint64_t *want = malloc(size), *got = malloc(size + 8);
		if (!want || !got) {
			fprintf(stderr, "bench-store-linux: no memory for %llu bytes\n",
				(unsigned long long)size);
			return 1;
		}
		char name[48];
		uint64_t total = 0;
		for (uint64_t i = 0; i < ops; i++) {
			file_name(name, sizeof name, s, size, i);
			fill(want, size, seed ^ size, i);
			uint64_t t0 = now_ns();
			if (put(dir, name, want, size) != 0)
				return 1;
			total += now_ns() - t0;
		}
		report("put", size, ops, total);
		total = 0;
		for (uint64_t i = 0; i < ops; i++) {
			file_name(name, sizeof name, s, size, i);
			fill(want, size, seed ^ size, i);
			uint64_t t0 = now_ns();
			if (get(dir, name, want, got, size) != 0)
				return 1;
			total += now_ns() - t0;
		}
		report("get", size, ops, total);
		free(want);
		free(got);
	}
	if (remove_run(dir, dname, sizes, nsizes, ops) != 0)
		return 1;
	return 0;
}
