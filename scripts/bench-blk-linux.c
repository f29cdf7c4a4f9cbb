/* bench-blk-linux.c: the Linux side of `make bench-blk` (scripts/bench-blk.sh).
 *
 * Does in a Linux guest what capmon's `blk bench DEV ACCESS DIR SIZE` does
 * (drivers/block/src/bench.rs): one request at a time (QD1), O_DIRECT so the page
 * cache stays out of it, the same bounds (32 MiB or 2 s), the same random offsets
 * (splitmix64 seeded with "capmon"), a flush at the end of a write run, and prints
 * the same result line, so one parser reads both guests:
 *   bench vda seq read 1048576: 32 MiB in 412 ms: 81.4 MB/s, 77 IOPS, mean 12987 us
 * `bench-blk-linux now` prints CLOCK_MONOTONIC in ns, to time busybox commands.
 *
 * Built static on the host by scripts/bench-blk.sh (gcc -static), copied into the
 * initramfs. Exit 0 on success, 1 with a message on stderr otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The bounds and seed of drivers/block/src/bench.rs. */
#define MAX_BYTES (32ull << 20)
#define MAX_NS 2000000000ull
#define MAX_REQUEST (16ull << 20)
#define RAND_SEED 0x6361706d6f6eull /* "capmon" */
#define SECTOR 512ull

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

/* "32 MiB", "15376 KiB", "512 B": capmon's exact_size (the largest unit that divides). */
static void exact_size(uint64_t n, char *out, size_t len)
{
	if (n && n % (1ull << 30) == 0)
		snprintf(out, len, "%llu GiB", (unsigned long long)(n >> 30));
	else if (n && n % (1ull << 20) == 0)
		snprintf(out, len, "%llu MiB", (unsigned long long)(n >> 20));
	else if (n && n % (1ull << 10) == 0)
		snprintf(out, len, "%llu KiB", (unsigned long long)(n >> 10));
	else
		snprintf(out, len, "%llu B", (unsigned long long)n);
}

static int usage(void)
{
	fprintf(stderr, "usage: bench-blk-linux DEV seq|rand read|write SIZE | bench-blk-linux now\n");
	return 1;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "now") == 0) {
		printf("%llu\n", (unsigned long long)now_ns());
		return 0;
	}
	if (argc != 5)
		return usage();
	const char *dev = argv[1];
	int rand = strcmp(argv[2], "rand") == 0;
	int write = strcmp(argv[3], "write") == 0;
	if ((!rand && strcmp(argv[2], "seq") != 0) || (!write && strcmp(argv[3], "read") != 0))
		return usage();
	char *end;
	uint64_t request = strtoull(argv[4], &end, 0);
	if (*end || request == 0 || request % SECTOR || request > MAX_REQUEST)
		return usage();

	int fd = open(dev, (write ? O_RDWR : O_RDONLY) | O_DIRECT);
	if (fd < 0) {
		fprintf(stderr, "bench-blk-linux: %s: %s\n", dev, strerror(errno));
		return 1;
	}
	uint64_t dev_bytes = 0;
	struct stat st;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		dev_bytes = (uint64_t)st.st_size; /* a plain file: lets the helper be tried on the host */
	else if (ioctl(fd, BLKGETSIZE64, &dev_bytes) != 0)
		dev_bytes = 0;
	if (dev_bytes < request) {
		fprintf(stderr, "bench-blk-linux: %s: size unknown or smaller than %llu\n", dev,
			(unsigned long long)request);
		return 1;
	}
	void *buf;
	if (posix_memalign(&buf, 4096, request) != 0) {
		fprintf(stderr, "bench-blk-linux: no memory for %llu bytes\n", (unsigned long long)request);
		return 1;
	}
	/* Written data: the seed pattern, like capmon (content does not matter to the device). */
	for (uint64_t i = 0; i < request / 8; i++)
		((uint64_t *)buf)[i] = splitmix64(RAND_SEED, i);

	uint64_t slots = dev_bytes / request;
	uint64_t ops = 0, bytes = 0, latency = 0, k = 0;
	uint64_t start = now_ns();
	while (bytes < MAX_BYTES && now_ns() - start < MAX_NS) {
		uint64_t off;
		if (rand) {
			off = splitmix64(RAND_SEED, k) % slots * request;
		} else {
			off = k * request;
			if (off + request > dev_bytes)
				break;
		}
		k++;
		uint64_t t0 = now_ns();
		ssize_t n = write ? pwrite(fd, buf, request, (off_t)off) : pread(fd, buf, request, (off_t)off);
		latency += now_ns() - t0;
		if (n != (ssize_t)request) {
			fprintf(stderr, "bench-blk-linux: %s at %llu: %s\n", write ? "write" : "read",
				(unsigned long long)off, n < 0 ? strerror(errno) : "short transfer");
			return 1;
		}
		ops++;
		bytes += request;
	}
	if (write && fdatasync(fd) != 0) {
		fprintf(stderr, "bench-blk-linux: flush: %s\n", strerror(errno));
		return 1;
	}
	uint64_t elapsed = now_ns() - start;
	if (elapsed == 0)
		elapsed = 1;
	const char *name = strrchr(dev, '/') ? strrchr(dev, '/') + 1 : dev;
	char size[32];
	exact_size(bytes, size, sizeof size);
	uint64_t mb10 = (uint64_t)((unsigned __int128)bytes * 10000 / elapsed);
	printf("bench %s %s %s %llu: %s in %llu ms: %llu.%llu MB/s, %llu IOPS, mean %llu us\n", name,
	       rand ? "rand" : "seq", write ? "write" : "read", (unsigned long long)request, size,
	       (unsigned long long)(elapsed / 1000000), (unsigned long long)(mb10 / 10),
	       (unsigned long long)(mb10 % 10),
	       (unsigned long long)((unsigned __int128)ops * 1000000000 / elapsed),
	       (unsigned long long)(latency / (ops ? ops : 1) / 1000));
	return 0;
}
