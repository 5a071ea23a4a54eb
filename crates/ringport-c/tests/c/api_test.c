/* The Win32 calls' return conventions over real loopback sockets and files:
 * timeouts, packets, a reset peer, cancels, closesocket with a receive in
 * flight, AcceptEx + GetAcceptExSockaddrs with first data, ConnectEx,
 * several WSABUFs, GetQueuedCompletionStatusEx, ReadFile/WriteFile at
 * offsets, datagrams (WSASendTo/WSARecvFrom), a receive into two WSABUFs,
 * ReadFile/WriteFile on a pipe, and bad arguments (NULL pointers, unknown handles, closed
 * sockets) failing with the right code instead of crashing.
 * Prints "api: ok (backend NAME)" and exits 0 when every check passed. */
#include <winsock2.h>
#include <mswsock.h>
#include <windows.h>
#include <ringport.h>
#include <unistd.h>
#include <fcntl.h>
#include <sched.h>
#include "check.h"

static HANDLE port;

/* A listener on 127.0.0.1, and its port. */
static SOCKET listener(unsigned short *port_out)
{
    SOCKET l = WSASocket(AF_INET, SOCK_STREAM, 0, NULL, 0, WSA_FLAG_OVERLAPPED);
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(l != INVALID_SOCKET);
    CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(listen(l, 16) == 0);
    CHECK(getsockname(l, (struct sockaddr *)&a, &len) == 0);
    *port_out = ntohs(a.sin_port);
    return l;
}

static SOCKET connect_to(unsigned short p)
{
    SOCKET c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(p);
    CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0);
    return c;
}

/* A connected pair: the client (plain) and the server side, associated. */
static void pair(SOCKET *client, SOCKET *server, ULONG_PTR key)
{
    unsigned short p;
    SOCKET l = listener(&p);
    *client = connect_to(p);
    *server = accept(l, NULL, NULL);
    CHECK(*server != INVALID_SOCKET);
    closesocket(l);
    CHECK(CreateIoCompletionPort((HANDLE)*server, port, key, 0) == port);
}

typedef struct {
    OVERLAPPED ov;
    WSABUF buf;
    char data[256];
} IO;

static void post_recv(SOCKET s, IO *io)
{
    DWORD flags = 0;
    memset(io, 0, sizeof *io);
    io->buf.buf = io->data;
    io->buf.len = sizeof io->data;
    CHECK(WSARecv(s, &io->buf, 1, NULL, &flags, &io->ov, NULL) == SOCKET_ERROR);
    CHECK(WSAGetLastError() == WSA_IO_PENDING);
    CHECK(!HasOverlappedIoCompleted(&io->ov));
}

static void timeouts_and_packets(void)
{
    DWORD n = 7;
    ULONG_PTR key = 7;
    LPOVERLAPPED ov = (LPOVERLAPPED)&n;
    OVERLAPPED mine;
    OVERLAPPED_ENTRY e[8];
    ULONG got = 0;
    int i;

    CHECK(!GetQueuedCompletionStatus(port, &n, &key, &ov, 0));
    CHECK(ov == NULL && GetLastError() == WAIT_TIMEOUT);
    CHECK(!GetQueuedCompletionStatus(port, &n, &key, &ov, 20));
    CHECK(ov == NULL && GetLastError() == WAIT_TIMEOUT);

    CHECK(PostQueuedCompletionStatus(port, 42, 0xABCDEF0123ULL, &mine));
    CHECK(GetQueuedCompletionStatus(port, &n, &key, &ov, INFINITE));
    CHECK(n == 42 && key == 0xABCDEF0123ULL && ov == &mine);

    for (i = 0; i < 5; i++)
        CHECK(PostQueuedCompletionStatus(port, i, i, NULL));
    CHECK(GetQueuedCompletionStatusEx(port, e, 8, &got, INFINITE, FALSE));
    CHECK(got >= 1);
    while (got < 5) {
        ULONG more = 0;
        CHECK(GetQueuedCompletionStatusEx(port, e + got, 8 - got, &more, INFINITE, FALSE));
        got += more;
    }
    CHECK(got == 5);
    for (i = 0; i < 5; i++)
        CHECK(e[i].dwNumberOfBytesTransferred == (DWORD)e[i].lpCompletionKey);
    CHECK(!GetQueuedCompletionStatusEx(port, e, 8, &got, 0, FALSE) && GetLastError() == WAIT_TIMEOUT);
}

