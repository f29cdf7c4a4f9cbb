/* scripts/bench-iso-linux.c: the Linux side of `make bench-iso`. Reads FILE (on isofs) from
 * start to end in 1 MiB read()s after dropping the page cache, so every byte comes from the
 * CD, and prints `linux bench FILE: N bytes in U us: R MB/s`. */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long long now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

int main(int argc, char **argv) {
    static char buf[1 << 20];
    if (argc != 2) {
        fprintf(stderr, "usage: bench-iso-linux FILE\n");
        return 2;
    }
    sync();
    int dc = open("/proc/sys/vm/drop_caches", O_WRONLY);
    if (dc < 0 || write(dc, "3\n", 2) != 2) {
        printf("BENCH-ERROR cannot drop caches\n");
        return 1;
    }
    close(dc);
    int fd = open(argv[1], O_RDONLY);
    if (fd < 0) {
        printf("BENCH-ERROR open %s\n", argv[1]);
        return 1;
    }
    long long t0 = now_us(), total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0) {
            printf("BENCH-ERROR read %s\n", argv[1]);
            return 1;
        }
        if (n == 0)
            break;
        total += n;
    }
    long long us = now_us() - t0;
    if (us < 1)
        us = 1;
    close(fd);
    printf("linux bench %s: %lld bytes in %lld us: %lld.%03lld MB/s\n", argv[1], total, us,
           total / us, total % us * 1000 / us);
    return 0;
}
