/* The native API (ringport.h) over loopback and a file: accept, connect,
 * recv, send, read_at, write_at, get and get_many, cancel, close, packets,
 * and bad arguments answered with -errno.
 * Prints "native: ok (backend NAME)" and exits 0 when every check passed. */
#include <ringport.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHECK(cond)                                                               \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                              \
        }                                                                         \
    } while (0)

static ringport_completion next(ringport_port *port)
{
    ringport_completion c;
    CHECK(ringport_get(port, &c, 10000) == 0);
    return c;
}

int main(void)
{
    ringport_port *port = ringport_port_new(0);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    int l, c, s, f;
    char in[16], path[64];
    ringport_completion cs[8];
    int got = 0, tag_accept, tag_connect, tag_recv, tag_send;

    CHECK(port != NULL && ringport_port_concurrency(port) >= 1);
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    l = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 4) == 0);
    CHECK(getsockname(l, (struct sockaddr *)&a, &len) == 0);
    CHECK(ringport_associate(port, l, 1) == 0);
    CHECK(ringport_associate(port, l, 1) == -EEXIST);
    c = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(ringport_associate(port, c, 2) == 0);

    CHECK(ringport_accept(l, &tag_accept) == 0);
    CHECK(ringport_connect(c, (struct sockaddr *)&a, sizeof a, &tag_connect) == 0);
    s = -1;
    for (int i = 0; i < 2; i++) {
        ringport_completion x = next(port);
        if (x.user == &tag_accept) {
            CHECK(x.op == RINGPORT_OP_ACCEPT && x.key == 1 && x.result >= 0);
            s = (int)x.result;
        } else {
            CHECK(x.user == &tag_connect && x.op == RINGPORT_OP_CONNECT && x.result == 0 && x.key == 2);
        }
    }
    CHECK(s >= 0 && ringport_associate(port, s, 3) == 0);

    CHECK(ringport_recv(s, in, sizeof in, &tag_recv) == 0);
    CHECK(ringport_send(c, "native", 6, &tag_send) == 0);
    while (got < 2) {
        int n = ringport_get_many(port, cs + got, 8 - got, 10000);
        CHECK(n > 0);
        got += n;
    }
    for (int i = 0; i < 2; i++) {
        if (cs[i].user == &tag_recv)
            CHECK(cs[i].op == RINGPORT_OP_RECV && cs[i].result == 6 && cs[i].key == 3);
        else
            CHECK(cs[i].user == &tag_send && cs[i].op == RINGPORT_OP_SEND && cs[i].result == 6);
    }
    CHECK(memcmp(in, "native", 6) == 0);

    /* Cancel, and close with a receive in flight. */
    CHECK(ringport_recv(s, in, sizeof in, &tag_recv) == 0);
    CHECK(ringport_cancel(s, &tag_send) == -ENOENT);
    CHECK(ringport_cancel(s, &tag_recv) == 0);
    {
        ringport_completion x = next(port);
        CHECK(x.user == &tag_recv && x.result == -ECANCELED);
    }
    CHECK(ringport_recv(s, in, sizeof in, &tag_recv) == 0);
    CHECK(ringport_close(s) == 0);
    {
        ringport_completion x = next(port);
        CHECK(x.user == &tag_recv && x.result == -ECANCELED);
    }

    /* Files at offsets. */
    snprintf(path, sizeof path, "/tmp/ringport-c-native-%d", (int)getpid());
    f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    CHECK(f >= 0 && ringport_associate(port, f, 4) == 0);
    CHECK(ringport_write_at(f, "0123456789", 10, 100, NULL) == 0);
    {
        ringport_completion x = next(port);
        CHECK(x.op == RINGPORT_OP_WRITE_AT && x.result == 10 && x.key == 4);
    }
    CHECK(ringport_read_at(f, in, 4, 106, NULL) == 0);
    {
        ringport_completion x = next(port);
        CHECK(x.op == RINGPORT_OP_READ_AT && x.result == 4 && memcmp(in, "6789", 4) == 0);
    }
    CHECK(ringport_close(f) == 0);
    unlink(path);

    /* Packets, timeouts, bad arguments. */
    CHECK(ringport_post(port, 9, &tag_send, 77) == 0);
    {
        ringport_completion x = next(port);
        CHECK(x.op == RINGPORT_OP_PACKET && x.key == 9 && x.user == &tag_send && x.result == 77);
    }
    CHECK(ringport_get(port, cs, 0) == -ETIMEDOUT);
    CHECK(ringport_get(port, NULL, 0) == -EINVAL);
    CHECK(ringport_get((ringport_port *)(uintptr_t)0x5555555555ULL, cs, 0) == -EBADF);
    CHECK(ringport_get_many(port, cs, 0, 0) == -EINVAL);
    CHECK(ringport_recv(123456, in, sizeof in, NULL) == -EBADF);
    CHECK(ringport_recv(c, NULL, 4, NULL) == -EINVAL);
    CHECK(ringport_associate(port, 123456, 0) == -EBADF);
    CHECK(ringport_port_backend(NULL) == NULL);
    CHECK(ringport_close(c) == 0 && ringport_close(l) == 0);
    printf("native: ok (backend %s)\n", ringport_port_backend(port));
    CHECK(ringport_port_free(port) == 0);
    CHECK(ringport_get(port, cs, 0) == -EBADF);
    return 0;
}