static void reset_peer_is_netname_deleted(void)
{
    SOCKET c, s;
    IO io;
    DWORD n;
    ULONG_PTR key;
    LPOVERLAPPED ov;
    struct linger lg = {1, 0};

    pair(&c, &s, 11);
    post_recv(s, &io);
    CHECK(setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) == 0);
    close(c); /* RST */
    CHECK(!GetQueuedCompletionStatus(port, &n, &key, &ov, 10000));
    CHECK(ov == &io.ov && key == 11);
    CHECK(GetLastError() == ERROR_NETNAME_DELETED);
    CHECK(HasOverlappedIoCompleted(&io.ov));
    CHECK(closesocket(s) == 0);
}

static void orderly_close_is_zero_bytes(void)
{
    SOCKET c, s;
    IO io;
    DWORD n = 99;
    ULONG_PTR key;
    LPOVERLAPPED ov;

    pair(&c, &s, 12);
    post_recv(s, &io);
    CHECK(send(c, "abc", 3, 0) == 3);
    CHECK(GetQueuedCompletionStatus(port, &n, &key, &ov, 10000));
    CHECK(ov == &io.ov && key == 12 && n == 3 && memcmp(io.data, "abc", 3) == 0);
    CHECK(io.ov.InternalHigh == 3 && io.ov.Internal == 0);
    post_recv(s, &io);
    close(c); /* FIN */
    CHECK(GetQueuedCompletionStatus(port, &n, &key, &ov, 10000));
    CHECK(ov == &io.ov && n == 0);
    CHECK(closesocket(s) == 0);
}

static void cancels_are_operation_aborted(void)
{
    SOCKET c, s;
    IO io, other;
    DWORD n;
    ULONG_PTR key;
    LPOVERLAPPED ov;
    int fd;

    pair(&c, &s, 13);
    post_recv(s, &io);
    CHECK(!CancelIoEx((HANDLE)s, &other.ov) && GetLastError() == ERROR_NOT_FOUND);
    CHECK(CancelIoEx((HANDLE)s, &io.ov));
    CHECK(!GetQueuedCompletionStatus(port, &n, &key, &ov, 10000));
    CHECK(ov == &io.ov && GetLastError() == ERROR_OPERATION_ABORTED);

    /* The socket still works after a cancel. */
    post_recv(s, &io);
    CHECK(send(c, "x", 1, 0) == 1);
    CHECK(GetQueuedCompletionStatus(port, &n, &key, &ov, 10000) && n == 1);

    /* closesocket with a receive in flight: it completes as aborted, and
     * the descriptor is released only after that. */
    post_recv(s, &io);
    fd = (int)s;
    CHECK(closesocket(s) == 0);
    CHECK(!GetQueuedCompletionStatus(port, &n, &key, &ov, 10000));
    CHECK(ov == &io.ov && GetLastError() == ERROR_OPERATION_ABORTED);
    /* A second close of the same socket fails (once the port let it go). */
    {
        int tries = 0;
        while (fcntl(fd, F_GETFD) >= 0 && tries++ < 100000)
            sched_yield();
        CHECK(fcntl(fd, F_GETFD) < 0);
    }
    CHECK(closesocket(s) == SOCKET_ERROR && WSAGetLastError() == WSAENOTSOCK);
    close(c);
}

