/* The raw tunnel and the event loop of mod_proxy_wstunnel (module/
 * wstunnel_loop.c) driven over socketpair()s, without httpd: the worker's
 * poll() loop (proxy_wstunnel_raw_run) and the epoll loop a handoff uses.
 * Built and run by tests/test_module_loop.py with the system cc against APR:
 *
 *   cc -Wall -Wextra -Werror $(apr-1-config --cflags --cppflags --includes)
 *      -Imodule module/wstunnel_loop.c module/wstunnel_frames.c
 *      tests/loop_test.c $(apr-1-config --link-ld --libs) -pthread
 *
 * Each case prints "<name>: ok ..." or "<name>: FAIL ..."; the exit code is
 * the number of failures. Every wait is for an event (a byte, an EOF, the
 * tunnel's end); alarm() ends a case that hangs. */

#define PWS_LOOP_ONLY
#include "wstunnel.h"

#include <signal.h>
#include <stdio.h>

static int failures;

static void report(const char *name, int ok, const char *detail)
{
    printf("%s: %s %s\n", name, ok ? "ok" : "FAIL", detail);
    fflush(stdout);
    if (!ok) {
        failures++;
    }
}

/* The peers: the test speaks as client (c_app) and backend (b_app); the
 * tunnel holds the other ends (c_tun, b_tun). */
typedef struct {
    int c_app, c_tun, b_app, b_tun;
} peers;

static void make_peers(peers *p)
{
    int c[2], b[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, c) != 0
        || socketpair(AF_UNIX, SOCK_STREAM, 0, b) != 0) {
        perror("socketpair");
        exit(100);
    }
    p->c_app = c[0];
    p->c_tun = c[1];
    p->b_app = b[0];
    p->b_tun = b[1];
}

static void close_peers(peers *p)
{
    int *fds[4] = {&p->c_app, &p->c_tun, &p->b_app, &p->b_tun};
    int i;
    for (i = 0; i < 4; i++) {
        if (*fds[i] >= 0) {
            close(*fds[i]);
            *fds[i] = -1;
        }
    }
}

/* Read from `fd` until `want` bytes or EOF, waiting as long as it takes
 * (alarm() bounds it). Returns the count; *eof: EOF was read. */
static size_t read_some(int fd, char *buffer, size_t want, int *eof)
{
    size_t got = 0;
    *eof = 0;
    while (got < want) {
        ssize_t n = recv(fd, buffer + got, want - got, 0);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            *eof = n == 0;
            break;
        }
        got += (size_t)n;
    }
    return got;
}

static int reads_eof(int fd)
{
    char byte;
    ssize_t n;
    do {
        n = recv(fd, &byte, 1, 0);
    } while (n < 0 && errno == EINTR);
    return n == 0;
}

/* The worker's loop over one tunnel, in a thread of its own. */
typedef struct {
    proxy_wstunnel_raw tunnel;
    apr_status_t rv;
    apr_time_t started, ended;
    volatile int done;
    pthread_t thread;
    char buffer[PWS_RAW_BYTES];
} runner;

static void *run(void *data)
{
    runner *r = data;
    r->rv = proxy_wstunnel_raw_run(&r->tunnel, r->buffer);
    r->ended = apr_time_now();
    proxy_wstunnel_raw_free_pending(&r->tunnel);
    r->done = 1;
    return NULL;
}

static runner *start(peers *p, apr_interval_time_t idle,
                     apr_interval_time_t fin, apr_interval_time_t write)
{
    runner *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        exit(100);
    }
    proxy_wstunnel_raw_init(&r->tunnel, p->c_tun, p->b_tun, idle, fin, write);
    r->started = apr_time_now();
    if (pthread_create(&r->thread, NULL, run, r) != 0) {
        exit(100);
    }
    return r;
}

static apr_status_t finish(runner *r, long *elapsed_ms)
{
    apr_status_t rv;
    pthread_join(r->thread, NULL);
    rv = r->rv;
    *elapsed_ms = (long)apr_time_as_msec(r->ended - r->started);
    free(r);
    return rv;
}

#define MS(n) ((apr_interval_time_t)(n) * 1000)

/* The client says its last word and sends its FIN; the backend reads it all,
 * then EOF, answers, and closes too: the tunnel ends cleanly both ways. */
