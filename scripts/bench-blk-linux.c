/* bench-blk-linux.c: the Linux side of `make bench-blk` and `make bench-nvme`
 * (scripts/bench-blk.sh, scripts/bench-nvme.sh, scripts/bench/blk.sh).
 *
 * Does in a Linux guest what capmon's `blk bench DEV ACCESS DIR SIZE [-q N]` does
 * (drivers/block/src/bench.rs): O_DIRECT so the page cache stays out of it, the same
 * bounds (32 MiB or 2 s), the same random offsets (splitmix64 seeded with "capmon"),
 * a flush at the end of a write run, and prints the same result line, so one parser
 * reads both guests:
 *   bench vda seq read 1048576: 32 MiB in 412 ms: 81.4 MB/s, 77 IOPS, mean 12987 us
 *   bench nvme0n1 rand read 4096 qd32: 32 MiB in 412 ms: 81.4 MB/s, 19000 IOPS, mean 1600 us
 * Queue depth 1 (the default) is one pread/pwrite at a time. `-q N` (2..256, reads
 * only) batches the requests as capmon does (BATCH per batch, fewer where the
 * buffers pass BATCH_BYTES but never fewer than N, or where the byte bound or the
 * device's end comes first) and keeps up to N of a batch in flight with Linux AIO
 * (io_setup/io_submit/io_getevents through syscall(2), no libaio); each batch drains
 * before the next. The mean latency is then Little's law's, as capmon's: batch time
 * * min(N, requests in the batch) / requests in the batch.
 * `bench-blk-linux now` prints CLOCK_MONOTONIC in ns, to time busybox commands.
 *
 * Built static on the host by scripts/bench-blk.sh (gcc -static), copied into the
 * initramfs. Exit 0 on success, 1 with a message on stderr otherwise.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/aio_abi.h>
#include <linux/fs.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The bounds and seed of drivers/block/src/bench.rs. */
#define MAX_BYTES (32ull << 20)
#define MAX_NS 2000000000ull
#define MAX_REQUEST (16ull << 20)
#define RAND_SEED 0x6361706d6f6eull /* "capmon" */
#define MAX_DEPTH 256
#define BATCH 128ull
#define BATCH_BYTES (8ull << 20)
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
	fprintf(stderr, "usage: bench-blk-linux DEV seq|rand read|write SIZE [-q N] | bench-blk-linux now\n");
	return 1;
}

/* Where the k-th request goes (a byte offset); sets *end when that is past the device's end
 * (sequential only: random offsets always fit). */
struct offsets {
	int rand;
	uint64_t request, dev_bytes, slots;
};

static uint64_t offset(const struct offsets *o, uint64_t k, int *end)
{
	if (o->rand)
		return splitmix64(RAND_SEED, k) % o->slots * o->request;
	*end = k * o->request + o->request > o->dev_bytes;
	return k * o->request;
}

/* drivers/block/src/bench.rs batch_len. */
static uint64_t batch_len(uint64_t request, uint64_t depth)
{
	uint64_t n = BATCH_BYTES / request;
	if (n < depth)
		n = depth;
	if (n > BATCH)
		n = BATCH;
	if (n > (MAX_BYTES + request - 1) / request)
		n = (MAX_BYTES + request - 1) / request;
	return n ? n : 1;
}

static long io_setup(unsigned n, aio_context_t *ctx) { return syscall(SYS_io_setup, n, ctx); }
static long io_destroy(aio_context_t ctx) { return syscall(SYS_io_destroy, ctx); }
static long io_submit(aio_context_t ctx, long n, struct iocb **cbs)
{
	return syscall(SYS_io_submit, ctx, n, cbs);
}
static long io_getevents(aio_context_t ctx, long min, long max, struct io_event *ev)
{
	return syscall(SYS_io_getevents, ctx, min, max, ev, NULL);
}

