/* wsload: a small WebSocket echo server and load client for apachews' side-by-side benchmark.
 *
 *   wsload echo [-p PORT] [-t SECONDS]
 *       A WebSocket echo server on 127.0.0.1:PORT (0: any free port). Prints {"listening": PORT} when ready,
 *       answers the handshake (Sec-WebSocket-Accept per RFC 6455), echoes every data frame as it arrives
 *       (a ping comes back as a pong, a close as a close, then the connection ends). Runs until SIGTERM or
 *       SIGINT, the time limit, or its parent's death.
 *   wsload load -u ws://127.0.0.1:PORT/PATH [-c CONNS] [-n ROUND_TRIPS] [-s BYTES] [-d SECONDS] [-t SECONDS]
 *       CONNS connections, all opened first; then each does up to ROUND_TRIPS round trips of one masked
 *       binary frame of BYTES bytes (one in flight per connection), for at most -d seconds. Every echo is
 *       checked byte for byte. Prints one JSON object: round trips, seconds, msgs/s, bytes/s, p50/p99.
 *   wsload idle -u ws://127.0.0.1:PORT/PATH [-c CONNS] [-t SECONDS]
 *       Opens CONNS WebSockets, prints {"open": N, ...} when all are open, holds them until stdin closes or
 *       the time limit, then prints a JSON summary and closes them.
 *
 * Loopback only: a URL whose host is not 127.0.0.0/8, ::1 or localhost is refused. Every mode has a time
 * limit (-t, default 60 s; echo: 3600 s). Exit status: 0 fine, 1 errors seen, 2 bad usage.
 * Build: cc -O2 -Wall -Wextra -o wsload wsload.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define MAX_FRAME_BYTES (64u * 1024 * 1024)
#define MAX_CONNS 100000
#define READ_CHUNK (256 * 1024)
#define OUT_HIGH (4u * 1024 * 1024) /* echo: stop reading a connection with this much unsent */
#define OUT_LOW (1u * 1024 * 1024)

static volatile sig_atomic_t stop_requested;
static int stdin_closed;
static unsigned char rbuf[READ_CHUNK];

static void on_signal(int sig) {
    (void)sig;
    stop_requested = 1;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "wsload: %s: %s\n", what, strerror(errno));
    exit(1);
}

