/* An echo server in the shape of seed 003 (Microsoft's completion-port
 * echo sample): a per-I/O struct with the OVERLAPPED first, BytesRECV and
 * BytesSEND bookkeeping so that a partial send is continued until every
 * received byte is echoed, 2 x CPUs workers, WSAAccept in the main thread.
 *
 * Differences from the seed, all for testing: it listens on 127.0.0.1 and
 * the port given as argv[1] (0: any free port, printed on stdout), and a
 * failed completion closes that connection instead of ending the worker.
 *
 * Build: gcc -I include/win32 echo_server.c -L target/release -lringport_c -lpthread */
#include <winsock2.h>
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <ringport.h>

#define DATA_BUFSIZE 8192

typedef struct {
    OVERLAPPED Overlapped; /* first: the OVERLAPPED* is the struct's address */
    WSABUF DataBuf;
    CHAR Buffer[DATA_BUFSIZE];
    DWORD BytesSEND;
    DWORD BytesRECV;
} PER_IO_OPERATION_DATA, *LPPER_IO_OPERATION_DATA;

typedef struct {
    SOCKET Socket;
} PER_HANDLE_DATA, *LPPER_HANDLE_DATA;

static void close_connection(LPPER_HANDLE_DATA h, LPPER_IO_OPERATION_DATA io)
{
    closesocket(h->Socket);
    GlobalFree(h);
    GlobalFree(io);
}

static DWORD WINAPI ServerWorkerThread(LPVOID CompletionPortID)
{
    HANDLE CompletionPort = (HANDLE)CompletionPortID;
    DWORD BytesTransferred;
    LPPER_HANDLE_DATA PerHandleData;
    LPPER_IO_OPERATION_DATA PerIoData;
    DWORD Flags;

    for (;;) {
        if (!GetQueuedCompletionStatus(CompletionPort, &BytesTransferred, (PULONG_PTR)&PerHandleData,
                                       (LPOVERLAPPED *)&PerIoData, INFINITE)) {
            if (PerIoData == NULL) {
                printf("GetQueuedCompletionStatus failed with error %u\n", GetLastError());
                return 0;
            }
            /* A failed receive or send (reset peer: ERROR_NETNAME_DELETED). */
            close_connection(PerHandleData, PerIoData);
            continue;
        }
        if (PerIoData == NULL) /* a posted exit packet */
            return 0;

        if (BytesTransferred == 0) {
            close_connection(PerHandleData, PerIoData);
            continue;
        }

        if (PerIoData->BytesRECV == 0) {
            PerIoData->BytesRECV = BytesTransferred;
            PerIoData->BytesSEND = 0;
        } else {
            PerIoData->BytesSEND += BytesTransferred;
        }

        if (PerIoData->BytesRECV > PerIoData->BytesSEND) {
            /* Echo what is left: the rest of a partial send, or all of it. */
            ZeroMemory(&(PerIoData->Overlapped), sizeof(OVERLAPPED));
            PerIoData->DataBuf.buf = PerIoData->Buffer + PerIoData->BytesSEND;
            PerIoData->DataBuf.len = PerIoData->BytesRECV - PerIoData->BytesSEND;
            if (WSASend(PerHandleData->Socket, &(PerIoData->DataBuf), 1, NULL, 0,
                        &(PerIoData->Overlapped), NULL) == SOCKET_ERROR &&
                WSAGetLastError() != ERROR_IO_PENDING) {
                close_connection(PerHandleData, PerIoData);
            }
        } else {
            PerIoData->BytesRECV = 0;
            Flags = 0;
            ZeroMemory(&(PerIoData->Overlapped), sizeof(OVERLAPPED));
            PerIoData->DataBuf.len = DATA_BUFSIZE;
            PerIoData->DataBuf.buf = PerIoData->Buffer;
            if (WSARecv(PerHandleData->Socket, &(PerIoData->DataBuf), 1, NULL, &Flags,
                        &(PerIoData->Overlapped), NULL) == SOCKET_ERROR &&
                WSAGetLastError() != ERROR_IO_PENDING) {
                close_connection(PerHandleData, PerIoData);
            }
        }
    }
}

int main(int argc, char **argv)
{
    WSADATA wsaData;
    SYSTEM_INFO SystemInfo;
    SOCKADDR_IN InternetAddr;
    socklen_t len = sizeof(InternetAddr);
    HANDLE CompletionPort;
    SOCKET Listen, Accept;
    DWORD i, Flags;

    if (WSAStartup(MAKEWORD(2, 2), &wsaData) != 0)
        return 1;
    if ((CompletionPort = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0)) == NULL) {
        printf("CreateIoCompletionPort failed with error: %u\n", GetLastError());
        return 1;
    }
    GetSystemInfo(&SystemInfo);
    for (i = 0; i < SystemInfo.dwNumberOfProcessors * 2; i++) {
        HANDLE ThreadHandle = CreateThread(NULL, 0, ServerWorkerThread, CompletionPort, 0, NULL);
        if (ThreadHandle == NULL)
            return 1;
        CloseHandle(ThreadHandle);
    }

    if ((Listen = WSASocket(AF_INET, SOCK_STREAM, 0, NULL, 0, WSA_FLAG_OVERLAPPED)) == INVALID_SOCKET)
        return 1;
    InternetAddr.sin_family = AF_INET;
    InternetAddr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    InternetAddr.sin_port = htons(argc > 1 ? atoi(argv[1]) : 5150);
    if (bind(Listen, (PSOCKADDR)&InternetAddr, sizeof(InternetAddr)) == SOCKET_ERROR ||
        listen(Listen, SOMAXCONN) == SOCKET_ERROR) {
        perror("bind/listen");
        return 1;
    }
    getsockname(Listen, (PSOCKADDR)&InternetAddr, &len);
    printf("listening on 127.0.0.1:%d backend %s\n", ntohs(InternetAddr.sin_port),
           ringport_port_backend((ringport_port *)CompletionPort));
    fflush(stdout);

    for (;;) {
        LPPER_HANDLE_DATA PerHandleData;
        LPPER_IO_OPERATION_DATA PerIoData;
        if ((Accept = WSAAccept(Listen, NULL, NULL, NULL, 0)) == INVALID_SOCKET) {
            printf("WSAAccept() failed with error %d\n", WSAGetLastError());
            return 1;
        }
        PerHandleData = (LPPER_HANDLE_DATA)GlobalAlloc(GPTR, sizeof(PER_HANDLE_DATA));
        PerHandleData->Socket = Accept;
        if (CreateIoCompletionPort((HANDLE)Accept, CompletionPort, (ULONG_PTR)PerHandleData, 0) == NULL)
            return 1;
        PerIoData = (LPPER_IO_OPERATION_DATA)GlobalAlloc(GPTR, sizeof(PER_IO_OPERATION_DATA));
        ZeroMemory(&(PerIoData->Overlapped), sizeof(OVERLAPPED));
        PerIoData->BytesSEND = 0;
        PerIoData->BytesRECV = 0;
        PerIoData->DataBuf.len = DATA_BUFSIZE;
        PerIoData->DataBuf.buf = PerIoData->Buffer;
        Flags = 0;
        if (WSARecv(Accept, &(PerIoData->DataBuf), 1, NULL, &Flags, &(PerIoData->Overlapped), NULL) ==
                SOCKET_ERROR &&
            WSAGetLastError() != ERROR_IO_PENDING) {
            printf("WSARecv() failed with error %d\n", WSAGetLastError());
            return 1;
        }
    }
}
