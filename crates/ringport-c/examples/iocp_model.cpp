// A server in the shape of seed 004's CIOCPModel: Start/Stop, a listen
// context with MAX_POST_ACCEPT (10) AcceptEx requests kept posted (each
// replenished as it completes), the first data and both addresses read
// with GetAcceptExSockaddrs, AcceptEx and GetAcceptExSockaddrs obtained
// through WSAIoctl, per-I/O contexts with the OVERLAPPED first and an
// operation type (ACCEPT/RECV/SEND) found back with CONTAINING_RECORD, a
// client list under a CRITICAL_SECTION, HandleError (WAIT_TIMEOUT: probe
// the client; ERROR_NETNAME_DELETED: remove it), and a Stop that sets a
// shutdown event, posts one EXIT_CODE packet per worker and waits for all
// of them with WaitForMultipleObjects.
//
// Differences from the seed, for testing: no dialog (messages go to
// stdout), 127.0.0.1 and the port in argv[1] (0: any free port), Stop when
// standard input closes, and each message is echoed back so a client can
// tell it was handled.
#include <winsock2.h>
#include <MSWSock.h>
#include <windows.h>
#include <cstdio>
#include <cstdlib>
#include <cstdarg>
#include <vector>

#define MAX_BUFFER_LEN 8192
#define MAX_POST_ACCEPT 10
#define EXIT_CODE NULL
#define WORKER_THREADS_PER_PROCESSOR 2

#define RELEASE(x) { if ((x) != NULL) { delete (x); (x) = NULL; } }
#define RELEASE_HANDLE(x) { if ((x) != NULL && (x) != INVALID_HANDLE_VALUE) { CloseHandle(x); (x) = NULL; } }
#define RELEASE_SOCKET(x) { if ((x) != INVALID_SOCKET) { closesocket(x); (x) = INVALID_SOCKET; } }

typedef enum _OPERATION_TYPE { ACCEPT_POSTED, SEND_POSTED, RECV_POSTED, NULL_POSTED } OPERATION_TYPE;

struct PER_IO_CONTEXT {
    OVERLAPPED m_Overlapped; // first
    SOCKET m_sockAccept;
    WSABUF m_wsaBuf;
    char m_szBuffer[MAX_BUFFER_LEN];
    OPERATION_TYPE m_OpType;

    PER_IO_CONTEXT()
    {
        ZeroMemory(&m_Overlapped, sizeof(m_Overlapped));
        ZeroMemory(m_szBuffer, MAX_BUFFER_LEN);
        m_sockAccept = INVALID_SOCKET;
        m_wsaBuf.buf = m_szBuffer;
        m_wsaBuf.len = MAX_BUFFER_LEN;
        m_OpType = NULL_POSTED;
    }
    ~PER_IO_CONTEXT() { RELEASE_SOCKET(m_sockAccept); }
    void ResetBuffer() { ZeroMemory(m_szBuffer, MAX_BUFFER_LEN); }
};

struct PER_SOCKET_CONTEXT {
    SOCKET m_Socket;
    SOCKADDR_IN m_ClientAddr;
    std::vector<PER_IO_CONTEXT *> m_arrayIoContext;

    PER_SOCKET_CONTEXT() : m_Socket(INVALID_SOCKET) { memset(&m_ClientAddr, 0, sizeof(m_ClientAddr)); }
    ~PER_SOCKET_CONTEXT()
    {
        if (m_Socket != INVALID_SOCKET) {
            closesocket(m_Socket);
            m_Socket = INVALID_SOCKET;
        }
        for (size_t i = 0; i < m_arrayIoContext.size(); i++)
            delete m_arrayIoContext[i];
        m_arrayIoContext.clear();
    }
    PER_IO_CONTEXT *GetNewIoContext()
    {
        PER_IO_CONTEXT *p = new PER_IO_CONTEXT;
        m_arrayIoContext.push_back(p);
        return p;
    }
    void RemoveContext(PER_IO_CONTEXT *pContext)
    {
        for (size_t i = 0; i < m_arrayIoContext.size(); i++) {
            if (pContext == m_arrayIoContext[i]) {
                delete pContext;
                m_arrayIoContext.erase(m_arrayIoContext.begin() + i);
                break;
            }
        }
    }
};

class CIOCPModel;
struct THREADPARAMS_WORKER {
    CIOCPModel *pIOCPModel;
    int nThreadNo;
};