/* Reads the n requests of cbs keeping up to depth in flight; 0, or -1 with a message. */
static int run_batch(aio_context_t ctx, struct iocb **ptrs, struct io_event *ev, uint64_t n,
		     uint64_t depth)
{
	uint64_t sent = 0, done = 0;
	while (done < n) {
		while (sent < n && sent - done < depth) {
			uint64_t k = n - sent < depth - (sent - done) ? n - sent : depth - (sent - done);
			long got = io_submit(ctx, (long)k, ptrs + sent);
			if (got <= 0) {
				fprintf(stderr, "bench-blk-linux: io_submit: %s\n",
					got < 0 ? strerror(errno) : "nothing submitted");
				return -1;
			}
			sent += (uint64_t)got;
		}
		long got = io_getevents(ctx, 1, (long)(sent - done), ev);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			fprintf(stderr, "bench-blk-linux: io_getevents: %s\n", strerror(errno));
			return -1;
		}
		for (long i = 0; i < got; i++) {
			struct iocb *cb = (struct iocb *)(uintptr_t)ev[i].obj;
			if (ev[i].res != (__s64)cb->aio_nbytes) {
				fprintf(stderr, "bench-blk-linux: read at %llu: %s\n",
					(unsigned long long)cb->aio_offset,
					ev[i].res < 0 ? strerror((int)-ev[i].res) : "short transfer");
				return -1;
			}
		}
		done += (uint64_t)got;
	}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "now") == 0) {
		printf("%llu\n", (unsigned long long)now_ns());
		return 0;
	}
	uint64_t depth = 1;
	if (argc == 7 && strcmp(argv[5], "-q") == 0) {
		char *qend;
		depth = strtoull(argv[6], &qend, 10);
		if (*qend || depth < 1 || depth > MAX_DEPTH)
			return usage();
	} else if (argc != 5) {
		return usage();
	}
	const char *dev = argv[1];
	int rand = strcmp(argv[2], "rand") == 0;
	int write = strcmp(argv[3], "write") == 0;
	if ((!rand && strcmp(argv[2], "seq") != 0) || (!write && strcmp(argv[3], "read") != 0))
		return usage();
	char *end;
	uint64_t request = strtoull(argv[4], &end, 0);
	if (*end || request == 0 || request % SECTOR || request > MAX_REQUEST)
		return usage();
	if (write && depth > 1) {
		fprintf(stderr, "bench-blk-linux: -q is for reads only\n");
		return 1;
	}

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
	uint64_t batch = depth > 1 ? batch_len(request, depth) : 1;
	void *buf;
	if (posix_memalign(&buf, 4096, batch * request) != 0) {
		fprintf(stderr, "bench-blk-linux: no memory for %llu bytes\n",
			(unsigned long long)(batch * request));
		return 1;
	}
	/* Written data: the seed pattern, like capmon (content does not matter to the device). */
	for (uint64_t i = 0; i < batch * request / 8; i++)
		((uint64_t *)buf)[i] = splitmix64(RAND_SEED, i);

	struct offsets o = { rand, request, dev_bytes, dev_bytes / request };
	uint64_t ops = 0, bytes = 0, latency = 0, k = 0;
	uint64_t start = now_ns();
	if (depth == 1) {
		while (bytes < MAX_BYTES && now_ns() - start < MAX_NS) {
			int past = 0;
			uint64_t off = offset(&o, k, &past);
			if (past)
				break;
			k++;
			uint64_t t0 = now_ns();
			ssize_t n = write ? pwrite(fd, buf, request, (off_t)off)
					  : pread(fd, buf, request, (off_t)off);
			latency += now_ns() - t0;
			if (n != (ssize_t)request) {
				fprintf(stderr, "bench-blk-linux: %s at %llu: %s\n", write ? "write" : "read",
					(unsigned long long)off, n < 0 ? strerror(errno) : "short transfer");
				return 1;
			}
			ops++;
			bytes += request;
		}
	} else {
		aio_context_t ctx = 0;
		struct iocb *cbs = calloc(batch, sizeof *cbs);
		struct iocb **ptrs = calloc(batch, sizeof *ptrs);
		struct io_event *ev = calloc(depth, sizeof *ev);
		if (!cbs || !ptrs || !ev || io_setup((unsigned)depth, &ctx) != 0) {
			fprintf(stderr, "bench-blk-linux: AIO setup: %s\n", strerror(errno));
			return 1;
		}
		uint64_t elapsed = 0;
		while (bytes < MAX_BYTES && elapsed < MAX_NS) {
			uint64_t want = (MAX_BYTES - bytes + request - 1) / request, n = 0;
			while (n < want && n < batch) {
				int past = 0;
				uint64_t off = offset(&o, k, &past);
				if (past)
					break;
				k++;
				cbs[n] = (struct iocb){
					.aio_fildes = (uint32_t)fd,
					.aio_lio_opcode = IOCB_CMD_PREAD,
					.aio_buf = (uint64_t)(uintptr_t)((char *)buf + n * request),
					.aio_nbytes = request,
					.aio_offset = (int64_t)off,
				};
				ptrs[n] = &cbs[n];
				n++;
			}
			if (n == 0)
				break;
			uint64_t t0 = now_ns();
			if (run_batch(ctx, ptrs, ev, n, depth) != 0)
				return 1;
			uint64_t t1 = now_ns();
			/* Little's law, as in bench.rs: requests overlap, so the batch's time times the
			 * requests kept in flight is the sum of their latencies. */
			latency += (t1 - t0) * (n < depth ? n : depth);
			ops += n;
			bytes += n * request;
			elapsed = t1 - start;
		}
		io_destroy(ctx);
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
	char qd[16] = "";
	if (depth > 1)
		snprintf(qd, sizeof qd, " qd%llu", (unsigned long long)depth);
	printf("bench %s %s %s %llu%s: %s in %llu ms: %llu.%llu MB/s, %llu IOPS, mean %llu us\n", name,
	       rand ? "rand" : "seq", write ? "write" : "read", (unsigned long long)request, qd, size,
	       (unsigned long long)(elapsed / 1000000), (unsigned long long)(mb10 / 10),
	       (unsigned long long)(mb10 % 10),
	       (unsigned long long)((unsigned __int128)ops * 1000000000 / elapsed),
	       (unsigned long long)(latency / (ops ? ops : 1) / 1000));
	return 0;
}
