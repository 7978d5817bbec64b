/*
 * A stand-in process for aupwatch's integration tests (tests/real_proc.rs).
 *
 * The test copies the compiled binary under a telling name (xmrig, tor,
 * unrealircd, ...), runs it inside a loopback-only network namespace and
 * asks for sockets through the environment:
 *
 *   IMPOSTOR_TCP_LISTEN=9001,9030   listen on these TCP ports
 *   IMPOSTOR_UDP_LISTEN=1194        bind these UDP ports
 *   IMPOSTOR_BIND=127.0.0.1         address to listen on (default 0.0.0.0)
 *   IMPOSTOR_TCP_CONNECT=6667       connect to 127.0.0.1 on these ports
 *                                   (only ever 127.0.0.1)
 *   IMPOSTOR_FORK=2                 fork this many children (which keep the sockets)
 *   IMPOSTOR_BURN=1                 spin on the CPU instead of sleeping
 *
 * The arguments are not read: they exist to be seen in /proc/PID/cmdline.
 * The process (and every child) stays until it is killed, and children die
 * with their parent.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *bind_addr = "0.0.0.0";

static struct sockaddr_in addr_of(const char *ip, int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        fprintf(stderr, "impostor: bad address %s\n", ip);
        exit(2);
    }
    return a;
}

static void tcp_listen(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    struct sockaddr_in a = addr_of(bind_addr, port);
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 16) != 0) {
        perror("impostor: tcp listen");
        exit(3);
    }
}

static void udp_bind(int port) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = addr_of(bind_addr, port);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("impostor: udp bind");
        exit(3);
    }
}

static void tcp_connect(int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = addr_of("127.0.0.1", port);
    if (s < 0 || connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("impostor: tcp connect");
        exit(4);
    }
}

static void each_port(const char *var, void (*fn)(int)) {
    const char *list = getenv(var);
    char *copy, *tok, *save = NULL;
    if (list == NULL || *list == '\0')
        return;
    copy = strdup(list);
    for (tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
        int port = atoi(tok);
        if (port <= 0 || port > 65535) {
            fprintf(stderr, "impostor: bad port %s in %s\n", tok, var);
            exit(2);
        }
        fn(port);
    }
    free(copy);
}

int main(void) {
    const char *b = getenv("IMPOSTOR_BIND");
    const char *f = getenv("IMPOSTOR_FORK");
    int forks = f ? atoi(f) : 0;
    int i;

    if (b != NULL && *b != '\0')
        bind_addr = b;
    each_port("IMPOSTOR_TCP_LISTEN", tcp_listen);
    each_port("IMPOSTOR_UDP_LISTEN", udp_bind);
    each_port("IMPOSTOR_TCP_CONNECT", tcp_connect);

    for (i = 0; i < forks; i++) {
        pid_t child = fork();
        if (child < 0) {
            perror("impostor: fork");
            exit(5);
        }
        if (child == 0) {
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            break;
        }
    }
    printf("impostor ready pid %d\n", (int)getpid());
    fflush(stdout);

    if (getenv("IMPOSTOR_BURN") != NULL) {
        volatile unsigned long spin = 0;
        for (;;)
            spin++;
    }
    for (;;)
        pause();
}