/* ---- SHA-1 (FIPS 180-1) and base64, just enough for Sec-WebSocket-Accept ------------------------------ */
static uint32_t rol(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const unsigned char *p) {
    uint32_t w[80], a, b, c, d, e, f, k, t;
    int i;
    for (i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (i = 16; i < 80; i++)
        w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (i = 0; i < 80; i++) {
        if (i < 20)
            f = (b & c) | (~b & d), k = 0x5A827999;
        else if (i < 40)
            f = b ^ c ^ d, k = 0x6ED9EBA1;
        else if (i < 60)
            f = (b & c) | (b & d) | (c & d), k = 0x8F1BBCDC;
        else
            f = b ^ c ^ d, k = 0xCA62C1D6;
        t = rol(a, 5) + f + e + k + w[i];
        e = d, d = c, c = rol(b, 30), b = a, a = t;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e;
}

static void sha1(const unsigned char *data, size_t len, unsigned char out[20]) {
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    unsigned char tail[128];
    size_t full = len / 64 * 64, rest = len - full, padded, i;
    uint64_t bits = (uint64_t)len * 8;
    for (i = 0; i < full; i += 64)
        sha1_block(h, data + i);
    memset(tail, 0, sizeof tail);
    memcpy(tail, data + full, rest);
    tail[rest] = 0x80;
    padded = rest + 1 + 8 <= 64 ? 64 : 128;
    for (i = 0; i < 8; i++)
        tail[padded - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (i = 0; i < padded; i += 64)
        sha1_block(h, tail + i);
    for (i = 0; i < 5; i++) {
        out[4 * i] = (unsigned char)(h[i] >> 24), out[4 * i + 1] = (unsigned char)(h[i] >> 16);
        out[4 * i + 2] = (unsigned char)(h[i] >> 8), out[4 * i + 3] = (unsigned char)h[i];
    }
}

static void base64(const unsigned char *in, size_t len, char *out) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i;
    for (i = 0; i + 2 < len; i += 3) {
        *out++ = tab[in[i] >> 2];
        *out++ = tab[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
        *out++ = tab[((in[i + 1] & 15) << 2) | (in[i + 2] >> 6)];
        *out++ = tab[in[i + 2] & 63];
    }
    if (len - i == 1) {
        *out++ = tab[in[i] >> 2];
        *out++ = tab[(in[i] & 3) << 4];
        *out++ = '=';
        *out++ = '=';
    } else if (len - i == 2) {
        *out++ = tab[in[i] >> 2];
        *out++ = tab[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
        *out++ = tab[(in[i + 1] & 15) << 2];
        *out++ = '=';
    }
    *out = '\0';
}

/* The Sec-WebSocket-Accept for `key` (out: 29 bytes). */
static void accept_for(const char *key, size_t key_len, char out[29]) {
    unsigned char joined[256], digest[20];
    if (key_len > sizeof joined - sizeof WS_GUID)
        key_len = sizeof joined - sizeof WS_GUID;
    memcpy(joined, key, key_len);
    memcpy(joined + key_len, WS_GUID, sizeof WS_GUID - 1);
    sha1(joined, key_len + sizeof WS_GUID - 1, digest);
    base64(digest, 20, out);
}

/* ---- small helpers ------------------------------------------------------------------------------------------ */
struct buf {
    unsigned char *data;
    size_t len, off, cap;
};

static void buf_reserve(struct buf *b, size_t more) {
    if (b->off > 0 && b->off == b->len)
        b->off = b->len = 0;
    if (b->len + more <= b->cap)
        return;
    if (b->off > 0) {
        memmove(b->data, b->data + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + more <= b->cap)
            return;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + more)
        cap *= 2;
    unsigned char *data = realloc(b->data, cap);
    if (!data)
        die("out of memory");
    b->data = data;
    b->cap = cap;
}

static size_t buf_pending(const struct buf *b) { return b->len - b->off; }

static void raise_nofile(void) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max > (1u << 20) ? (1u << 20) : rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void setup_process(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);      /* a closed peer is an error to report, not a crash */
    prctl(PR_SET_PDEATHSIG, SIGTERM); /* never outlive the bench that started us */
    raise_nofile();
}

static void nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* Find the end of an HTTP head; returns its length including the blank line, or 0. */
static size_t head_end(const char *s, size_t len) {
    for (size_t i = 3; i < len; i++)
        if (s[i] == '\n' && s[i - 1] == '\r' && s[i - 2] == '\n' && s[i - 3] == '\r')
            return i + 1;
    return 0;
}

/* The value of header `name` in an HTTP head (not NUL-terminated), trimmed; NULL if absent. */
static const char *header_value(const char *head, size_t len, const char *name, size_t *value_len) {
    size_t name_len = strlen(name);
    const char *p = memchr(head, '\n', len), *end = head + len;
    while (p && p + 1 < end) {
        const char *line = p + 1, *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            break;
        if ((size_t)(eol - line) > name_len && strncasecmp(line, name, name_len) == 0 && line[name_len] == ':') {
            const char *v = line + name_len + 1, *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            *value_len = (size_t)(ve - v);
            return v;
        }
        p = eol;
    }
    return NULL;
}

/* Frame header parsing shared by both sides. */
struct frame_in {
    unsigned char hdr[14];
    size_t have;
    uint64_t remaining; /* payload bytes still to come of the current frame */
    int in_payload;
    int fin, opcode, masked;
    unsigned char mask[4];
    uint64_t mask_off;
};

/* Feed header bytes; returns bytes consumed, sets in_payload when the header is complete; -1 if invalid. */
static long frame_header(struct frame_in *f, const unsigned char *p, size_t n) {
    size_t used = 0, need;
    while (used < n) {
        f->hdr[f->have++] = p[used++];
        if (f->have < 2)
            continue;
        int len7 = f->hdr[1] & 0x7f;
        need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((f->hdr[1] & 0x80) ? 4 : 0);
        if (f->have < need)
            continue;
        uint64_t len = (uint64_t)len7;
        size_t pos = 2;
        if (len7 == 126) {
            len = (uint64_t)f->hdr[2] << 8 | f->hdr[3];
            pos = 4;
        } else if (len7 == 127) {
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | f->hdr[2 + i];
            pos = 10;
        }
        f->fin = f->hdr[0] >> 7;
        f->opcode = f->hdr[0] & 0x0f;
        f->masked = (f->hdr[1] & 0x80) != 0;
        if (f->masked)
            memcpy(f->mask, f->hdr + pos, 4);
        if (len > MAX_FRAME_BYTES || (f->opcode >= 8 && (len > 125 || !f->fin)))
            return -1;
        f->remaining = len;
        f->mask_off = 0;
        f->in_payload = 1;
        f->have = 0;
        return (long)used;
    }
    return (long)used;
}

static void unmask(struct frame_in *f, unsigned char *p, size_t n) {
    if (!f->masked)
        return;
    for (size_t i = 0; i < n; i++)
        p[i] ^= f->mask[(f->mask_off + i) & 3];
    f->mask_off += n;
}

static size_t frame_head(unsigned char *out, int first_byte, uint64_t len, const unsigned char *mask) {
    size_t n = 0;
    out[n++] = (unsigned char)first_byte;
    int mbit = mask ? 0x80 : 0;
    if (len < 126) {
        out[n++] = (unsigned char)(mbit | (int)len);
    } else if (len < 65536) {
        out[n++] = (unsigned char)(mbit | 126);
        out[n++] = (unsigned char)(len >> 8);
        out[n++] = (unsigned char)len;
    } else {
        out[n++] = (unsigned char)(mbit | 127);
        for (int i = 7; i >= 0; i--)
            out[n++] = (unsigned char)(len >> (8 * i));
    }
    if (mask) {
        memcpy(out + n, mask, 4);
        n += 4;
    }
    return n;
}

/* ---- echo server -------------------------------------------------------------------------------------------- */
struct econn {
    int fd;
    int open;         /* handshake done */
    int closing;      /* close frame seen / handshake refused: end once output is flushed */
    uint32_t events;
    struct buf in;    /* handshake bytes */
    struct buf out;
    struct frame_in f;
};

static struct econn **econns;
static size_t econns_cap;

static void econn_close(int ep, struct econn *c) {
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    econns[c->fd] = NULL;
    free(c->in.data);
    free(c->out.data);
    free(c);
}

static void econn_events(int ep, struct econn *c) {
    uint32_t want = 0;
    size_t pending = buf_pending(&c->out);
    if (!c->closing && pending < OUT_HIGH)
        want |= EPOLLIN;
    if (pending)
        want |= EPOLLOUT;
    if (want != c->events) {
        struct epoll_event ev = {.events = want, .data.fd = c->fd};
        epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->events = want;
    }
}

/* Echo bytes of frames; returns -1 on a protocol error. */
static int echo_frames(struct econn *c, unsigned char *p, size_t n) {
    while (n > 0 && !c->closing) {
        if (!c->f.in_payload) {
            long used = frame_header(&c->f, p, n);
            if (used < 0)
                return -1;
            p += used, n -= (size_t)used;
            if (!c->f.in_payload)
                break;
            int first = c->f.hdr[0];
            if (c->f.opcode == 9)
                first = (first & 0xf0) | 0x0a; /* ping -> pong */
            buf_reserve(&c->out, 14);
            c->out.len += frame_head(c->out.data + c->out.len, first, c->f.remaining, NULL);
        }
        size_t take = c->f.remaining < n ? (size_t)c->f.remaining : n;
        buf_reserve(&c->out, take);
        memcpy(c->out.data + c->out.len, p, take);
        unmask(&c->f, c->out.data + c->out.len, take);
        c->out.len += take;
        c->f.remaining -= take;
        p += take, n -= take;
        if (c->f.remaining == 0) {
            c->f.in_payload = 0;
            if (c->f.opcode == 8)
                c->closing = 1;
        }
    }
    return 0;
}

static const char refuse_400[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

static int echo_handshake(struct econn *c) {
    const char *head = (const char *)c->in.data;
    size_t end = head_end(head, c->in.len), key_len = 0, up_len = 0;
    if (!end)
        return c->in.len > 16384 ? -1 : 0;
    const char *key = header_value(head, end, "Sec-WebSocket-Key", &key_len);
    const char *up = header_value(head, end, "Upgrade", &up_len);
    if (!key || !up || up_len != 9 || strncasecmp(up, "websocket", 9) != 0) {
        buf_reserve(&c->out, sizeof refuse_400);
        memcpy(c->out.data + c->out.len, refuse_400, sizeof refuse_400 - 1);
        c->out.len += sizeof refuse_400 - 1;
        c->closing = 1;
        return 1;
    }
    char accept[29], reply[256];
    accept_for(key, key_len, accept);
    int len = snprintf(reply, sizeof reply,
                       "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Accept: %s\r\n\r\n",
                       accept);
    buf_reserve(&c->out, (size_t)len);
    memcpy(c->out.data + c->out.len, reply, (size_t)len);
    c->out.len += (size_t)len;
    c->open = 1;
    size_t rest = c->in.len - end;
    int rc = rest ? echo_frames(c, c->in.data + end, rest) : 0;
    free(c->in.data);
    memset(&c->in, 0, sizeof c->in);
    return rc < 0 ? -1 : 1;
}

/* Returns -1 when the connection is to be closed. */
static int econn_flush(struct econn *c) {
    while (buf_pending(&c->out)) {
        ssize_t w = send(c->fd, c->out.data + c->out.off, buf_pending(&c->out), MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                return 0;
            return -1;
        }
        c->out.off += (size_t)w;
    }
    c->out.off = c->out.len = 0;
    return c->closing ? -1 : 0;
}

static int econn_read(struct econn *c) {
    for (;;) {
        ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
        if (r == 0)
            return -1;
        if (r < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        if (!c->open) {
            buf_reserve(&c->in, (size_t)r);
            memcpy(c->in.data + c->in.len, rbuf, (size_t)r);
            c->in.len += (size_t)r;
            if (echo_handshake(c) < 0)
                return -1;
        } else if (echo_frames(c, rbuf, (size_t)r) < 0) {
            return -1;
        }
        /* A short read means the socket is drained: skip the read that would say EAGAIN. */
        if ((size_t)r < sizeof rbuf || c->closing || buf_pending(&c->out) >= OUT_HIGH)
            return 0;
    }
}

static int run_echo(int port, double limit) {
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
    if (lfd < 0)
        die("socket");
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind 127.0.0.1");
    if (listen(lfd, 4096) < 0)
        die("listen");
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd}, events[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    printf("{\"listening\": %d}\n", ntohs(addr.sin_port));
    fflush(stdout);
    double deadline = now() + limit;
    long accepted = 0;
    while (!stop_requested && now() < deadline) {
        int n = epoll_wait(ep, events, 256, 500);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].data.fd;
            if (fd == lfd) {
                int cfd;
                while ((cfd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if ((size_t)cfd >= econns_cap) {
                        size_t cap = econns_cap ? econns_cap : 1024;
                        while (cap <= (size_t)cfd)
                            cap *= 2;
                        struct econn **grown = realloc(econns, cap * sizeof *grown);
                        if (!grown)
                            die("out of memory");
                        memset(grown + econns_cap, 0, (cap - econns_cap) * sizeof *grown);
                        econns = grown;
                        econns_cap = cap;
                    }
                    struct econn *c = calloc(1, sizeof *c);
                    if (!c)
                        die("out of memory");
                    c->fd = cfd;
                    c->events = EPOLLIN;
                    nodelay(cfd);
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = cfd};
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &cev);
                    econns[cfd] = c;
                    accepted++;
                }
                continue;
            }
            struct econn *c = (size_t)fd < econns_cap ? econns[fd] : NULL;
            if (!c)
                continue;
            int bad = 0;
            if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                bad = econn_read(c) < 0;
            if (!bad)
                bad = econn_flush(c) < 0;
            if (bad)
                econn_close(ep, c);
            else
                econn_events(ep, c);
        }
    }
    for (size_t fd = 0; fd < econns_cap; fd++)
        if (econns[fd])
            econn_close(ep, econns[fd]);
    close(lfd);
    close(ep);
    fprintf(stderr, "wsload echo: %ld connections served\n", accepted);
    return 0;
}

/* ---- clients (load, idle) ------------------------------------------------------------------------------------- */
enum { C_WAIT, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_DONE, C_FAILED };

struct lconn {
    int fd, state;
    uint32_t events;
    char key[25], accept[29];
    char head[4096];
    size_t head_len;
    const unsigned char *w; /* what is being written: the handshake or the frame */
    size_t w_len, w_off;
    int waiting;            /* a round trip is in flight */
    struct frame_in f;
    uint64_t got;           /* payload bytes of the echo so far */
    double sent_at;
    long done;
    char request[1024];
    size_t request_len;
};

struct client {
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char host[300], path[1024];
    int ep;
    struct lconn *conns;
    int n;
    long rounds;          /* per connection */
    size_t size;
    unsigned char *plain; /* the payload */
    unsigned char *frame; /* the masked frame */
    size_t frame_len;
    float *lat;           /* latencies, ms */
    size_t lat_len, lat_cap;
    long errors, closed_by_peer;
    char first_error[256];
    int measuring, opened, in_progress;
};

static void client_error(struct client *cl, struct lconn *c, const char *what) {
    if (!cl->first_error[0])
        snprintf(cl->first_error, sizeof cl->first_error, "%s", what);
    cl->errors++;
    if (c->fd >= 0) {
        epoll_ctl(cl->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    if (c->state == C_CONNECTING || c->state == C_HANDSHAKE)
        cl->in_progress--;
    c->state = C_FAILED;
}

static int parse_url(struct client *cl, const char *url) {
    const char *p;
    if (strncmp(url, "ws://", 5) != 0) {
        fprintf(stderr, "wsload: %s is not a ws:// URL\n", url);
        return -1;
    }
    p = url + 5;
    const char *slash = strchr(p, '/');
    size_t authority = slash ? (size_t)(slash - p) : strlen(p);
    char auth[300], host[300];
    int port = 80;
    if (authority >= sizeof auth)
        return -1;
    memcpy(auth, p, authority);
    auth[authority] = '\0';
    snprintf(cl->host, sizeof cl->host, "%s", auth);
    snprintf(cl->path, sizeof cl->path, "%s", slash ? slash : "/");
    char *colon;
    if (auth[0] == '[') {
        char *close_br = strchr(auth, ']');
        if (!close_br)
            return -1;
        *close_br = '\0';
        snprintf(host, sizeof host, "%s", auth + 1);
        if (close_br[1] == ':')
            port = atoi(close_br + 2);
    } else {
        colon = strrchr(auth, ':');
        if (colon) {
            *colon = '\0';
            port = atoi(colon + 1);
        }
        snprintf(host, sizeof host, "%s", auth);
    }
    if (port <= 0 || port > 65535)
        return -1;
    memset(&cl->addr, 0, sizeof cl->addr);
    struct sockaddr_in *a4 = (struct sockaddr_in *)&cl->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&cl->addr;
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127)
            goto not_loopback;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        cl->addr_len = sizeof *a4;
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr))
            goto not_loopback;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        cl->addr_len = sizeof *a6;
    } else {
        goto not_loopback;
    }
    return 0;
not_loopback:
    fprintf(stderr, "wsload: %s is not on this machine (only 127.0.0.0/8, ::1 and localhost)\n", url);
    return -1;
}

