/* The backend is chosen at run time. Run as
 *   fallback_test            : prints the backend the port chose;
 *   fallback_test forbid     : first forbids io_uring_setup/enter/register
 *                              with a seccomp filter (as container runtimes
 *                              do), then the port must run on epoll and
 *                              carry a receive over loopback;
 *   fallback_test forbid-forced : the same with RINGPORT_BACKEND=uring in
 *                              the environment: the port cannot be made,
 *                              and CreateIoCompletionPort says so (NULL).
 * Prints "fallback: BACKEND" (or "fallback: refused ERROR"). */
#include <winsock2.h>
#include <windows.h>
#include <ringport.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "check.h"

static void forbid_io_uring(void)
{
#if defined(__x86_64__)
    const unsigned arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
    const unsigned arch = AUDIT_ARCH_AARCH64;
#endif
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 4), /* arch */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 0, 4),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, 0), /* nr */
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 3, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter, 2, 0),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_register, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 1 /* EPERM */),
    };
    struct sock_fprog prog = {sizeof filter / sizeof filter[0], filter};
    CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
    CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0);
}

static void receive_over_loopback(HANDLE port)
{
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    SOCKET l = socket(AF_INET, SOCK_STREAM, 0), c = socket(AF_INET, SOCK_STREAM, 0), s;
    OVERLAPPED ov;
    WSABUF b;
    char data[16];
    DWORD flags = 0, n;
    ULONG_PTR key;
    LPOVERLAPPED got;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(bind(l, (struct sockaddr *)&a, sizeof a) == 0 && listen(l, 1) == 0);
    CHECK(getsockname(l, (struct sockaddr *)&a, &len) == 0);
    CHECK(connect(c, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK((s = accept(l, NULL, NULL)) != INVALID_SOCKET);
    CHECK(CreateIoCompletionPort((HANDLE)s, port, 5, 0) == port);
    memset(&ov, 0, sizeof ov);
    b.buf = data;
    b.len = sizeof data;
    CHECK(WSARecv(s, &b, 1, NULL, &flags, &ov, NULL) == SOCKET_ERROR && WSAGetLastError() == WSA_IO_PENDING);
    CHECK(send(c, "ping", 4, 0) == 4);
    CHECK(GetQueuedCompletionStatus(port, &n, &key, &got, 10000));
    CHECK(got == &ov && key == 5 && n == 4 && memcmp(data, "ping", 4) == 0);
    closesocket(s);
    closesocket(c);
    closesocket(l);
}

int main(int argc, char **argv)
{
    HANDLE port;
    if (argc > 1)
        forbid_io_uring();
    port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    if (port == NULL) {
        printf("fallback: refused %u\n", GetLastError());
        return 0;
    }
    receive_over_loopback(port);
    printf("fallback: %s\n", ringport_port_backend((ringport_port *)port));
    CloseHandle(port);
    return 0;
}