static void accept_ex_connect_ex(void)
{
    unsigned short p;
    SOCKET l = listener(&p), a = WSASocket(AF_INET, SOCK_STREAM, 0, NULL, 0, WSA_FLAG_OVERLAPPED), c;
    GUID gaccept = WSAID_ACCEPTEX, gaddrs = WSAID_GETACCEPTEXSOCKADDRS, gconnect = WSAID_CONNECTEX;
    LPFN_ACCEPTEX acceptex = NULL;
    LPFN_GETACCEPTEXSOCKADDRS addrs = NULL;
    LPFN_CONNECTEX connectex = NULL;
    DWORD bytes, n;
    ULONG_PTR key;
    LPOVERLAPPED ov;
    IO io, cio;
    struct sockaddr_in *local, *remote, here, to;
    int llen, rlen;
    socklen_t hlen = sizeof here;
    const int room = sizeof(SOCKADDR_IN) + 16;

    CHECK(WSAIoctl(l, SIO_GET_EXTENSION_FUNCTION_POINTER, &gaccept, sizeof gaccept, &acceptex, sizeof acceptex,
                   &bytes, NULL, NULL) == 0 && acceptex == AcceptEx && bytes == sizeof acceptex);
    CHECK(WSAIoctl(l, SIO_GET_EXTENSION_FUNCTION_POINTER, &gaddrs, sizeof gaddrs, &addrs, sizeof addrs, &bytes,
                   NULL, NULL) == 0 && addrs == GetAcceptExSockaddrs);
    CHECK(WSAIoctl(l, SIO_GET_EXTENSION_FUNCTION_POINTER, &gconnect, sizeof gconnect, &connectex,
                   sizeof connectex, &bytes, NULL, NULL) == 0 && connectex == ConnectEx);
    CHECK(CreateIoCompletionPort((HANDLE)l, port, 21, 0) == port);

    memset(&io, 0, sizeof io);
    CHECK(!acceptex(l, a, io.data, sizeof io.data - 2 * room, room, room, &bytes, &io.ov));
    CHECK(WSAGetLastError() == ERROR_IO_PENDING);

    /* ConnectEx of an unconnected, associated socket. */
    c = WSASocket(AF_INET, SOCK_STREAM, 0, NULL, 0, WSA_FLAG_OVERLAPPED);
    CHECK(CreateIoCompletionPort((HANDLE)c, port, 22, 0) == port);
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    to.sin_port = htons(p);
    memset(&cio, 0, sizeof cio);
    CHECK(!connectex(c, (struct sockaddr *)&to, sizeof to, NULL, 0, NULL, &cio.ov));
    CHECK(WSAGetLastError() == ERROR_IO_PENDING);
    CHECK(GetQueuedCompletionStatus(port, &n, &key, &ov, 10000));
    CHECK(ov == &cio.ov && key == 22);

    /* The accept completes with the first data only. */
    cio.buf.buf = cio.data;
    strcpy(cio.data, "first!");
    cio.buf.len = 6;
    memset(&cio.ov, 0, sizeof cio.ov);
    CHECK(WSASend(c, &cio.buf, 1, NULL, 0, &cio.ov, NULL) == SOCKET_ERROR && WSAGetLastError() == WSA_IO_PENDING);
    {
        int seen = 0;
        while (seen != 3) {
            CHECK(GetQueuedCompletionStatus(port, &n, &key, &ov, 10000));
            if (ov == &cio.ov) {
                CHECK(n == 6 && key == 22);
                seen |= 1;
            } else {
                CHECK(ov == &io.ov && key == 21 && n == 6);
                seen |= 2;
            }
        }
    }
    CHECK(memcmp(io.data, "first!", 6) == 0);
    addrs(io.data, sizeof io.data - 2 * room, room, room, (struct sockaddr **)&local, &llen,
          (struct sockaddr **)&remote, &rlen);
    CHECK(llen == sizeof(struct sockaddr_in) && rlen == sizeof(struct sockaddr_in));
    CHECK(local->sin_port == htons(p));
    CHECK(getsockname(c, (struct sockaddr *)&here, &hlen) == 0);
    CHECK(remote->sin_port == here.sin_port && remote->sin_addr.s_addr == here.sin_addr.s_addr);
    /* The accept socket is the connection now: associate it and echo. */
    CHECK(CreateIoCompletionPort((HANDLE)a, port, 23, 0) == port);
    {
        WSABUF three[3];
        char got[16];
        int have = 0;
        three[0].buf = (char *)"one,";
        three[0].len = 4;
        three[1].buf = (char *)"two,";
        three[1].len = 4;
        three[2].buf = (char *)"three";
        three[2].len = 5;
        memset(&io.ov, 0, sizeof io.ov);
        CHECK(WSASend(a, three, 3, NULL, 0, &io.ov, NULL) == SOCKET_ERROR && WSAGetLastError() == WSA_IO_PENDING);
        CHECK(GetQueuedCompletionStatus(port, &n, &key, &ov, 10000) && ov == &io.ov && n == 13 && key == 23);
        while (have < 13) {
            int r = recv(c, got + have, sizeof got - have, 0);
            CHECK(r > 0);
            have += r;
        }
        CHECK(memcmp(got, "one,two,three", 13) == 0);
    }
    CHECK(closesocket(a) == 0 && closesocket(c) == 0);

    /* ConnectEx to a port nobody listens on: ERROR_CONNECTION_REFUSED. */
    CHECK(closesocket(l) == 0);
    c = WSASocket(AF_INET, SOCK_STREAM, 0, NULL, 0, WSA_FLAG_OVERLAPPED);
    CHECK(CreateIoCompletionPort((HANDLE)c, port, 24, 0) == port);
    memset(&cio.ov, 0, sizeof cio.ov);
    CHECK(!ConnectEx(c, (struct sockaddr *)&to, sizeof to, NULL, 0, NULL, &cio.ov));
    CHECK(!GetQueuedCompletionStatus(port, &n, &key, &ov, 10000));
    CHECK(ov == &cio.ov && GetLastError() == ERROR_CONNECTION_REFUSED);
    CHECK(closesocket(c) == 0);
}

