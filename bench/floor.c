/* floor.c - the floor: a minimal C reader of the same inventory aupwatch takes.
 *
 *   floor [--full]
 *
 * readdir /proc; per pid: fstat of /proc/<pid> (uid), read stat (ppid, comm, flags),
 * and for user processes read cmdline, readlink exe, readlink ns/net, readdir fd +
 * readlink of every fd (socket inodes).  Then, once per network namespace (pids grouped
 * by their ns/net inode), read /proc/<pid>/net/{tcp,tcp6,udp,udp6,dev} through one pid
 * in it and join the socket rows to the processes by inode.  Prints only counts, one
 * line on stdout.
 *
 * --full additionally reads /proc/<pid>/status and /proc/<pid>/cgroup, the two files
 * aupwatch reads that the floor does not (it gets the uid from the directory owner).
 *
 * Everything is read with openat/readlinkat relative to directory fds, getdents64 with a
 * 64 KiB buffer, 1 MiB reads; no allocation per file.  It stores no strings: a real tool
 * would have to, which is part of the margin allowed above the floor.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

struct dirent64 { uint64_t d_ino; int64_t d_off; unsigned short d_reclen; unsigned char d_type; char d_name[]; };

#define PF_KTHREAD 0x00200000u

static char dbuf[1 << 16], fdbuf[1 << 16], rbuf[1 << 20];
static int procfd, full;

struct proc { int pid; uint64_t netns; };
static struct proc *procs; static size_t nprocs, capprocs;
static uint64_t *sfd; static size_t nsfd, capsfd;            /* socket inodes held by fds */
static uint64_t *rows; static size_t nrows, caprows;         /* socket inodes of table rows */
struct ns { uint64_t ino; size_t first; };
static struct ns *nss; static size_t nns, capns;
static long kthreads, vanished, fds, ifaces, cmdline_bytes, tablerows_zero;

#define PUSH(arr, n, cap, v) do { if (n == cap) { cap = cap ? cap * 2 : 1024; arr = realloc(arr, cap * sizeof *arr); if (!arr) abort(); } arr[n++] = v; } while (0)

