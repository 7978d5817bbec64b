/* load.c - process/socket load for the aupwatch benchmark (loopback only).
 *
 *   load master N M READYFILE BINDIR TIMEOUT_SECS
 *
 * Must run inside a network namespace that has only the loopback interface (bench/run
 * starts it with `nsenter --net=/run/netns/<ns>`); the master refuses to start in the
 * initial network namespace or when any interface other than `lo` exists.  Every socket
 * is bound to / connects to 127.0.0.1 or ::1, nothing else.
 *
 * The master forks N workers.  Each worker execs BINDIR/<name> (a symlink to this binary,
 * so comm is java / nginx / postgres / python3 / node / ...) with a realistic argv, then
 * creates its share of the M sockets and sleeps.  Socket shares: every third worker is a
 * holder; worker 0 (a "big server") holds M/10 (capped by its fd limit), the other holders
 * share the rest evenly; the remaining workers hold no socket (like most processes on a
 * real host).  Per holder: ~5% TCP listeners (at least one), ~10% UDP sockets (every other
 * one connected to its neighbour; no datagram is ever sent), the rest established TCP
 * pairs (client end + accepted end, both in the holder).  About a third is IPv6 (::1).
 * So the namespace's tcp+tcp6+udp+udp6 tables hold exactly M rows.
 *
 * When every worker has reported, the master writes READYFILE atomically:
 *   line 1: "ok <failed-workers>"   line 2: master pid   then one worker pid per line.
 * It then waits.  SIGTERM / SIGINT / SIGHUP, TIMEOUT_SECS (alarm) elapsing, or its parent
 * (bench/run) dying (PR_SET_PDEATHSIG): SIGKILL every worker by pid, reap them, exit.  Workers die with the master (PR_SET_PDEATHSIG)
 * and have their own alarm at TIMEOUT_SECS + 60 as a second bound.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int fail(const char *what) {
    char b[160];
    int n = snprintf(b, sizeof b, "0 %s: %s\n", what, strerror(errno));
    if (write(3, b, (size_t)n) < 0) { /* nothing to do */ }
    return 1;
}

static int bind_lo(int fd, int v6) {
    if (v6) {
        struct sockaddr_in6 a = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
        return bind(fd, (struct sockaddr *)&a, sizeof a);
    }
    struct sockaddr_in a = { .sin_family = AF_INET };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return bind(fd, (struct sockaddr *)&a, sizeof a);
}

/* worker: AUPBENCH_Q = "wid,listeners,pairs,udp,timeout" */
static int worker(const char *q) {
    int wid, nl, np, nu, timeout;
    if (sscanf(q, "%d,%d,%d,%d,%d", &wid, &nl, &np, &nu, &timeout) != 5) return 2;
    alarm((unsigned)timeout + 60);
    int *lfd = calloc((size_t)(nl > 0 ? nl : 1), sizeof *lfd);
    int *lv6 = calloc((size_t)(nl > 0 ? nl : 1), sizeof *lv6);
    if (!lfd || !lv6) return fail("calloc");
    for (int j = 0; j < nl; j++) {
        int v6 = (wid / 3 + j) % 3 == 2, one = 1;
        int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
        if (fd < 0) return fail("socket(listener)");
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind_lo(fd, v6) < 0) return fail("bind(listener)");
        if (listen(fd, 4096) < 0) return fail("listen");
        lfd[j] = fd; lv6[j] = v6;
    }
    for (int k = 0; k < np; k++) {
        int j = k % nl;
        struct sockaddr_storage ss; socklen_t sl = sizeof ss;
        if (getsockname(lfd[j], (struct sockaddr *)&ss, &sl) < 0) return fail("getsockname");
        int c = socket(lv6[j] ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
        if (c < 0) return fail("socket(client)");
        if (connect(c, (struct sockaddr *)&ss, sl) < 0) return fail("connect");
        if (accept(lfd[j], NULL, NULL) < 0) return fail("accept");
    }
    int prev = -1, prev6 = -1;
    for (int k = 0; k < nu; k++) {
        int v6 = (wid / 3 + k) % 3 == 2;
        int u = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM, 0);
        if (u < 0) return fail("socket(udp)");
        if (bind_lo(u, v6) < 0) return fail("bind(udp)");
        if ((k & 1) && prev >= 0 && prev6 == v6) {
            struct sockaddr_storage ss; socklen_t sl = sizeof ss;
            if (getsockname(prev, (struct sockaddr *)&ss, &sl) < 0 ||
                connect(u, (struct sockaddr *)&ss, sl) < 0) return fail("connect(udp)");
        }
        prev = u; prev6 = v6;
    }
    free(lfd); free(lv6);
    if (write(3, "1\n", 2) != 2) return 1;
    close(3);
    for (;;) pause();
}