/* Closing the accept socket of an AcceptEx in flight cancels the accept
 * (and closes the socket once it completed); closing the listener cancels
 * the accepts posted on it. */
static void closing_sockets_of_pending_accepts(void)
{
    unsigned short p;
    SOCKET l = listener(&p);
    SOCKET a1 = WSASocket(AF_INET, SOCK_STREAM, 0, NULL, 0, WSA_FLAG_OVERLAPPED);
    SOCKET a2 = WSASocket(AF_INET, SOCK_STREAM, 0, NULL, 0, WSA_FLAG_OVERLAPPED);
    IO io1, io2;
    DWORD n;
    ULONG_PTR key;
    LPOVERLAPPED ov;
    const int room = sizeof(SOCKADDR_IN) + 16;
    int tries = 0;

    CHECK(CreateIoCompletionPort((HANDLE)l, port, 51, 0) == port);
    memset(&io1, 0, sizeof io1);
    memset(&io2, 0, sizeof io2);
    CHECK(!AcceptEx(l, a1, io1.data, 0, room, room, &n, &io1.ov) && WSAGetLastError() == ERROR_IO_PENDING);
    /* The same accept socket cannot be given to a second AcceptEx. */
    CHECK(!AcceptEx(l, a1, io2.data, 0, room, room, &n, &io2.ov) && WSAGetLastError() == WSAEINVAL);
    CHECK(!AcceptEx(l, a2, io2.data, 0, room, room, &n, &io2.ov) && WSAGetLastError() == ERROR_IO_PENDING);

    CHECK(closesocket(a1) == 0);
    CHECK(!GetQueuedCompletionStatus(port, &n, &key, &ov, 10000));
    CHECK(ov == &io1.ov && key == 51 && GetLastError() == ERROR_OPERATION_ABORTED);
    CHECK(fcntl((int)a1, F_GETFD) < 0); /* closed by then */

    CHECK(closesocket(l) == 0);
    CHECK(!GetQueuedCompletionStatus(port, &n, &key, &ov, 10000));
    CHECK(ov == &io2.ov && GetLastError() == ERROR_OPERATION_ABORTED);
    while (fcntl((int)l, F_GETFD) >= 0 && tries++ < 100000)
        sched_yield();
    CHECK(fcntl((int)l, F_GETFD) < 0);
    CHECK(closesocket(a2) == 0);
}

static HANDLE closing_port;