static ssize_t read_at(int dfd, const char *name, char *buf, size_t size) {
    int fd = openat(dfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t total = 0, r;
    size_t off = 0;
    while ((r = read(fd, buf + off, size - off)) > 0) {
        total += r;
        off += (size_t)r;
        if (off == size) off = 0;              /* longer than the buffer: keep reading, count only */
    }
    close(fd);
    return r < 0 ? -1 : total;
}

static uint64_t parse_bracket_inode(const char *s, ssize_t n, const char *prefix) {
    size_t pl = strlen(prefix);
    if (n <= (ssize_t)pl || memcmp(s, prefix, pl) != 0) return 0;
    uint64_t v = 0;
    for (ssize_t i = (ssize_t)pl; i < n && s[i] >= '0' && s[i] <= '9'; i++) v = v * 10 + (uint64_t)(s[i] - '0');
    return v;
}

static void read_fds(int dfd) {
    int fdd = openat(dfd, "fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fdd < 0) return;
    char link[128];
    for (;;) {
        long n = syscall(SYS_getdents64, fdd, fdbuf, sizeof fdbuf);
        if (n <= 0) break;
        for (long off = 0; off < n;) {
            struct dirent64 *d = (struct dirent64 *)(fdbuf + off);
            off += d->d_reclen;
            if (d->d_name[0] == '.') continue;
            fds++;
            ssize_t l = readlinkat(fdd, d->d_name, link, sizeof link);
            uint64_t ino = l > 0 ? parse_bracket_inode(link, l, "socket:[") : 0;
            if (ino) PUSH(sfd, nsfd, capsfd, ino);
        }
    }
    close(fdd);
}

static void read_proc(const char *name) {
    int dfd = openat(procfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) { vanished++; return; }
    struct stat st;
    if (fstat(dfd, &st) < 0) { close(dfd); vanished++; return; }
    ssize_t n = read_at(dfd, "stat", rbuf, sizeof rbuf - 1);
    if (n <= 0) { close(dfd); vanished++; return; }
    rbuf[n] = 0;
    char *p = strrchr(rbuf, ')');
    int ppid = 0; unsigned flags = 0;
    if (!p || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %u", &ppid, &flags) != 2) { close(dfd); vanished++; return; }
    (void)ppid; (void)st.st_uid;
    struct proc pr = { .pid = atoi(name), .netns = 0 };
    if (flags & PF_KTHREAD) { kthreads++; PUSH(procs, nprocs, capprocs, pr); close(dfd); return; }
    if (full) {
        read_at(dfd, "status", rbuf, sizeof rbuf);
        read_at(dfd, "cgroup", rbuf, sizeof rbuf);
    }
    n = read_at(dfd, "cmdline", rbuf, sizeof rbuf);
    if (n > 0) cmdline_bytes += n;
    char link[4096];
    readlinkat(dfd, "exe", link, sizeof link);
    ssize_t l = readlinkat(dfd, "ns/net", link, sizeof link);
    if (l > 0) pr.netns = parse_bracket_inode(link, l, "net:[");
    read_fds(dfd);
    close(dfd);
    PUSH(procs, nprocs, capprocs, pr);
    if (pr.netns) {
        size_t i;
        for (i = 0; i < nns && nss[i].ino != pr.netns; i++) ;
        if (i == nns) { struct ns s = { pr.netns, nprocs - 1 }; PUSH(nss, nns, capns, s); }
    }
}

/* Stream one /proc/<pid>/net table; for socket tables collect the inode column (10th field). */
static int read_table(int pid, const char *table, int sockets) {
    char path[64];
    snprintf(path, sizeof path, "%d/net/%s", pid, table);
    int fd = openat(procfd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    size_t have = 0; long line = 0; ssize_t r;
    while ((r = read(fd, rbuf + have, sizeof rbuf - 1 - have)) > 0) {
        have += (size_t)r;
        char *s = rbuf, *end = rbuf + have, *nl;
        while ((nl = memchr(s, '\n', (size_t)(end - s)))) {
            if (line++ > (sockets ? 0 : 1)) {
                if (!sockets) ifaces++;
                else {
                    char *q = s; int field = 0;
                    while (q < nl && field < 9) {               /* skip 9 fields */
                        while (q < nl && *q == ' ') q++;
                        while (q < nl && *q != ' ') q++;
                        field++;
                    }
                    while (q < nl && *q == ' ') q++;
                    uint64_t ino = 0;
                    while (q < nl && *q >= '0' && *q <= '9') ino = ino * 10 + (uint64_t)(*q++ - '0');
                    if (!ino) tablerows_zero++;
                    PUSH(rows, nrows, caprows, ino);
                }
            }
            s = nl + 1;
        }
        have = (size_t)(end - s);
        memmove(rbuf, s, have);
    }
    close(fd);
    return r < 0 ? -1 : 0;
}

/* open-addressing set of inodes: value 1 = seen in a table, 2 = also held by an fd */
static uint64_t *hkeys; static unsigned char *hval; static size_t hmask;
static size_t hslot(uint64_t k) {
    size_t i = (size_t)((k * 0x9E3779B97F4A7C15ull) >> 20) & hmask;
    while (hkeys[i] && hkeys[i] != k) i = (i + 1) & hmask;
    return i;
}

int main(int argc, char **argv) {
    full = argc > 1 && strcmp(argv[1], "--full") == 0;
    procfd = open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (procfd < 0) { perror("/proc"); return 1; }
    for (;;) {
        long n = syscall(SYS_getdents64, procfd, dbuf, sizeof dbuf);
        if (n <= 0) break;
        for (long off = 0; off < n;) {
            struct dirent64 *d = (struct dirent64 *)(dbuf + off);
            off += d->d_reclen;
            if (d->d_name[0] >= '1' && d->d_name[0] <= '9') read_proc(d->d_name);
        }
    }
    /* Each namespace once, through its first pid (the next one if that pid has gone). */
    long nsfail = 0;
    for (size_t i = 0; i < nns; i++) {
        size_t j = nss[i].first; int ok = 0;
        for (; j < nprocs && !ok; j++) {
            if (procs[j].netns != nss[i].ino) continue;
            size_t before = nrows;
            int pid = procs[j].pid;
            if (read_table(pid, "tcp", 1) == 0 && read_table(pid, "tcp6", 1) == 0 &&
                read_table(pid, "udp", 1) == 0 && read_table(pid, "udp6", 1) == 0 &&
                read_table(pid, "dev", 0) == 0) ok = 1;
            else nrows = before;
        }
        if (!ok) nsfail++;
    }
    /* join */
    size_t hsize = 1024;
    while (hsize < nrows * 2) hsize <<= 1;
    hmask = hsize - 1;
    hkeys = calloc(hsize, sizeof *hkeys); hval = calloc(hsize, 1);
    if (!hkeys || !hval) abort();
    for (size_t i = 0; i < nrows; i++) if (rows[i]) { size_t s = hslot(rows[i]); hkeys[s] = rows[i]; hval[s] = 1; }
    long joined = 0, owned = 0;
    for (size_t i = 0; i < nsfd; i++) {
        size_t s = hslot(sfd[i]);
        if (!hkeys[s]) continue;
        joined++;
        if (hval[s] == 1) { hval[s] = 2; owned++; }
    }
    printf("processes=%zu kthreads=%ld vanished=%ld netns=%zu netns_unread=%ld fds=%ld socket_fds=%zu "
           "sockets=%zu joined_fds=%ld owned_sockets=%ld interfaces=%ld cmdline_bytes=%ld\n",
           nprocs, kthreads, vanished, nns, nsfail, fds, nsfd, nrows, joined, owned, ifaces, cmdline_bytes);
    return 0;
}