class CIOCPModel {
public:
    CIOCPModel()
        : m_nThreads(0), m_hShutdownEvent(NULL), m_hIOCompletionPort(NULL), m_phWorkerThreads(NULL),
          m_nPort(5050), m_lpfnAcceptEx(NULL), m_lpfnGetAcceptExSockAddrs(NULL), m_pListenContext(NULL)
    {
        InitializeCriticalSection(&m_csContextList);
        InitializeCriticalSection(&m_csOut);
    }
    ~CIOCPModel()
    {
        Stop();
        DeleteCriticalSection(&m_csContextList);
        DeleteCriticalSection(&m_csOut);
    }

    void SetPort(int nPort) { m_nPort = nPort; }
    int GetPort() const { return m_nPort; }

    bool Start()
    {
        m_hShutdownEvent = CreateEvent(NULL, TRUE, FALSE, NULL);
        if (!_InitializeIOCP())
            return false;
        if (!_InitializeListenSocket()) {
            _DeInitialize();
            return false;
        }
        return true;
    }

    void Stop()
    {
        if (m_pListenContext != NULL && m_pListenContext->m_Socket != INVALID_SOCKET) {
            SetEvent(m_hShutdownEvent);
            for (int i = 0; i < m_nThreads; i++)
                PostQueuedCompletionStatus(m_hIOCompletionPort, 0, (ULONG_PTR)EXIT_CODE, NULL);
            DWORD r = WaitForMultipleObjects(m_nThreads, m_phWorkerThreads, TRUE, 10000);
            _ShowMessage("stop: workers %s", r == WAIT_OBJECT_0 ? "all exited" : "did not exit");
            _ClearContextList();
            _DeInitialize();
        }
    }

    void _ShowMessage(const char *fmt, ...)
    {
        va_list ap;
        va_start(ap, fmt);
        EnterCriticalSection(&m_csOut);
        vprintf(fmt, ap);
        printf("\n");
        fflush(stdout);
        LeaveCriticalSection(&m_csOut);
        va_end(ap);
    }

private:
    static DWORD WINAPI _WorkerThread(LPVOID lpParam)
    {
        THREADPARAMS_WORKER *pParam = (THREADPARAMS_WORKER *)lpParam;
        CIOCPModel *pIOCPModel = pParam->pIOCPModel;
        OVERLAPPED *pOverlapped = NULL;
        PER_SOCKET_CONTEXT *pSocketContext = NULL;
        DWORD dwBytesTransfered = 0;

        while (WAIT_OBJECT_0 != WaitForSingleObject(pIOCPModel->m_hShutdownEvent, 0)) {
            BOOL bReturn = GetQueuedCompletionStatus(pIOCPModel->m_hIOCompletionPort, &dwBytesTransfered,
                                                     (PULONG_PTR)&pSocketContext, &pOverlapped, INFINITE);
            if (EXIT_CODE == (void *)pSocketContext)
                break;
            if (!bReturn) {
                DWORD dwErr = GetLastError();
                if (!pIOCPModel->HandleError(pSocketContext, pOverlapped, dwErr))
                    break;
                continue;
            }
            PER_IO_CONTEXT *pIoContext = CONTAINING_RECORD(pOverlapped, PER_IO_CONTEXT, m_Overlapped);
            if ((0 == dwBytesTransfered) &&
                (RECV_POSTED == pIoContext->m_OpType || SEND_POSTED == pIoContext->m_OpType)) {
                pIOCPModel->_ShowMessage("client %s:%d disconnected", inet_ntoa(pSocketContext->m_ClientAddr.sin_addr),
                                         ntohs(pSocketContext->m_ClientAddr.sin_port));
                pIOCPModel->_RemoveContext(pSocketContext);
                continue;
            }
            switch (pIoContext->m_OpType) {
            case ACCEPT_POSTED:
                pIOCPModel->_DoAccept(pSocketContext, pIoContext);
                break;
            case RECV_POSTED:
                pIOCPModel->_DoRecv(pSocketContext, pIoContext, dwBytesTransfered);
                break;
            case SEND_POSTED:
                pIOCPModel->_PostRecv(pIoContext);
                break;
            default:
                pIOCPModel->_ShowMessage("worker: unknown operation %d", pIoContext->m_OpType);
                break;
            }
        }
        RELEASE(pParam);
        return 0;
    }