static void lconn_events(struct client *cl, struct lconn *c, uint32_t want) {
    if (c->fd < 0 || want == c->events)
        return;
    struct epoll_event ev = {.events = want, .data.u32 = (uint32_t)(c - cl->conns)};
    epoll_ctl(cl->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->events = want;
}

static void lconn_start(struct client *cl, struct lconn *c, const unsigned char *nonce) {
    base64(nonce, 16, c->key);
    accept_for(c->key, strlen(c->key), c->accept);
    c->request_len = (size_t)snprintf(c->request, sizeof c->request,
                                      "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                      "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
                                      cl->path, cl->host, c->key);
    c->fd = socket(cl->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        c->state = C_CONNECTING;
        cl->in_progress++;
        client_error(cl, c, "socket() failed (out of file descriptors?)");
        return;
    }
    nodelay(c->fd);
    c->state = C_CONNECTING;
    cl->in_progress++;
    c->events = EPOLLOUT;
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)(c - cl->conns)};
    epoll_ctl(cl->ep, EPOLL_CTL_ADD, c->fd, &ev);
    if (connect(c->fd, (struct sockaddr *)&cl->addr, cl->addr_len) < 0 && errno != EINPROGRESS)
        client_error(cl, c, "connect failed");
}

/* Write what is pending; returns -1 on error. */
static int lconn_write(struct client *cl, struct lconn *c) {
    while (c->w_off < c->w_len) {
        ssize_t w = send(c->fd, c->w + c->w_off, c->w_len - c->w_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            client_error(cl, c, "write failed (peer closed?)");
            return -1;
        }
        c->w_off += (size_t)w;
    }
    lconn_events(cl, c, EPOLLIN | (c->w_off < c->w_len ? EPOLLOUT : 0));
    return 0;
}