static volatile sig_atomic_t stop_flag;
static void on_stop(int s) { (void)s; stop_flag = 1; }

/* Refuse to run anywhere but a private network namespace whose only interface is lo. */
static int check_namespace(void) {
    char self[64] = "", path[64];
    if (readlink("/proc/self/ns/net", self, sizeof self - 1) <= 0) {
        fprintf(stderr, "load: cannot read /proc/self/ns/net\n"); return -1;
    }
    /* Not the namespace of pid 1 nor of the parent (bench/run, which stays in the host
     * namespace), when those links are readable; and in any case only lo (below). */
    int refs[2] = { 1, (int)getppid() };
    for (int i = 0; i < 2; i++) {
        char other[64] = "";
        snprintf(path, sizeof path, "/proc/%d/ns/net", refs[i]);
        if (readlink(path, other, sizeof other - 1) > 0 && strcmp(self, other) == 0) {
            fprintf(stderr, "load: refusing to run in the network namespace of pid %d (%s)\n", refs[i], self);
            return -1;
        }
    }
    FILE *f = fopen("/proc/self/net/dev", "r");
    if (!f) { perror("load: /proc/self/net/dev"); return -1; }
    char line[512]; int n = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        if (++n <= 2) continue;                           /* two header lines */
        char *p = line; while (*p == ' ') p++;
        char *c = strchr(p, ':'); if (!c) continue; *c = 0;
        if (strcmp(p, "lo") != 0) { fprintf(stderr, "load: interface %s present; only lo allowed\n", p); bad = 1; }
    }
    fclose(f);
    return bad ? -1 : 0;
}

static const char *names[] = { "java", "nginx", "postgres", "python3", "node", "sshd", "bash", "cron" };
#define NKINDS 8

static int build_argv(int w, char **av, char bufs[][640], const char *jars) {
    int ac = 0;
    switch (w % NKINDS) {
    case 0:
        av[ac++] = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java"; av[ac++] = "-Xms512m"; av[ac++] = "-Xmx4g";
        av[ac++] = "-XX:+UseG1GC"; av[ac++] = "-XX:MaxGCPauseMillis=200";
        snprintf(bufs[0], 640, "-Dapp.instance=billing-%05d", w); av[ac++] = bufs[0];
        av[ac++] = "-Dlogging.config=/etc/billing/logback.xml"; av[ac++] = "-cp"; av[ac++] = (char *)jars;
        av[ac++] = "com.example.billing.Application";
        snprintf(bufs[1], 640, "--server.port=%d", 10000 + w % 50000); av[ac++] = bufs[1];
        break;
    case 1: av[ac++] = "nginx: worker process"; break;
    case 2:
        snprintf(bufs[0], 640, "postgres: 15/main: app appdb 127.0.0.1(%d) idle", 20000 + w % 40000);
        av[ac++] = bufs[0]; break;
    case 3:
        av[ac++] = "/usr/bin/python3"; av[ac++] = "/srv/api/venv/bin/gunicorn"; av[ac++] = "--workers"; av[ac++] = "4";
        snprintf(bufs[0], 640, "--bind=127.0.0.1:%d", 8000 + w % 50000); av[ac++] = bufs[0];
        av[ac++] = "--timeout"; av[ac++] = "60"; av[ac++] = "--access-logfile"; av[ac++] = "-"; av[ac++] = "api.wsgi:app";
        break;
    case 4:
        av[ac++] = "node"; av[ac++] = "--max-old-space-size=2048"; av[ac++] = "/srv/web/node_modules/.bin/next";
        av[ac++] = "start"; av[ac++] = "-p"; snprintf(bufs[0], 640, "%d", 3000 + w % 50000); av[ac++] = bufs[0];
        break;
    case 5: snprintf(bufs[0], 640, "sshd: deploy%d [priv]", w % 100); av[ac++] = bufs[0]; break;
    case 6: av[ac++] = "/bin/bash"; av[ac++] = "-c"; av[ac++] = "while sleep 60; do /usr/local/bin/rotate-logs --keep 7; done"; break;
    default: av[ac++] = "/usr/sbin/cron"; av[ac++] = "-f"; break;
    }
    av[ac] = NULL;
    return ac;
}