    bool _InitializeIOCP()
    {
        m_hIOCompletionPort = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
        if (NULL == m_hIOCompletionPort)
            return false;
        SYSTEM_INFO si;
        GetSystemInfo(&si);
        m_nThreads = WORKER_THREADS_PER_PROCESSOR * si.dwNumberOfProcessors;
        m_phWorkerThreads = new HANDLE[m_nThreads];
        for (int i = 0; i < m_nThreads; i++) {
            THREADPARAMS_WORKER *pThreadParams = new THREADPARAMS_WORKER;
            pThreadParams->pIOCPModel = this;
            pThreadParams->nThreadNo = i + 1;
            m_phWorkerThreads[i] = CreateThread(0, 0, _WorkerThread, (void *)pThreadParams, 0, NULL);
        }
        _ShowMessage("workers %d", m_nThreads);
        return true;
    }

    bool _InitializeListenSocket()
    {
        GUID GuidAcceptEx = WSAID_ACCEPTEX;
        GUID GuidGetAcceptExSockAddrs = WSAID_GETACCEPTEXSOCKADDRS;
        struct sockaddr_in ServerAddress;
        socklen_t len = sizeof(ServerAddress);

        m_pListenContext = new PER_SOCKET_CONTEXT;
        m_pListenContext->m_Socket = WSASocket(AF_INET, SOCK_STREAM, 0, NULL, 0, WSA_FLAG_OVERLAPPED);
        if (INVALID_SOCKET == m_pListenContext->m_Socket)
            return false;
        if (NULL == CreateIoCompletionPort((HANDLE)m_pListenContext->m_Socket, m_hIOCompletionPort,
                                           (ULONG_PTR)m_pListenContext, 0)) {
            _ShowMessage("associate listen socket failed: %u", GetLastError());
            return false;
        }
        ZeroMemory(&ServerAddress, sizeof(ServerAddress));
        ServerAddress.sin_family = AF_INET;
        ServerAddress.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        ServerAddress.sin_port = htons(m_nPort);
        if (SOCKET_ERROR == bind(m_pListenContext->m_Socket, (struct sockaddr *)&ServerAddress, sizeof(ServerAddress)))
            return false;
        if (SOCKET_ERROR == listen(m_pListenContext->m_Socket, SOMAXCONN))
            return false;
        getsockname(m_pListenContext->m_Socket, (struct sockaddr *)&ServerAddress, &len);
        m_nPort = ntohs(ServerAddress.sin_port);

        DWORD dwBytes = 0;
        if (SOCKET_ERROR == WSAIoctl(m_pListenContext->m_Socket, SIO_GET_EXTENSION_FUNCTION_POINTER, &GuidAcceptEx,
                                     sizeof(GuidAcceptEx), &m_lpfnAcceptEx, sizeof(m_lpfnAcceptEx), &dwBytes, NULL,
                                     NULL)) {
            _ShowMessage("WSAIoctl AcceptEx failed: %d", WSAGetLastError());
            return false;
        }
        if (SOCKET_ERROR == WSAIoctl(m_pListenContext->m_Socket, SIO_GET_EXTENSION_FUNCTION_POINTER,
                                     &GuidGetAcceptExSockAddrs, sizeof(GuidGetAcceptExSockAddrs),
                                     &m_lpfnGetAcceptExSockAddrs, sizeof(m_lpfnGetAcceptExSockAddrs), &dwBytes, NULL,
                                     NULL)) {
            _ShowMessage("WSAIoctl GetAcceptExSockaddrs failed: %d", WSAGetLastError());
            return false;
        }
        for (int i = 0; i < MAX_POST_ACCEPT; i++) {
            PER_IO_CONTEXT *pAcceptIoContext = m_pListenContext->GetNewIoContext();
            if (!_PostAccept(pAcceptIoContext)) {
                m_pListenContext->RemoveContext(pAcceptIoContext);
                return false;
            }
        }
        _ShowMessage("listening on 127.0.0.1:%d with %d AcceptEx posted", m_nPort, MAX_POST_ACCEPT);
        return true;
    }

    void _DeInitialize()
    {
        RELEASE_HANDLE(m_hShutdownEvent);
        for (int i = 0; i < m_nThreads; i++)
            RELEASE_HANDLE(m_phWorkerThreads[i]);
        delete[] m_phWorkerThreads;
        m_phWorkerThreads = NULL;
        // The port first: its shutdown cancels the AcceptEx requests and
        // waits until the kernel let go of their buffers, which the listen
        // context then frees.
        RELEASE_HANDLE(m_hIOCompletionPort);
        RELEASE(m_pListenContext);
    }