static DWORD WINAPI wait_on_closing_port(LPVOID arg)
{
    DWORD n;
    ULONG_PTR key;
    LPOVERLAPPED ov = (LPOVERLAPPED)arg;
    BOOL ok = GetQueuedCompletionStatus(closing_port, &n, &key, &ov, 20000);
    return !ok && ov == NULL && GetLastError() == ERROR_ABANDONED_WAIT_0 ? 0 : 1;
}

/* CloseHandle on a port releases the threads waiting on it. */
static void closing_a_port_releases_its_waiters(void)
{
    HANDLE t;
    DWORD code = 99;
    long tries = 0;
    closing_port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
    CHECK((t = CreateThread(NULL, 0, wait_on_closing_port, &code, 0, NULL)) != NULL);
    while (ringport_port_waiting((ringport_port *)closing_port) < 1) {
        CHECK(++tries < 50000000);
        sched_yield();
    }
    CHECK(CloseHandle(closing_port));
    CHECK(WaitForSingleObject(t, 20000) == WAIT_OBJECT_0);
    CHECK(GetExitCodeThread(t, &code) && code == 0);
    CHECK(CloseHandle(t));
}

/* WSASendTo / WSARecvFrom over UDP: the sender's address comes back in
 * lpFrom; a datagram longer than the buffer is ERROR_MORE_DATA. */