static void send_round_trip(struct client *cl, struct lconn *c) {
    c->w = cl->frame;
    c->w_len = cl->frame_len;
    c->w_off = 0;
    c->waiting = 1;
    c->got = 0;
    c->sent_at = now();
    lconn_write(cl, c);
}

static void finish(struct client *cl, struct lconn *c) {
    static const unsigned char close_frame[] = {0x88, 0x82, 1, 2, 3, 4, 0x03 ^ 1, 0xe8 ^ 2};
    if (c->fd >= 0) {
        (void)!send(c->fd, close_frame, sizeof close_frame, MSG_NOSIGNAL | MSG_DONTWAIT);
        epoll_ctl(cl->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    c->state = C_DONE;
}

static void round_trip_done(struct client *cl, struct lconn *c, double deadline) {
    double t = now();
    c->waiting = 0;
    c->done++;
    if (cl->lat_len == cl->lat_cap) {
        size_t cap = cl->lat_cap ? cl->lat_cap * 2 : 65536;
        float *grown = realloc(cl->lat, cap * sizeof *grown);
        if (!grown)
            die("out of memory");
        cl->lat = grown;
        cl->lat_cap = cap;
    }
    cl->lat[cl->lat_len++] = (float)((t - c->sent_at) * 1000.0);
    if (c->done < cl->rounds && t < deadline)
        send_round_trip(cl, c);
    else
        finish(cl, c);
}

/* Handle echo bytes of an open connection; returns -1 on error. */
static int echo_bytes(struct client *cl, struct lconn *c, unsigned char *p, size_t n, double deadline) {
    while (n > 0) {
        if (!c->f.in_payload) {
            long used = frame_header(&c->f, p, n);
            if (used < 0) {
                client_error(cl, c, "invalid frame from the server");
                return -1;
            }
            p += used, n -= (size_t)used;
            if (!c->f.in_payload)
                break;
            if (c->f.opcode == 8) {
                cl->closed_by_peer++;
                client_error(cl, c, "the server sent a close frame");
                return -1;
            }
            if (c->f.opcode < 8 && !c->waiting) {
                client_error(cl, c, "a data frame nobody asked for");
                return -1;
            }
        }
        size_t take = c->f.remaining < n ? (size_t)c->f.remaining : n;
        if (c->f.opcode < 8) {
            if (c->got + take > cl->size || memcmp(p, cl->plain + c->got, take) != 0) {
                client_error(cl, c, "the echo differs from what was sent");
                return -1;
            }
            c->got += take;
        }
        c->f.remaining -= take;
        p += take, n -= take;
        if (c->f.remaining == 0) {
            c->f.in_payload = 0;
            if (c->f.opcode < 8 && c->f.fin) {
                if (c->got != cl->size) {
                    client_error(cl, c, "the echo is shorter than what was sent");
                    return -1;
                }
                if (c->w_off < c->w_len) {
                    client_error(cl, c, "the echo came back before the frame was sent");
                    return -1;
                }
                if (cl->measuring)
                    round_trip_done(cl, c, deadline);
                else
                    c->waiting = 0;
                if (c->state != C_OPEN)
                    return -1;
            }
        }
    }
    return 0;
}

static int handshake_bytes(struct client *cl, struct lconn *c, const unsigned char *p, size_t n, double deadline) {
    size_t room = sizeof c->head - c->head_len;
    size_t take = n < room ? n : room;
    memcpy(c->head + c->head_len, p, take);
    c->head_len += take;
    size_t end = head_end(c->head, c->head_len), alen = 0;
    if (!end) {
        if (c->head_len == sizeof c->head)
            client_error(cl, c, "the handshake answer is too long");
        return c->head_len == sizeof c->head ? -1 : 0;
    }
    if (c->head_len < 12 || strncmp(c->head + 9, "101", 3) != 0) {
        char what[160];
        const char *eol = memchr(c->head, '\r', c->head_len);
        int len = eol ? (int)(eol - c->head) : 40;
        snprintf(what, sizeof what, "handshake refused: %.*s", len > 100 ? 100 : len, c->head);
        client_error(cl, c, what);
        return -1;
    }
    const char *accept = header_value(c->head, end, "Sec-WebSocket-Accept", &alen);
    if (!accept || alen != 28 || memcmp(accept, c->accept, 28) != 0) {
        client_error(cl, c, "wrong Sec-WebSocket-Accept");
        return -1;
    }
    c->state = C_OPEN;
    cl->opened++;
    cl->in_progress--;
    size_t rest = c->head_len - end;
    if (rest)
        return echo_bytes(cl, c, (unsigned char *)c->head + end, rest, deadline);
    return 0;
}

static void lconn_event(struct client *cl, struct lconn *c, uint32_t events, double deadline) {
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            errno = err;
            char what[128];
            snprintf(what, sizeof what, "connect: %s", strerror(err));
            client_error(cl, c, what);
            return;
        }
        c->state = C_HANDSHAKE;
        c->w = (const unsigned char *)c->request;
        c->w_len = c->request_len;
        c->w_off = 0;
        lconn_write(cl, c);
        return;
    }
    if (c->state != C_HANDSHAKE && c->state != C_OPEN)
        return;
    if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
        for (;;) {
            ssize_t r = recv(c->fd, rbuf, sizeof rbuf, 0);
            if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                char what[128];
                snprintf(what, sizeof what, "the server %s", r == 0 ? "closed the connection" : strerror(errno));
                cl->closed_by_peer++;
                client_error(cl, c, what);
                return;
            }
            if (r < 0)
                break;
            int rc = c->state == C_HANDSHAKE ? handshake_bytes(cl, c, rbuf, (size_t)r, deadline)
                                             : echo_bytes(cl, c, rbuf, (size_t)r, deadline);
            if (rc < 0 || c->state != C_OPEN || (size_t)r < sizeof rbuf)
                break;
        }
    }
    if (c->fd >= 0 && (c->state == C_OPEN || c->state == C_HANDSHAKE) && (events & EPOLLOUT))
        lconn_write(cl, c);
}

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static double percentile(float *sorted, size_t n, double q) {
    if (n == 0)
        return 0.0;
    size_t i = (size_t)(q * (double)n);
    return sorted[i >= n ? n - 1 : i];
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

/* Drive the event loop until `until` says stop or the time limit passes. */
static void client_loop(struct client *cl, double deadline, double hard_deadline, int (*until)(struct client *),
                        int concurrency, unsigned char *nonces, int *next, int stdin_fd) {
    struct epoll_event events[256];
    while (!stop_requested && !until(cl) && now() < hard_deadline) {
        while (*next < cl->n && cl->in_progress < concurrency) {
            lconn_start(cl, &cl->conns[*next], nonces + 16 * (size_t)*next);
            (*next)++;
        }
        int n = epoll_wait(cl->ep, events, 256, 100);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            if (events[i].data.u32 == UINT32_MAX) {
                char sink[512];
                ssize_t r = read(stdin_fd, sink, sizeof sink);
                if (r <= 0)
                    stdin_closed = stop_requested = 1;
                continue;
            }
            lconn_event(cl, &cl->conns[events[i].data.u32], events[i].events, deadline);
        }
    }
}