    bool _PostAccept(PER_IO_CONTEXT *pAcceptIoContext)
    {
        DWORD dwBytes = 0;
        pAcceptIoContext->m_OpType = ACCEPT_POSTED;
        WSABUF *p_wbuf = &pAcceptIoContext->m_wsaBuf;
        OVERLAPPED *p_ol = &pAcceptIoContext->m_Overlapped;
        pAcceptIoContext->m_sockAccept = WSASocket(AF_INET, SOCK_STREAM, IPPROTO_TCP, NULL, 0, WSA_FLAG_OVERLAPPED);
        if (INVALID_SOCKET == pAcceptIoContext->m_sockAccept)
            return false;
        if (FALSE == m_lpfnAcceptEx(m_pListenContext->m_Socket, pAcceptIoContext->m_sockAccept, p_wbuf->buf,
                                    p_wbuf->len - ((sizeof(SOCKADDR_IN) + 16) * 2), sizeof(SOCKADDR_IN) + 16,
                                    sizeof(SOCKADDR_IN) + 16, &dwBytes, p_ol)) {
            if (WSA_IO_PENDING != WSAGetLastError()) {
                _ShowMessage("AcceptEx failed: %d", WSAGetLastError());
                return false;
            }
        }
        return true;
    }

    bool _DoAccept(PER_SOCKET_CONTEXT *pSocketContext, PER_IO_CONTEXT *pIoContext)
    {
        (void)pSocketContext;
        SOCKADDR_IN *ClientAddr = NULL;
        SOCKADDR_IN *LocalAddr = NULL;
        int remoteLen = sizeof(SOCKADDR_IN), localLen = sizeof(SOCKADDR_IN);
        m_lpfnGetAcceptExSockAddrs(pIoContext->m_wsaBuf.buf, pIoContext->m_wsaBuf.len - ((sizeof(SOCKADDR_IN) + 16) * 2),
                                   sizeof(SOCKADDR_IN) + 16, sizeof(SOCKADDR_IN) + 16, (LPSOCKADDR *)&LocalAddr,
                                   &localLen, (LPSOCKADDR *)&ClientAddr, &remoteLen);
        char local[32];
        snprintf(local, sizeof local, "%s:%d", inet_ntoa(LocalAddr->sin_addr), ntohs(LocalAddr->sin_port));
        _ShowMessage("accepted %s:%d local %s first data: %s", inet_ntoa(ClientAddr->sin_addr),
                     ntohs(ClientAddr->sin_port), local, pIoContext->m_wsaBuf.buf);

        PER_SOCKET_CONTEXT *pNewSocketContext = new PER_SOCKET_CONTEXT;
        pNewSocketContext->m_Socket = pIoContext->m_sockAccept;
        pIoContext->m_sockAccept = INVALID_SOCKET; // now the client's
        memcpy(&(pNewSocketContext->m_ClientAddr), ClientAddr, sizeof(SOCKADDR_IN));
        if (NULL == CreateIoCompletionPort((HANDLE)pNewSocketContext->m_Socket, m_hIOCompletionPort,
                                           (ULONG_PTR)pNewSocketContext, 0)) {
            _ShowMessage("associate client failed: %u", GetLastError());
            RELEASE(pNewSocketContext);
            return false;
        }
        // Echo the first data back, then receive.
        PER_IO_CONTEXT *pNewIoContext = pNewSocketContext->GetNewIoContext();
        pNewIoContext->m_sockAccept = pNewSocketContext->m_Socket;
        size_t n = strlen(pIoContext->m_wsaBuf.buf);
        memcpy(pNewIoContext->m_szBuffer, pIoContext->m_wsaBuf.buf, n);
        _AddToContextList(pNewSocketContext);
        _PostSend(pNewIoContext, (DWORD)n);

        pIoContext->ResetBuffer();
        return _PostAccept(pIoContext);
    }

    bool _PostSend(PER_IO_CONTEXT *pIoContext, DWORD n)
    {
        pIoContext->m_OpType = SEND_POSTED;
        pIoContext->m_wsaBuf.buf = pIoContext->m_szBuffer;
        pIoContext->m_wsaBuf.len = n;
        ZeroMemory(&pIoContext->m_Overlapped, sizeof(OVERLAPPED));
        int r = WSASend(pIoContext->m_sockAccept, &pIoContext->m_wsaBuf, 1, NULL, 0, &pIoContext->m_Overlapped, NULL);
        return !(SOCKET_ERROR == r && WSA_IO_PENDING != WSAGetLastError());
    }

