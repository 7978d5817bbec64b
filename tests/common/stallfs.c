/* stallfs: a FUSE file system with one executable, /prog (the bytes of SOURCE), that stops
 * answering once TRIGGER exists: every request after that blocks forever, as a dead NFS
 * server or a hostile FUSE daemon would. Single-threaded, no attribute or entry caching, so
 * every stat and open of /prog reaches it.
 *
 *   stallfs SOURCE TRIGGER MOUNTPOINT      (foreground; killing it aborts the mount)
 */
#define FUSE_USE_VERSION 31
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *content;
static size_t content_len;
static const char *trigger;

static void maybe_stall(void) {
    if (access(trigger, F_OK) == 0)
        for (;;)
            pause();
}

static void *fs_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
    (void)conn;
    cfg->attr_timeout = 0;
    cfg->entry_timeout = 0;
    cfg->negative_timeout = 0;
    return NULL;
}

static int fs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
    (void)fi;
    maybe_stall();
    memset(st, 0, sizeof *st);
    if (strcmp(path, "/") == 0) {
        st->st_mode = S_IFDIR | 0755;
        st->st_nlink = 2;
        return 0;
    }
    if (strcmp(path, "/prog") == 0) {
        st->st_mode = S_IFREG | 0755;
        st->st_nlink = 1;
        st->st_size = (off_t)content_len;
        return 0;
    }
    return -ENOENT;
}

static int fs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t off,
                      struct fuse_file_info *fi, enum fuse_readdir_flags flags) {
    (void)off; (void)fi; (void)flags;
    maybe_stall();
    if (strcmp(path, "/") != 0)
        return -ENOENT;
    fill(buf, ".", NULL, 0, 0);
    fill(buf, "..", NULL, 0, 0);
    fill(buf, "prog", NULL, 0, 0);
    return 0;
}

static int fs_open(const char *path, struct fuse_file_info *fi) {
    (void)fi;
    maybe_stall();
    return strcmp(path, "/prog") == 0 ? 0 : -ENOENT;
}

static int fs_read(const char *path, char *buf, size_t size, off_t off,
                   struct fuse_file_info *fi) {
    (void)path; (void)fi;
    maybe_stall();
    if ((size_t)off >= content_len)
        return 0;
    if ((size_t)off + size > content_len)
        size = content_len - (size_t)off;
    memcpy(buf, content + off, size);
    return (int)size;
}

static const struct fuse_operations ops = {
    .init = fs_init,
    .getattr = fs_getattr,
    .readdir = fs_readdir,
    .open = fs_open,
    .read = fs_read,
};

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: stallfs SOURCE TRIGGER MOUNTPOINT\n");
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) { perror(argv[1]); return 1; }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    content = malloc((size_t)n);
    if (!content || fread(content, 1, (size_t)n, f) != (size_t)n) { perror("read"); return 1; }
    fclose(f);
    content_len = (size_t)n;
    trigger = argv[2];
    char *fargs[] = {argv[0], "-f", "-s", argv[3], NULL};
    return fuse_main(4, fargs, &ops, NULL);
}
