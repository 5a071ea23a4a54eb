/* NumberOfConcurrentThreads from C, as Windows keeps it:
 *  1. at most that many workers run completions at once (8 workers on a
 *     port of concurrency 2, 4000 packets);
 *  2. the last thread to wait is released first;
 *  3. a worker waiting in WaitForSingleObject, in a contended
 *     EnterCriticalSection, or in Sleep frees its slot, so another worker
 *     runs meanwhile (on a port of concurrency 1: without that, each
 *     scenario would wait for a completion nobody may dequeue, and fail
 *     on its time limit).
 * Prints "concurrency: ok (backend NAME)" and exits 0 when all passed. */
#include <windows.h>
#include <ringport.h>
#include <sched.h>
#include <stdatomic.h>
#include "check.h"

/* 1. the limit */
static HANDLE port2;
static atomic_int running, max_running, handled;

static DWORD WINAPI limited_worker(LPVOID arg)
{
    (void)arg;
    for (;;) {
        DWORD n;
        ULONG_PTR key;
        LPOVERLAPPED ov;
        int now, seen;
        volatile unsigned spin = 0;
        CHECK(GetQueuedCompletionStatus(port2, &n, &key, &ov, 20000));
        if (key == 1)
            return 0;
        now = atomic_fetch_add(&running, 1) + 1;
        seen = atomic_load(&max_running);
        while (now > seen && !atomic_compare_exchange_weak(&max_running, &seen, now)) {
        }
        while (spin < 20000) /* a little work */
            spin++;
        atomic_fetch_sub(&running, 1);
        atomic_fetch_add(&handled, 1);
    }
}

static void at_most_concurrency_threads_run(void)
{
    HANDLE w[8];
    int i;
    port2 = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 2);
    CHECK(port2 != NULL && ringport_port_concurrency((ringport_port *)port2) == 2);
    for (i = 0; i < 8; i++)
        CHECK((w[i] = CreateThread(NULL, 0, limited_worker, NULL, 0, NULL)) != NULL);
    for (i = 0; i < 4000; i++)
        CHECK(PostQueuedCompletionStatus(port2, 0, 0, NULL));
    for (i = 0; i < 8; i++)
        CHECK(PostQueuedCompletionStatus(port2, 0, 1, NULL));
    CHECK(WaitForMultipleObjects(8, w, TRUE, 30000) == WAIT_OBJECT_0);
    CHECK(atomic_load(&handled) == 4000);
    CHECK(atomic_load(&max_running) >= 1 && atomic_load(&max_running) <= 2);
    for (i = 0; i < 8; i++)
        CloseHandle(w[i]);
    CloseHandle(port2);
}

/* 2. last in, first out */
static HANDLE lifo_port;
static atomic_int order[3], next_slot;

static DWORD WINAPI lifo_waiter(LPVOID arg)
{
    DWORD n;
    ULONG_PTR key;
    LPOVERLAPPED ov;
    CHECK(GetQueuedCompletionStatus(lifo_port, &n, &key, &ov, 20000));
    atomic_store(&order[atomic_fetch_add(&next_slot, 1)], (int)(ULONG_PTR)arg);
    return 0;
}

static void wait_until_waiting(HANDLE port, unsigned n)
{
    long tries = 0;
    while (ringport_port_waiting((ringport_port *)port) < n) {
        CHECK(++tries < 50000000);
        sched_yield();
    }
}

static void last_waiter_is_released_first(void)
{
    HANDLE t[3];
    int i;
    lifo_port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 4);
    for (i = 0; i < 3; i++) {
        CHECK((t[i] = CreateThread(NULL, 0, lifo_waiter, (LPVOID)(ULONG_PTR)(i + 1), 0, NULL)) != NULL);
        wait_until_waiting(lifo_port, i + 1);
    }
    for (i = 0; i < 3; i++) {
        CHECK(PostQueuedCompletionStatus(lifo_port, 0, 0, NULL));
        CHECK(WaitForSingleObject(t[2 - i], 20000) == WAIT_OBJECT_0);
    }
    /* Waiters 3, 2, 1: the most recent first. */
    CHECK(order[0] == 3 && order[1] == 2 && order[2] == 1);
    for (i = 0; i < 3; i++)
        CloseHandle(t[i]);
    CloseHandle(lifo_port);
}

