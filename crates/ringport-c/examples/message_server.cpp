// A message server in the shape of seed 000: it prints every message it
// receives; a client's orderly close arrives as a 0-byte completion, a
// client's reset as GetQueuedCompletionStatus failing with
// ERROR_NETNAME_DELETED; workers (2 x CPUs) are stopped by
// PostQueuedCompletionStatus, one exit packet each, and waited for.
//
// Differences from the seed, for testing: it listens on 127.0.0.1 and the
// port in argv[1] (0: any free port, printed), it stops when its standard
// input closes, and it says which way each client left.
#include "winerror.h"
#include "Winsock2.h"
#include "windows.h"
#include <iostream>
#include <string>
#include <cstdlib>
using namespace std;

#define DATA_BUFSIZE 8192

typedef struct {
    OVERLAPPED Overlapped;
    WSABUF DataBuf;
    CHAR Buffer[DATA_BUFSIZE + 1];
} PER_IO_OPERATION_DATA, *LPPER_IO_OPERATION_DATA;

typedef struct {
    SOCKET Socket;
} PER_HANDLE_DATA, *LPPER_HANDLE_DATA;

static CRITICAL_SECTION g_out; // one line at a time on stdout

static void say(const string &line)
{
    EnterCriticalSection(&g_out);
    cout << line << endl;
    LeaveCriticalSection(&g_out);
}

static bool post_recv(LPPER_HANDLE_DATA h, LPPER_IO_OPERATION_DATA io)
{
    DWORD flags = 0;
    ZeroMemory(io, sizeof(PER_IO_OPERATION_DATA));
    io->DataBuf.buf = io->Buffer;
    io->DataBuf.len = DATA_BUFSIZE;
    return WSARecv(h->Socket, &io->DataBuf, 1, NULL, &flags, &io->Overlapped, NULL) == 0 ||
           WSAGetLastError() == WSA_IO_PENDING;
}

static DWORD WINAPI ProcessIO(LPVOID lpParam)
{
    HANDLE CompletionPort = (HANDLE)lpParam;
    DWORD BytesTransferred;
    LPPER_HANDLE_DATA PerHandleData;
    LPPER_IO_OPERATION_DATA PerIoData;
    for (;;) {
        if (0 == GetQueuedCompletionStatus(CompletionPort, &BytesTransferred, (PULONG_PTR)&PerHandleData,
                                           (LPOVERLAPPED *)&PerIoData, INFINITE)) {
            DWORD err = GetLastError();
            if (PerIoData != NULL && (err == WAIT_TIMEOUT || err == ERROR_NETNAME_DELETED)) {
                say("closing socket " + to_string(PerHandleData->Socket) + " (reset: ERROR_NETNAME_DELETED)");
                closesocket(PerHandleData->Socket);
                delete PerIoData;
                delete PerHandleData;
                continue;
            }
            say("GetQueuedCompletionStatus failed: " + to_string(err));
            return 1;
        }
        if (PerHandleData == NULL && PerIoData == NULL) // the exit packet
            return 0;
        if (BytesTransferred == 0) {
            say("closing socket " + to_string(PerHandleData->Socket) + " (closed: 0 bytes)");
            closesocket(PerHandleData->Socket);
            delete PerIoData;
            delete PerHandleData;
            continue;
        }
        PerIoData->Buffer[BytesTransferred] = 0;
        say("message from " + to_string(PerHandleData->Socket) + ": " + PerIoData->Buffer);
        if (!post_recv(PerHandleData, PerIoData)) {
            closesocket(PerHandleData->Socket);
            delete PerIoData;
            delete PerHandleData;
        }
    }
}

struct Server {
    HANDLE port;
    SOCKET listener;
};

static DWORD WINAPI AcceptLoop(LPVOID lpParam)
{
    Server *s = (Server *)lpParam;
    for (;;) {
        SOCKET sClient = accept(s->listener, 0, 0);
        if (sClient == INVALID_SOCKET)
            return 0;
        LPPER_HANDLE_DATA PerHandleData = new PER_HANDLE_DATA();
        PerHandleData->Socket = sClient;
        CreateIoCompletionPort((HANDLE)sClient, s->port, (ULONG_PTR)PerHandleData, 0);
        LPPER_IO_OPERATION_DATA PerIoData = new PER_IO_OPERATION_DATA();
        say("socket " + to_string(sClient) + " connected");
        if (!post_recv(PerHandleData, PerIoData)) {
            closesocket(sClient);
            delete PerIoData;
            delete PerHandleData;
        }
    }
}

int main(int argc, char **argv)
{
    WSADATA wsd;
    if (WSAStartup(MAKEWORD(2, 2), &wsd) != 0)
        return 1;
    InitializeCriticalSection(&g_out);
    Server s;
    s.port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    SYSTEM_INFO SystemInfo;
    GetSystemInfo(&SystemInfo);
    DWORD nWorkers = SystemInfo.dwNumberOfProcessors * 2;
    HANDLE *workers = new HANDLE[nWorkers];
    for (DWORD i = 0; i < nWorkers; i++)
        workers[i] = CreateThread(NULL, 0, ProcessIO, s.port, 0, NULL);

    s.listener = WSASocket(AF_INET, SOCK_STREAM, 0, NULL, 0, WSA_FLAG_OVERLAPPED);
    struct sockaddr_in servAddr;
    socklen_t len = sizeof(servAddr);
    servAddr.sin_family = AF_INET;
    servAddr.sin_port = htons(argc > 1 ? atoi(argv[1]) : 5050);
    servAddr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(s.listener, (struct sockaddr *)&servAddr, sizeof(servAddr)) < 0 || listen(s.listener, 200) != 0)
        return 1;
    getsockname(s.listener, (struct sockaddr *)&servAddr, &len);
    say("listening on 127.0.0.1:" + to_string(ntohs(servAddr.sin_port)));
    CloseHandle(CreateThread(NULL, 0, AcceptLoop, &s, 0, NULL));

    // Runs until standard input closes; then one exit packet per worker.
    string line;
    while (getline(cin, line)) {
    }
    for (DWORD i = 0; i < nWorkers; i++)
        PostQueuedCompletionStatus(s.port, 0, 0, NULL);
    DWORD stopped = 0;
    for (DWORD i = 0; i < nWorkers; i++) {
        DWORD code = 1;
        if (WaitForSingleObject(workers[i], 10000) == WAIT_OBJECT_0 && GetExitCodeThread(workers[i], &code) && code == 0)
            stopped++;
        CloseHandle(workers[i]);
    }
    say("stopped " + to_string(stopped) + " of " + to_string(nWorkers) + " workers");
    delete[] workers;
    CloseHandle(s.port);
    return stopped == nWorkers ? 0 : 2;
}