static void datagrams(void)
{
    struct sockaddr_in a, b, from;
    socklen_t len = sizeof a;
    int fromlen = sizeof from;
    SOCKET u1 = WSASocket(AF_INET, SOCK_DGRAM, 0, NULL, 0, WSA_FLAG_OVERLAPPED);
    SOCKET u2 = WSASocket(AF_INET, SOCK_DGRAM, 0, NULL, 0, WSA_FLAG_OVERLAPPED);
    IO rio, sio;
    DWORD n, flags = 0;
    ULONG_PTR key;
    LPOVERLAPPED ov;
    int seen = 0;

    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    b = a;
    CHECK(bind(u1, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(u1, (struct sockaddr *)&a, &len) == 0);
    len = sizeof b;
    CHECK(bind(u2, (struct sockaddr *)&b, sizeof b) == 0 && getsockname(u2, (struct sockaddr *)&b, &len) == 0);
    CHECK(CreateIoCompletionPort((HANDLE)u1, port, 61, 0) == port);
    CHECK(CreateIoCompletionPort((HANDLE)u2, port, 62, 0) == port);

    memset(&rio, 0, sizeof rio);
    rio.buf.buf = rio.data;
    rio.buf.len = sizeof rio.data;
    memset(&from, 0, sizeof from);
    CHECK(WSARecvFrom(u1, &rio.buf, 1, NULL, &flags, (struct sockaddr *)&from, &fromlen, &rio.ov, NULL) ==
              SOCKET_ERROR &&
          WSAGetLastError() == WSA_IO_PENDING);
    memset(&sio, 0, sizeof sio);
    sio.buf.buf = (char *)"datagram";
    sio.buf.len = 8;
    CHECK(WSASendTo(u2, &sio.buf, 1, NULL, 0, (struct sockaddr *)&a, sizeof a, &sio.ov, NULL) == SOCKET_ERROR &&
          WSAGetLastError() == WSA_IO_PENDING);
    while (seen != 3) {
        CHECK(GetQueuedCompletionStatus(port, &n, &key, &ov, 10000));
        if (ov == &sio.ov) {
            CHECK(key == 62 && n == 8);
            seen |= 1;
        } else {
            CHECK(ov == &rio.ov && key == 61 && n == 8);
            seen |= 2;
        }
    }
    CHECK(memcmp(rio.data, "datagram", 8) == 0);
    CHECK(fromlen == sizeof(struct sockaddr_in) && from.sin_port == b.sin_port &&
          from.sin_addr.s_addr == b.sin_addr.s_addr);

    /* Too long for the buffer. */
    rio.buf.len = 4;
    fromlen = sizeof from;
    memset(&rio.ov, 0, sizeof rio.ov);
    CHECK(WSARecvFrom(u1, &rio.buf, 1, NULL, &flags, (struct sockaddr *)&from, &fromlen, &rio.ov, NULL) ==
          SOCKET_ERROR);
    CHECK(sendto(u2, "0123456789", 10, 0, (struct sockaddr *)&a, sizeof a) == 10);
    CHECK(!GetQueuedCompletionStatus(port, &n, &key, &ov, 10000) && ov == &rio.ov);
    CHECK(GetLastError() == ERROR_MORE_DATA);
    CHECK(closesocket(u1) == 0 && closesocket(u2) == 0);
}

/* WSARecv into two WSABUFs fills both in order. */
static void scattered_receive(void)
{
    SOCKET c, s;
    WSABUF two[2];
    char head[4], body[16];
    OVERLAPPED o;
    DWORD n, flags = 0, have = 0;
    ULONG_PTR key;
    LPOVERLAPPED ov;

    pair(&c, &s, 71);
    CHECK(send(c, "headbody", 8, 0) == 8);
    two[0].buf = head;
    two[0].len = sizeof head;
    two[1].buf = body;
    two[1].len = sizeof body;
    while (have < 8) {
        memset(&o, 0, sizeof o);
        if (have > 0) { /* the rest, if the first receive was short */
            two[0].len = have < 4 ? 4 - have : 0;
            two[0].buf = head + (have < 4 ? have : 4);
            two[1].buf = body + (have > 4 ? have - 4 : 0);
        }
        CHECK(WSARecv(s, two, 2, NULL, &flags, &o, NULL) == SOCKET_ERROR && WSAGetLastError() == WSA_IO_PENDING);
        CHECK(GetQueuedCompletionStatus(port, &n, &key, &ov, 10000) && ov == &o && key == 71 && n > 0);
        have += n;
    }
    CHECK(have == 8 && memcmp(head, "head", 4) == 0 && memcmp(body, "body", 4) == 0);
    CHECK(closesocket(s) == 0);
    close(c);
}

/* ReadFile/WriteFile on a pipe: no offsets; a closed writer is
 * ERROR_BROKEN_PIPE. */
static void pipes(void)
{
    int fds[2];
    char buf[8];
    OVERLAPPED r, w;
    DWORD n;
    ULONG_PTR key;
    LPOVERLAPPED ov;
    int seen = 0;

    CHECK(pipe(fds) == 0);
    CHECK(CreateIoCompletionPort((HANDLE)(ULONG_PTR)fds[0], port, 81, 0) == port);
    CHECK(CreateIoCompletionPort((HANDLE)(ULONG_PTR)fds[1], port, 82, 0) == port);
    memset(&r, 0, sizeof r);
    memset(&w, 0, sizeof w);
    r.Offset = w.Offset = 12345; /* ignored on a pipe */
    CHECK(!ReadFile((HANDLE)(ULONG_PTR)fds[0], buf, sizeof buf, NULL, &r) && GetLastError() == ERROR_IO_PENDING);
    CHECK(!WriteFile((HANDLE)(ULONG_PTR)fds[1], "pipe", 4, NULL, &w) && GetLastError() == ERROR_IO_PENDING);
    while (seen != 3) {
        CHECK(GetQueuedCompletionStatus(port, &n, &key, &ov, 10000) && n == 4);
        seen |= ov == &w ? 1 : ov == &r ? 2 : 4;
    }
    CHECK(memcmp(buf, "pipe", 4) == 0);
    CHECK(!ReadFile((HANDLE)(ULONG_PTR)fds[0], buf, sizeof buf, NULL, &r) && GetLastError() == ERROR_IO_PENDING);
    CHECK(CloseHandle((HANDLE)(ULONG_PTR)fds[1]));
    CHECK(!GetQueuedCompletionStatus(port, &n, &key, &ov, 10000) && ov == &r);
    CHECK(GetLastError() == ERROR_BROKEN_PIPE);
    CHECK(CloseHandle((HANDLE)(ULONG_PTR)fds[0]));
}

static void files_at_offsets(void)
{
    char path[64], buf[16];
    HANDLE f;
    OVERLAPPED ov1, ov2;
    DWORD n;
    ULONG_PTR key;
    LPOVERLAPPED ov;

    snprintf(path, sizeof path, "/tmp/ringport-c-api-%d", (int)getpid());
    f = CreateFileA(path, GENERIC_READ | GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, FILE_FLAG_OVERLAPPED, NULL);
    CHECK(f != INVALID_HANDLE_VALUE);
    CHECK(CreateIoCompletionPort(f, port, 31, 0) == port);
    memset(&ov1, 0, sizeof ov1);
    ov1.Offset = 4096;
    CHECK(!WriteFile(f, "offset4096", 10, NULL, &ov1) && GetLastError() == ERROR_IO_PENDING);
    CHECK(GetQueuedCompletionStatus(port, &n, &key, &ov, 10000) && ov == &ov1 && n == 10 && key == 31);
    memset(&ov2, 0, sizeof ov2);
    ov2.Offset = 4102;
    CHECK(!ReadFile(f, buf, 4, NULL, &ov2) && GetLastError() == ERROR_IO_PENDING);
    CHECK(GetQueuedCompletionStatus(port, &n, &key, &ov, 10000) && ov == &ov2 && n == 4);
    CHECK(memcmp(buf, "4096", 4) == 0);
    ov2.Offset = 9000; /* past the end */
    CHECK(!ReadFile(f, buf, 4, NULL, &ov2) && GetLastError() == ERROR_IO_PENDING);
    CHECK(!GetQueuedCompletionStatus(port, &n, &key, &ov, 10000) && ov == &ov2);
    CHECK(GetLastError() == ERROR_HANDLE_EOF);
    CHECK(CloseHandle(f));
    unlink(path);
}

static void bad_arguments_fail_cleanly(void)
{
    DWORD n;
    ULONG_PTR key;
    LPOVERLAPPED ov;
    IO io;
    DWORD flags = 0;
    SOCKET s;
    HANDLE bogus = (HANDLE)(ULONG_PTR)0x7777777777ULL;

    CHECK(!GetQueuedCompletionStatus(bogus, &n, &key, &ov, 0) && GetLastError() == ERROR_INVALID_HANDLE);
    CHECK(!GetQueuedCompletionStatus(NULL, &n, &key, &ov, 0) && GetLastError() == ERROR_INVALID_HANDLE);
    CHECK(!GetQueuedCompletionStatus(port, NULL, &key, &ov, 0) && GetLastError() == ERROR_INVALID_PARAMETER);
    CHECK(!GetQueuedCompletionStatus(port, &n, &key, NULL, 0) && GetLastError() == ERROR_INVALID_PARAMETER);
    CHECK(!GetQueuedCompletionStatusEx(port, NULL, 4, (PULONG)&n, 0, FALSE) &&
          GetLastError() == ERROR_INVALID_PARAMETER);
    CHECK(!PostQueuedCompletionStatus(bogus, 0, 0, NULL) && GetLastError() == ERROR_INVALID_HANDLE);
    CHECK(!CloseHandle(bogus) && GetLastError() == ERROR_INVALID_HANDLE);
    CHECK(!CloseHandle(INVALID_HANDLE_VALUE) && GetLastError() == ERROR_INVALID_HANDLE);
    CHECK(WaitForSingleObject(bogus, 0) == WAIT_FAILED && GetLastError() == ERROR_INVALID_HANDLE);
    CHECK(WaitForSingleObject(port, 0) == WAIT_FAILED);
    CHECK(CreateIoCompletionPort((HANDLE)(ULONG_PTR)1000000, port, 0, 0) == NULL &&
          GetLastError() == ERROR_INVALID_HANDLE);
    CHECK(CreateIoCompletionPort((HANDLE)(ULONG_PTR)5, bogus, 0, 0) == NULL && GetLastError() == ERROR_INVALID_HANDLE);

    /* A closed socket. */
    s = WSASocket(AF_INET, SOCK_STREAM, 0, NULL, 0, WSA_FLAG_OVERLAPPED);
    CHECK(closesocket(s) == 0);
    memset(&io, 0, sizeof io);
    io.buf.buf = io.data;
    io.buf.len = sizeof io.data;
    CHECK(WSARecv(s, &io.buf, 1, NULL, &flags, &io.ov, NULL) == SOCKET_ERROR && WSAGetLastError() == WSAENOTSOCK);
    CHECK(WSASend(s, &io.buf, 1, NULL, 0, &io.ov, NULL) == SOCKET_ERROR && WSAGetLastError() == WSAENOTSOCK);
    CHECK(closesocket(s) == SOCKET_ERROR && WSAGetLastError() == WSAENOTSOCK);
    CHECK(closesocket(INVALID_SOCKET) == SOCKET_ERROR && WSAGetLastError() == WSAENOTSOCK);
    CHECK(!CancelIoEx((HANDLE)s, NULL) && GetLastError() == ERROR_INVALID_HANDLE);
    CHECK(!AcceptEx(s, s, io.data, 0, 32, 32, NULL, &io.ov) && WSAGetLastError() == WSAENOTSOCK);

    /* NULL buffers and OVERLAPPEDs on a live, associated socket. */
    {
        SOCKET c, srv;
        pair(&c, &srv, 41);
        CHECK(WSARecv(srv, NULL, 1, NULL, &flags, &io.ov, NULL) == SOCKET_ERROR && WSAGetLastError() == WSAEFAULT);
        CHECK(WSASend(srv, NULL, 1, NULL, 0, &io.ov, NULL) == SOCKET_ERROR && WSAGetLastError() == WSAEFAULT);
        io.buf.buf = NULL;
        io.buf.len = 10;
        CHECK(WSASend(srv, &io.buf, 1, NULL, 0, &io.ov, NULL) == SOCKET_ERROR && WSAGetLastError() == WSAEFAULT);
        CHECK(!AcceptEx(srv, c, NULL, 0, 32, 32, NULL, &io.ov) && WSAGetLastError() == WSAEFAULT);
        CHECK(!ConnectEx(srv, NULL, 0, NULL, 0, NULL, &io.ov) && WSAGetLastError() == WSAEFAULT);
        /* Associated twice. */
        CHECK(CreateIoCompletionPort((HANDLE)srv, port, 0, 0) == NULL && GetLastError() == ERROR_INVALID_PARAMETER);
        CHECK(closesocket(srv) == 0);
        close(c);
    }
    /* Unassociated: overlapped I/O needs a port. */
    s = WSASocket(AF_INET, SOCK_STREAM, 0, NULL, 0, WSA_FLAG_OVERLAPPED);
    io.buf.buf = io.data;
    io.buf.len = sizeof io.data;
    CHECK(WSARecv(s, &io.buf, 1, NULL, &flags, &io.ov, NULL) == SOCKET_ERROR && WSAGetLastError() == WSAEINVAL);
    CHECK(closesocket(s) == 0);
    CHECK(WSAStartup(MAKEWORD(2, 2), NULL) == WSAEFAULT);
    GetSystemInfo(NULL);
    EnterCriticalSection(NULL);
    LeaveCriticalSection(NULL);
}

int main(void)
{
    WSADATA wsa;
    const char *backend;
    CHECK(WSAStartup(MAKEWORD(2, 2), &wsa) == 0 && wsa.wVersion == MAKEWORD(2, 2));
    port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    CHECK(port != NULL);
    backend = ringport_port_backend((ringport_port *)port);
    CHECK(backend != NULL);
    timeouts_and_packets();
    reset_peer_is_netname_deleted();
    orderly_close_is_zero_bytes();
    cancels_are_operation_aborted();
    accept_ex_connect_ex();
    closing_sockets_of_pending_accepts();
    closing_a_port_releases_its_waiters();
    datagrams();
    scattered_receive();
    pipes();
    files_at_offsets();
    bad_arguments_fail_cleanly();
    printf("api: ok (backend %s)\n", backend);
    CHECK(CloseHandle(port));
    {
        DWORD n;
        ULONG_PTR key;
        LPOVERLAPPED ov;
        CHECK(!GetQueuedCompletionStatus(port, &n, &key, &ov, 0) && GetLastError() == ERROR_INVALID_HANDLE);
    }
    WSACleanup();
    return 0;
}