static int all_settled(struct client *cl) { return cl->opened + (int)cl->errors >= cl->n && cl->in_progress == 0; }

static int all_done(struct client *cl) {
    for (int i = 0; i < cl->n; i++)
        if (cl->conns[i].state == C_OPEN)
            return 0;
    return 1;
}

static int never(struct client *cl) {
    (void)cl;
    return 0;
}

static int run_client(int idle, const char *url, int conns, long rounds, size_t size, double duration, double limit,
                      int concurrency) {
    struct client cl;
    memset(&cl, 0, sizeof cl);
    if (parse_url(&cl, url) < 0)
        return 2;
    cl.n = conns;
    cl.rounds = rounds;
    cl.size = size;
    cl.ep = epoll_create1(EPOLL_CLOEXEC);
    cl.conns = calloc((size_t)conns, sizeof *cl.conns);
    unsigned char *nonces = malloc(16 * (size_t)conns);
    if (!cl.conns || !nonces)
        die("out of memory");
    int ur = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (ur < 0 || read(ur, nonces, 16 * (size_t)conns) != (ssize_t)(16 * (size_t)conns))
        die("/dev/urandom");
    close(ur);
    for (int i = 0; i < conns; i++)
        cl.conns[i].fd = -1;
    if (!idle) {
        unsigned char mask[4] = {0x37, 0xfa, 0x21, 0x3d};
        uint32_t x = 2463534242u;
        cl.plain = malloc(size ? size : 1);
        cl.frame = malloc(size + 14);
        if (!cl.plain || !cl.frame)
            die("out of memory");
        for (size_t i = 0; i < size; i++) {
            x ^= x << 13, x ^= x >> 17, x ^= x << 5;
            cl.plain[i] = (unsigned char)x;
        }
        cl.frame_len = frame_head(cl.frame, 0x82, size, mask);
        for (size_t i = 0; i < size; i++)
            cl.frame[cl.frame_len + i] = cl.plain[i] ^ mask[i & 3];
        cl.frame_len += size;
    }
    double t0 = now(), hard = t0 + limit;
    int next = 0;
    client_loop(&cl, hard, hard, all_settled, concurrency, nonces, &next, -1);
    double open_seconds = now() - t0;
    if (idle) {
        printf("{\"open\": %d, \"failed\": %ld, \"seconds\": %.3f}\n", cl.opened, cl.errors, open_seconds);
        fflush(stdout);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = UINT32_MAX};
        epoll_ctl(cl.ep, EPOLL_CTL_ADD, 0, &ev); /* not a pipe or tty (a file): the time limit ends it */
        double held_from = now();
        client_loop(&cl, hard, hard, never, concurrency, nonces, &next, 0);
        printf("{\"mode\": \"idle\", \"url\": ");
        json_string(url);
        printf(", \"connections\": %d, \"open\": %d, \"errors\": %ld, \"closed_by_peer\": %ld, "
               "\"open_seconds\": %.3f, \"held_seconds\": %.3f, \"until\": \"%s\"",
               conns, cl.opened, cl.errors, cl.closed_by_peer, open_seconds, now() - held_from,
               stdin_closed ? "stdin closed" : now() >= hard ? "time limit" : "signal");
        if (cl.first_error[0]) {
            printf(", \"first_error\": ");
            json_string(cl.first_error);
        }
        printf("}\n");
        for (int i = 0; i < conns; i++)
            if (cl.conns[i].state == C_OPEN)
                finish(&cl, &cl.conns[i]);
        return cl.errors ? 1 : 0;
    }
    long connect_errors = cl.errors;
    /* The moment the round trips start, for a caller that acts on it (the tests stop the server then). */
    fprintf(stderr, "wsload load: %d of %d connections open, round trips start\n", cl.opened, conns);
    fflush(stderr);
    cl.measuring = 1;
    double start = now(), deadline = start + duration;
    if (deadline > hard)
        deadline = hard;
    for (int i = 0; i < conns; i++)
        if (cl.conns[i].state == C_OPEN && rounds > 0)
            send_round_trip(&cl, &cl.conns[i]);
        else if (cl.conns[i].state == C_OPEN)
            finish(&cl, &cl.conns[i]);
    /* Round trips in flight at the deadline may finish; the time limit ends everything. */
    client_loop(&cl, deadline, hard, all_done, concurrency, nonces, &next, -1);
    double seconds = now() - start;
    int incomplete = 0;
    for (int i = 0; i < conns; i++)
        if (cl.conns[i].state == C_OPEN) {
            incomplete++;
            finish(&cl, &cl.conns[i]);
        }
    long total = 0;
    for (int i = 0; i < conns; i++)
        total += cl.conns[i].done;
    qsort(cl.lat, cl.lat_len, sizeof *cl.lat, cmp_float);
    printf("{\"mode\": \"load\", \"url\": ");
    json_string(url);
    printf(", \"connections\": %d, \"opened\": %d, \"size\": %zu, \"round_trips\": %ld, \"seconds\": %.6f, "
           "\"msgs_per_s\": %.1f, \"bytes_per_s\": %.1f, \"p50_ms\": %.4f, \"p99_ms\": %.4f, \"errors\": %ld, "
           "\"connect_errors\": %ld, \"cut_off\": %d, \"complete\": %s, \"connect_seconds\": %.3f",
           conns, cl.opened, size, total, seconds, seconds > 0 ? (double)total / seconds : 0.0,
           seconds > 0 ? (double)total * (double)size / seconds : 0.0, percentile(cl.lat, cl.lat_len, 0.5),
           percentile(cl.lat, cl.lat_len, 0.99), cl.errors, connect_errors, incomplete,
           total == (long)conns * rounds ? "true" : "false", open_seconds);
    if (cl.first_error[0]) {
        printf(", \"first_error\": ");
        json_string(cl.first_error);
    }
    printf("}\n");
    return cl.errors ? 1 : 0;
}