int main(int argc, char **argv) {
    const char *q = getenv("AUPBENCH_Q");
    if (q) return worker(q);
    if (argc != 7 || strcmp(argv[1], "master") != 0) {
        fprintf(stderr, "usage: load master N M READYFILE BINDIR TIMEOUT_SECS\n");
        return 2;
    }
    int N = atoi(argv[2]); long M = atol(argv[3]); int timeout = atoi(argv[6]);
    const char *readyfile = argv[4], *bindir = argv[5];
    if (N < 1 || M < 0 || timeout < 1) { fprintf(stderr, "load: bad N/M/timeout\n"); return 2; }
    struct sigaction sa = { .sa_handler = on_stop };
    sigaction(SIGTERM, &sa, NULL); sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL); sigaction(SIGALRM, &sa, NULL);
    alarm((unsigned)timeout);
    if (check_namespace() < 0) return 3;
    /* Die with bench/run (our parent, through nsenter's exec): SIGTERM -> the clean stop below. */
    pid_t parent = getppid();
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) return 4;

    /* fds: soft limit up to the hard limit (raising the hard limit needs CAP_SYS_RESOURCE). */
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    long fdcap = rl.rlim_cur == RLIM_INFINITY ? 1L << 20 : (long)rl.rlim_cur - 32;

    /* Per-namespace sysctl: the widest ephemeral port range (the host's is untouched). */
    int pr = open("/proc/sys/net/ipv4/ip_local_port_range", O_WRONLY);
    if (pr >= 0) { if (write(pr, "1024 65535", 10) < 0) perror("load: ip_local_port_range"); close(pr); }

    int H = N >= 3 ? (N + 2) / 3 : 1;                      /* holders: workers 0, 3, 6, ... */
    long big = H > 1 ? M / 10 : M;
    if (big > fdcap) big = fdcap;
    long rest = M - big;
    if (H > 1 && (rest + H - 2) / (H - 1) > fdcap) {
        fprintf(stderr, "load: %ld sockets per holder exceed the fd limit %ld\n", rest / (H - 1), fdcap);
        return 2;
    }

    char *jars = malloc(8192);
    jars[0] = 0;
    for (int j = 0; j < 48; j++) {
        char t[160];
        snprintf(t, sizeof t, "%s/opt/billing/lib/%s-%d.%d.%d.jar", j ? ":" : "",
                 (const char *[]){ "spring-core", "jackson-databind", "netty-handler", "hikaricp", "slf4j-api", "guava" }[j % 6],
                 1 + j % 7, j % 13, j);
        strcat(jars, t);
    }

    pid_t *pids = calloc((size_t)N, sizeof *pids);
    int pfd[2];
    if (!pids || pipe2(pfd, O_CLOEXEC) < 0) { perror("load: pipe"); return 1; }
    pid_t master = getpid();
    long assigned = 0;
    int started = 0;
    for (int w = 0; w < N && !stop_flag; w++) {
        long s = 0;
        if (w == 0) s = big;
        else if (w % 3 == 0 && H > 1) {
            int h = w / 3;                                   /* 1 .. H-1 */
            s = rest / (H - 1) + ((h - 1) < rest % (H - 1) ? 1 : 0);
        }
        long nl = 0, nu = 0, np = 0;
        if (s > 0) {
            nl = (s * 5 + 50) / 100; if (nl < 1) nl = 1;
            nu = (s * 10 + 50) / 100;
            if (nl + nu > s) nu = s - nl;
            np = (s - nl - nu) / 2;
            nu += (s - nl - nu) % 2;                         /* the odd socket is a UDP one */
        }
        assigned += nl + nu + 2 * np;
        char qbuf[128], path[600], bufs[2][640];
        snprintf(qbuf, sizeof qbuf, "%d,%ld,%ld,%ld,%d", w, nl, np, nu, timeout);
        snprintf(path, sizeof path, "%s/%s", bindir, names[w % NKINDS]);
        char *av[24];
        build_argv(w, av, bufs, jars);
        pid_t p = fork();
        if (p < 0) { perror("load: fork"); break; }
        if (p == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != master) _exit(1);
            signal(SIGTERM, SIG_DFL); signal(SIGINT, SIG_DFL); signal(SIGHUP, SIG_DFL); signal(SIGALRM, SIG_DFL);
            int dn = open("/dev/null", O_RDWR);
            dup2(dn, 0); dup2(dn, 1); dup2(dn, 2);
            if (dn > 2) close(dn);
            dup2(pfd[1], 3);                                 /* dup2 clears O_CLOEXEC on fd 3 */
            setenv("AUPBENCH_Q", qbuf, 1);
            execv(path, av);
            _exit(127);
        }
        pids[w] = p;
        started++;
    }
    close(pfd[1]);
    if (assigned != M && started == N)
        fprintf(stderr, "load: warning: assigned %ld sockets, asked for %ld\n", assigned, M);

    /* Readiness: one line per worker ("1" or "0 <why>"); EOF when all have written and closed. */
    int ready = 0, failed = 0;
    char buf[4096]; size_t have = 0;
    while (ready + failed < started && !stop_flag) {
        ssize_t r = read(pfd[0], buf + have, sizeof buf - 1 - have);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        have += (size_t)r; buf[have] = 0;
        char *line = buf, *nl;
        while ((nl = strchr(line, '\n'))) {
            *nl = 0;
            if (line[0] == '1') ready++;
            else { failed++; if (failed <= 5) fprintf(stderr, "load: worker failed: %s\n", line + 1); }
            line = nl + 1;
        }
        have = strlen(line); memmove(buf, line, have);
    }
    if (started < N) failed += N - started;
    if (ready + failed < N) failed = N - ready;              /* workers that died without a word */

    if (!stop_flag) {
        char tmp[700];
        snprintf(tmp, sizeof tmp, "%s.tmp", readyfile);
        FILE *f = fopen(tmp, "w");
        if (!f) { perror("load: readyfile"); stop_flag = 1; }
        else {
            fprintf(f, "ok %d\n%d\n", failed, (int)master);
            for (int w = 0; w < N; w++) if (pids[w]) fprintf(f, "%d\n", (int)pids[w]);
            fclose(f);
            rename(tmp, readyfile);
            fprintf(stderr, "load: N=%d M=%ld ready=%d failed=%d\n", N, M, ready, failed);
        }
    }
    while (!stop_flag) pause();
    for (int w = 0; w < N; w++) if (pids[w]) kill(pids[w], SIGKILL);
    while (wait(NULL) > 0 || errno == EINTR) ;
    return 0;
}