static void half_close(void)
{
    peers p;
    runner *r;
    char buffer[64], detail[128];
    int eof_b, eof_c;
    size_t got_b, got_c;
    long ms;
    apr_status_t rv;

    make_peers(&p);
    r = start(&p, MS(10000), MS(5000), MS(5000));
    send(p.c_app, "hello", 5, 0);
    shutdown(p.c_app, SHUT_WR);
    got_b = read_some(p.b_app, buffer, 6, &eof_b); /* "hello", then EOF */
    send(p.b_app, "bye", 3, 0); /* the other direction still flows */
    shutdown(p.b_app, SHUT_WR);
    got_c = read_some(p.c_app, buffer, 4, &eof_c);
    rv = finish(r, &ms);
    snprintf(detail, sizeof(detail),
             "(backend got %zu bytes then EOF=%d, client %zu then EOF=%d, "
             "status %d)",
             got_b, eof_b, got_c, eof_c, rv);
    report("half-close", got_b == 5 && eof_b && got_c == 3 && eof_c
                             && memcmp(buffer, "bye", 3) == 0
                             && rv == APR_SUCCESS,
           detail);
    close_peers(&p);
}

/* One side sent its FIN, the other never answers nor closes: the tunnel
 * lives on for the fin timeout, then ends. */
static void fin_timeout(void)
{
    peers p;
    runner *r;
    char detail[96];
    long ms;
    apr_status_t rv;

    make_peers(&p);
    r = start(&p, MS(10000), MS(200), MS(5000));
    shutdown(p.c_app, SHUT_WR);
    rv = finish(r, &ms);
    snprintf(detail, sizeof(detail), "(ended after %ld ms, status %d)", ms,
             rv);
    report("fin-timeout", APR_STATUS_IS_EOF(rv) && ms >= 200 && ms < 3000,
           detail);
    close_peers(&p);
}

/* The client goes away with bytes it never read: its socket is reset, and
 * the tunnel ends at once as broken. */
static void reset(void)
{
    peers p;
    runner *r;
    struct pollfd ready;
    char detail[96];
    long ms;
    apr_status_t rv;

    make_peers(&p);
    r = start(&p, MS(10000), MS(5000), MS(5000));
    send(p.b_app, "unread", 6, 0);
    ready.fd = p.c_app; /* wait until the tunnel has delivered them */
    ready.events = POLLIN;
    ready.revents = 0;
    while (poll(&ready, 1, -1) < 0 && errno == EINTR) {
    }
    close(p.c_app); /* with unread bytes: the peer's next read is a reset */
    p.c_app = -1;
    rv = finish(r, &ms);
    snprintf(detail, sizeof(detail), "(ended after %ld ms, status %d)", ms,
             rv);
    report("reset", APR_STATUS_IS_ECONNRESET(rv) && ms < 3000, detail);
    close_peers(&p);
}

/* Nobody says anything: the idle limit ends the tunnel. */
static void idle_limit(void)
{
    peers p;
    runner *r;
    char detail[96];
    long ms;
    apr_status_t rv;

    make_peers(&p);
    r = start(&p, MS(200), MS(5000), MS(5000));
    rv = finish(r, &ms);
    snprintf(detail, sizeof(detail), "(ended after %ld ms, status %d)", ms,
             rv);
    report("idle-limit", APR_STATUS_IS_TIMEUP(rv) && ms >= 200 && ms < 3000,
           detail);
    close_peers(&p);
}

/* A backend that takes nothing: the tunnel stops reading from the client
 * (its writes block: no unbounded buffering in between), and once the
 * backend has refused bytes for the write timeout the tunnel ends. */
static void backpressure(void)
{
    static char chunk[16384];
    peers p;
    runner *r;
    char detail[160];
    size_t written = 0, received = 0;
    int eof, stalled = 0;
    long ms;
    apr_status_t rv;

    make_peers(&p);
    fcntl(p.c_app, F_SETFL, fcntl(p.c_app, F_GETFL) | O_NONBLOCK);
    r = start(&p, 0, MS(5000), MS(300));
    while (!r->done) {
        ssize_t n = send(p.c_app, chunk, sizeof(chunk), MSG_NOSIGNAL);
        if (n > 0) {
            written += (size_t)n;
        }
        else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            struct pollfd ready;
            ready.fd = p.c_app;
            ready.events = POLLOUT;
            ready.revents = 0;
            /* writable again means the tunnel took more; the tunnel's end
             * is checked between waits */
            if (poll(&ready, 1, 50) == 0) {
                stalled = 1;
            }
        }
        else {
            break;
        }
        if (written > ((size_t)64 << 20)) {
            break; /* 64 MiB taken from a client nobody reads: no limit */
        }
    }
    rv = finish(r, &ms);
    fcntl(p.b_app, F_SETFL, fcntl(p.b_app, F_GETFL) | O_NONBLOCK);
    for (;;) {
        size_t got = read_some(p.b_app, chunk, sizeof(chunk), &eof);
        received += got;
        if (got == 0) {
            break;
        }
    }
    snprintf(detail, sizeof(detail),
             "(client wrote %zu bytes before it blocked, backend's socket "
             "held %zu; ended after %ld ms, status %d)",
             written, received, ms, rv);
    report("backpressure", stalled && written < ((size_t)8 << 20)
                               && received > 0 && received <= written
                               && APR_STATUS_IS_TIMEUP(rv) && ms >= 300,
           detail);
    close_peers(&p);
}