static void usage(void) {
    fprintf(stderr, "usage: wsload echo [-p PORT] [-t SECONDS]\n"
                    "       wsload load -u ws://127.0.0.1:PORT/PATH [-c CONNS] [-n ROUND_TRIPS] [-s BYTES]"
                    " [-d SECONDS] [-t SECONDS] [-k CONNECTING]\n"
                    "       wsload idle -u ws://127.0.0.1:PORT/PATH [-c CONNS] [-t SECONDS] [-k CONNECTING]\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2)
        usage();
    const char *mode = argv[1], *url = NULL;
    long port = 0, conns = 1, rounds = 1000, size = 64, concurrency = 64;
    double duration = 3600, limit = -1;
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc || argv[i][0] != '-' || strlen(argv[i]) != 2)
            usage();
        const char *v = argv[++i];
        char *end = NULL;
        switch (argv[i - 1][1]) {
        case 'u': url = v; break;
        case 'p': port = strtol(v, &end, 10); break;
        case 'c': conns = strtol(v, &end, 10); break;
        case 'n': rounds = strtol(v, &end, 10); break;
        case 's': size = strtol(v, &end, 10); break;
        case 'k': concurrency = strtol(v, &end, 10); break;
        case 'd': duration = strtod(v, &end); break;
        case 't': limit = strtod(v, &end); break;
        default: usage();
        }
        if (end && (end == v || *end != '\0'))
            usage();
    }
    if (port < 0 || port > 65535 || conns < 1 || conns > MAX_CONNS || rounds < 0 || size < 0 ||
        size > (long)MAX_FRAME_BYTES || concurrency < 1 || duration <= 0)
        usage();
    setup_process();
    if (strcmp(mode, "echo") == 0)
        return run_echo((int)port, limit > 0 ? limit : 3600);
    if (strcmp(mode, "load") == 0 || strcmp(mode, "idle") == 0) {
        if (!url)
            usage();
        return run_client(mode[0] == 'i', url, (int)conns, rounds, (size_t)size, duration, limit > 0 ? limit : 60,
                          (int)concurrency);
    }
    usage();
    return 2;
}