/* 3. blocking calls free the slot */
static HANDLE port1, event, got_second;
static CRITICAL_SECTION cs;
static atomic_int in_sleep, second_saw_sleep;

enum { BLOCK_WAIT = 1, BLOCK_CS = 2, BLOCK_SLEEP = 3, SECOND = 4, QUIT = 5 };

static DWORD WINAPI slot_worker(LPVOID arg)
{
    (void)arg;
    for (;;) {
        DWORD n;
        ULONG_PTR key;
        LPOVERLAPPED ov;
        CHECK(GetQueuedCompletionStatus(port1, &n, &key, &ov, 20000));
        switch (key) {
        case BLOCK_WAIT:
            /* Released only by the worker that dequeues SECOND. */
            CHECK(WaitForSingleObject(event, 10000) == WAIT_OBJECT_0);
            break;
        case BLOCK_CS:
            EnterCriticalSection(&cs); /* held by main until SECOND ran */
            LeaveCriticalSection(&cs);
            break;
        case BLOCK_SLEEP:
            atomic_store(&in_sleep, 1);
            Sleep(1000);
            atomic_store(&in_sleep, 0);
            break;
        case SECOND:
            atomic_store(&second_saw_sleep, atomic_load(&in_sleep));
            SetEvent(event);
            SetEvent(got_second);
            break;
        case QUIT:
            return 0;
        }
    }
}

static void blocking_calls_free_the_slot(void)
{
    HANDLE w[2];
    int i;
    port1 = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
    event = CreateEvent(NULL, FALSE, FALSE, NULL);
    got_second = CreateEvent(NULL, FALSE, FALSE, NULL);
    InitializeCriticalSection(&cs);
    for (i = 0; i < 2; i++)
        CHECK((w[i] = CreateThread(NULL, 0, slot_worker, NULL, 0, NULL)) != NULL);

    /* WaitForSingleObject */
    CHECK(PostQueuedCompletionStatus(port1, 0, BLOCK_WAIT, NULL));
    CHECK(PostQueuedCompletionStatus(port1, 0, SECOND, NULL));
    CHECK(WaitForSingleObject(got_second, 10000) == WAIT_OBJECT_0);

    /* A contended critical section */
    EnterCriticalSection(&cs);
    CHECK(PostQueuedCompletionStatus(port1, 0, BLOCK_CS, NULL));
    CHECK(PostQueuedCompletionStatus(port1, 0, SECOND, NULL));
    CHECK(WaitForSingleObject(got_second, 10000) == WAIT_OBJECT_0);
    LeaveCriticalSection(&cs);

    /* Sleep: SECOND runs while the other worker sleeps. */
    CHECK(PostQueuedCompletionStatus(port1, 0, BLOCK_SLEEP, NULL));
    {
        long tries = 0;
        while (!atomic_load(&in_sleep)) {
            CHECK(++tries < 50000000);
            sched_yield();
        }
    }
    CHECK(PostQueuedCompletionStatus(port1, 0, SECOND, NULL));
    CHECK(WaitForSingleObject(got_second, 10000) == WAIT_OBJECT_0);
    CHECK(atomic_load(&second_saw_sleep) == 1);

    for (i = 0; i < 2; i++)
        CHECK(PostQueuedCompletionStatus(port1, 0, QUIT, NULL));
    CHECK(WaitForMultipleObjects(2, w, TRUE, 20000) == WAIT_OBJECT_0);
    for (i = 0; i < 2; i++)
        CloseHandle(w[i]);
    DeleteCriticalSection(&cs);
    CloseHandle(event);
    CloseHandle(got_second);
    CloseHandle(port1);
}

int main(void)
{
    HANDLE probe = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 0);
    const char *backend = ringport_port_backend((ringport_port *)probe);
    CHECK(probe != NULL && backend != NULL);
    at_most_concurrency_threads_run();
    last_waiter_is_released_first();
    blocking_calls_free_the_slot();
    printf("concurrency: ok (backend %s)\n", backend);
    CloseHandle(probe);
    return 0;
}
