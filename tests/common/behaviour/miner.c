/* A CPU miner for tests: speaks Stratum to a pool on 127.0.0.1 and burns one core on a
 * stand-in hash loop, submitting a "share" every few million rounds. Like a real miner,
 * its binary carries the protocol's strings (stratum+tcp://, mining.subscribe, ...).
 * Usage: miner PORT */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *POOL_URL = "stratum+tcp://127.0.0.1";

static void say(int fd, const char *line) {
    if (write(fd, line, strlen(line)) < 0) {
        perror("write");
        exit(1);
    }
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 3333;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        perror("connect");
        return 1;
    }
    fprintf(stderr, "mining on %s:%d\n", POOL_URL, port);
    say(fd, "{\"id\":1,\"method\":\"mining.subscribe\",\"params\":[\"testminer/1.0\"]}\n");
    say(fd, "{\"id\":2,\"method\":\"mining.authorize\",\"params\":[\"worker1\",\"x\"]}\n");
    unsigned long long h = 1469598103934665603ULL, rounds = 0;
    char line[256];
    for (;;) {
        h = (h ^ (rounds & 0xff)) * 1099511628211ULL;
        if (++rounds % 50000000ULL == 0) {
            snprintf(line, sizeof line,
                     "{\"id\":4,\"method\":\"mining.submit\",\"params\":[\"worker1\",\"job1\",\"%016llx\"]}\n", h);
            say(fd, line);
        }
    }
}
