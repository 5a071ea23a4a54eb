/* ringport.h: the native C API of libringport_c.
 *
 * A port is a queue of finished operations. Associate descriptors with it
 * under a completion key, post operations on caller-owned memory (which
 * must stay valid until the operation's completion is dequeued, as with
 * Win32 overlapped I/O), and dequeue completions from any number of
 * threads: at most `concurrency` of them run at once, the last to wait is
 * released first. io_uring is used where it can be set up, an epoll
 * emulation otherwise (RINGPORT_BACKEND=uring|epoll forces one).
 *
 * Functions return 0 (or a count) on success and -errno on failure. */
#ifndef RINGPORT_H
#define RINGPORT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct ringport_port ringport_port;

enum {
    RINGPORT_OP_PACKET = 0,
    RINGPORT_OP_RECV = 1,
    RINGPORT_OP_SEND = 2,
    RINGPORT_OP_ACCEPT = 3,
    RINGPORT_OP_CONNECT = 4,
    RINGPORT_OP_READ_AT = 5,
    RINGPORT_OP_WRITE_AT = 6,
};

typedef struct ringport_completion {
    uint64_t key;   /* the descriptor's completion key (a packet's key) */
    void *user;     /* the per-I/O value given when posting */
    int64_t result; /* bytes (packet: its value; accept: the new fd), or -errno */
    uint32_t op;    /* RINGPORT_OP_* */
} ringport_completion;

/* Ports */
ringport_port *ringport_port_new(unsigned concurrency); /* 0: one per CPU; NULL on failure */
int ringport_port_free(ringport_port *port);             /* shuts down, cancels what is in flight */
const char *ringport_port_backend(ringport_port *port);  /* "io_uring" or "epoll" */
unsigned ringport_port_concurrency(ringport_port *port);
unsigned ringport_port_waiting(ringport_port *port); /* threads waiting in a get now */

/* Descriptors: the port owns an associated descriptor; close it with
 * ringport_close (its operations complete as -ECANCELED first). */
int ringport_associate(ringport_port *port, int fd, uint64_t key);
int ringport_close(int fd);
int ringport_cancel(int fd, void *user); /* user NULL: every operation of fd */

/* Packets and dequeuing; timeout_ms < 0 waits forever. ringport_get
 * returns -ETIMEDOUT when nothing came, -EBADF once the port is freed. */
int ringport_post(ringport_port *port, uint64_t key, void *user, size_t value);
int ringport_get(ringport_port *port, ringport_completion *out, int timeout_ms);
int ringport_get_many(ringport_port *port, ringport_completion *out, size_t max, int timeout_ms);

/* Operations on associated descriptors, on caller-owned memory. */
int ringport_recv(int fd, void *buf, size_t len, void *user);
int ringport_send(int fd, const void *buf, size_t len, void *user); /* completes when all is sent */
int ringport_accept(int listen_fd, void *user);
int ringport_connect(int fd, const struct sockaddr *addr, socklen_t len, void *user);
int ringport_read_at(int fd, void *buf, size_t len, uint64_t offset, void *user);
int ringport_write_at(int fd, const void *buf, size_t len, uint64_t offset, void *user);

#ifdef __cplusplus
}
#endif

#endif /* RINGPORT_H */