    bool _PostRecv(PER_IO_CONTEXT *pIoContext)
    {
        DWORD dwFlags = 0;
        pIoContext->ResetBuffer();
        pIoContext->m_OpType = RECV_POSTED;
        pIoContext->m_wsaBuf.buf = pIoContext->m_szBuffer;
        pIoContext->m_wsaBuf.len = MAX_BUFFER_LEN - 1;
        ZeroMemory(&pIoContext->m_Overlapped, sizeof(OVERLAPPED));
        int nBytesRecv = WSARecv(pIoContext->m_sockAccept, &pIoContext->m_wsaBuf, 1, NULL, &dwFlags,
                                 &pIoContext->m_Overlapped, NULL);
        if ((SOCKET_ERROR == nBytesRecv) && (WSA_IO_PENDING != WSAGetLastError())) {
            _ShowMessage("WSARecv failed: %d", WSAGetLastError());
            return false;
        }
        return true;
    }

    bool _DoRecv(PER_SOCKET_CONTEXT *pSocketContext, PER_IO_CONTEXT *pIoContext, DWORD n)
    {
        SOCKADDR_IN *ClientAddr = &pSocketContext->m_ClientAddr;
        _ShowMessage("received from %s:%d: %s", inet_ntoa(ClientAddr->sin_addr), ntohs(ClientAddr->sin_port),
                     pIoContext->m_wsaBuf.buf);
        return _PostSend(pIoContext, n);
    }

    void _AddToContextList(PER_SOCKET_CONTEXT *pHandleData)
    {
        EnterCriticalSection(&m_csContextList);
        m_arrayClientContext.push_back(pHandleData);
        LeaveCriticalSection(&m_csContextList);
    }

    void _RemoveContext(PER_SOCKET_CONTEXT *pSocketContext)
    {
        EnterCriticalSection(&m_csContextList);
        for (size_t i = 0; i < m_arrayClientContext.size(); i++) {
            if (pSocketContext == m_arrayClientContext[i]) {
                RELEASE(pSocketContext);
                m_arrayClientContext.erase(m_arrayClientContext.begin() + i);
                break;
            }
        }
        LeaveCriticalSection(&m_csContextList);
    }

    void _ClearContextList()
    {
        EnterCriticalSection(&m_csContextList);
        for (size_t i = 0; i < m_arrayClientContext.size(); i++)
            delete m_arrayClientContext[i];
        m_arrayClientContext.clear();
        LeaveCriticalSection(&m_csContextList);
    }

    bool _IsSocketAlive(SOCKET s)
    {
        return send(s, "", 0, MSG_NOSIGNAL) != -1;
    }

public:
    bool HandleError(PER_SOCKET_CONTEXT *pContext, OVERLAPPED *pOverlapped, const DWORD &dwErr)
    {
        if (WAIT_TIMEOUT == dwErr) {
            if (!_IsSocketAlive(pContext->m_Socket)) {
                _ShowMessage("client gone (probe failed)");
                _RemoveContext(pContext);
            }
            return true;
        } else if (ERROR_NETNAME_DELETED == dwErr) {
            _ShowMessage("client %s:%d reset (ERROR_NETNAME_DELETED)", inet_ntoa(pContext->m_ClientAddr.sin_addr),
                         ntohs(pContext->m_ClientAddr.sin_port));
            _RemoveContext(pContext);
            return true;
        } else if (ERROR_OPERATION_ABORTED == dwErr && pOverlapped != NULL) {
            return true; // an operation cancelled by a close
        }
        _ShowMessage("completion port error %u", dwErr);
        return false;
    }

private:
    int m_nThreads;
    HANDLE m_hShutdownEvent;
    HANDLE m_hIOCompletionPort;
    HANDLE *m_phWorkerThreads;
    int m_nPort;
    CRITICAL_SECTION m_csContextList;
    CRITICAL_SECTION m_csOut;
    std::vector<PER_SOCKET_CONTEXT *> m_arrayClientContext;
    LPFN_ACCEPTEX m_lpfnAcceptEx;
    LPFN_GETACCEPTEXSOCKADDRS m_lpfnGetAcceptExSockAddrs;
    PER_SOCKET_CONTEXT *m_pListenContext;
};

int main(int argc, char **argv)
{
    WSADATA wsaData;
    if (WSAStartup(MAKEWORD(2, 2), &wsaData) != 0)
        return 1;
    CIOCPModel model;
    model.SetPort(argc > 1 ? atoi(argv[1]) : 12345);
    if (!model.Start()) {
        printf("start failed\n");
        return 1;
    }
    int c;
    while ((c = getchar()) != EOF) {
    }
    model.Stop();
    model._ShowMessage("stopped");
    WSACleanup();
    return 0;
}