/* Close frames both ways (the client's masked, as RFC 6455 has it) end the
 * tunnel without any FIN. */
static void close_frames(void)
{
    static const unsigned char client_close[] = {0x88, 0x82, 1, 2, 3, 4,
                                                 0x02, 0xEA};
    static const unsigned char backend_close[] = {0x88, 0x02, 0x03, 0xE8};
    peers p;
    runner *r;
    char buffer[16], detail[96];
    int eof;
    size_t got_b, got_c;
    long ms;
    apr_status_t rv;

    make_peers(&p);
    r = start(&p, MS(10000), MS(5000), MS(5000));
    send(p.c_app, client_close, sizeof(client_close), 0);
    got_b = read_some(p.b_app, buffer, sizeof(client_close), &eof);
    send(p.b_app, backend_close, sizeof(backend_close), 0);
    got_c = read_some(p.c_app, buffer, sizeof(backend_close), &eof);
    rv = finish(r, &ms);
    snprintf(detail, sizeof(detail), "(relayed %zu and %zu bytes, status %d)",
             got_b, got_c, rv);
    report("close-frames", got_b == sizeof(client_close)
                               && got_c == sizeof(backend_close)
                               && rv == APR_SUCCESS,
           detail);
    close_peers(&p);
}

#if PWS_HANDOFF
static apr_size_t loop_count(proxy_wstunnel_loop *loop)
{
    apr_size_t count;
    pthread_mutex_lock(&loop->lock);
    count = loop->count;
    pthread_mutex_unlock(&loop->lock);
    return count;
}

/* The event loop a handoff gives tunnels to: one that is half-closed and
 * answered ends cleanly, one that stays silent ends at its idle limit; the
 * loop stops once it holds none. */
static void event_loop(void)
{
    proxy_wstunnel_loop *loop = proxy_wstunnel_loop_start();
    proxy_wstunnel_raw prepared;
    peers a, b;
    apr_size_t held = 0;
    char buffer[16], detail[160];
    int eof_b, eof_c, idle_closed;
    size_t got_b, got_c;
    apr_time_t since;
    long idle_ms;

    if (loop == NULL) {
        report("event-loop", 0, "(no loop could be started)");
        return;
    }
    make_peers(&a);
    make_peers(&b);
    proxy_wstunnel_raw_init(&prepared, a.c_tun, a.b_tun, MS(10000), MS(5000),
                            MS(5000));
    if (proxy_wstunnel_loop_adopt(loop, &prepared, &held) != 0) {
        report("event-loop", 0, "(the loop did not take the tunnel)");
        return;
    }
    a.c_tun = a.b_tun = -1; /* the loop's now: it closes them */
    since = apr_time_now();
    proxy_wstunnel_raw_init(&prepared, b.c_tun, b.b_tun, MS(300), MS(5000),
                            MS(5000));
    if (proxy_wstunnel_loop_adopt(loop, &prepared, &held) != 0) {
        report("event-loop", 0, "(the loop did not take the second tunnel)");
        return;
    }
    b.c_tun = b.b_tun = -1;

    send(a.c_app, "ping", 4, 0);
    shutdown(a.c_app, SHUT_WR);
    got_b = read_some(a.b_app, buffer, 5, &eof_b);
    send(a.b_app, "pong", 4, 0);
    shutdown(a.b_app, SHUT_WR);
    got_c = read_some(a.c_app, buffer, 5, &eof_c);

    idle_closed = reads_eof(b.c_app) && reads_eof(b.b_app);
    idle_ms = (long)apr_time_as_msec(apr_time_now() - since);
    proxy_wstunnel_loop_finish(loop); /* returns once it holds nothing */
    snprintf(detail, sizeof(detail),
             "(half-closed tunnel: %zu+EOF=%d / %zu+EOF=%d; idle one closed "
             "after %ld ms; %lu left)",
             got_b, eof_b, got_c, eof_c, idle_ms,
             (unsigned long)loop_count(loop));
    report("event-loop", got_b == 4 && eof_b && got_c == 4 && eof_c
                             && idle_closed && idle_ms >= 300
                             && loop_count(loop) == 0,
           detail);
    close_peers(&a);
    close_peers(&b);
}
#endif

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    alarm(60); /* a case that hangs fails the whole run */
    half_close();
    fin_timeout();
    reset();
    idle_limit();
    backpressure();
    close_frames();
#if PWS_HANDOFF
    event_loop();
#endif
    printf("%d failure(s)\n", failures);
    return failures;
}
