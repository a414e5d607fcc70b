/* Licensed to the Apache Software Foundation (ASF) under one or more
 * contributor license agreements. The ASF licenses this file to You under the
 * Apache License, Version 2.0 (the "License"); you may not use this file
 * except in compliance with the License. You may obtain a copy of the License
 * at http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
 * WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
 * License for the specific language governing permissions and limitations
 * under the License.
 */

/* wstunnel_loop.c: the raw tunnel's state machine, the worker's poll() loop
 * over one tunnel, and the epoll event loop over many (see wstunnel.h). It
 * knows descriptors, limits and the frame tracker: no httpd API, so that
 * tests/loop_test.c can drive it over socketpair()s. */

#define PWS_LOOP_ONLY
#include "wstunnel.h"

#if defined(__linux__)
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#endif

/* Bytes wait for this end: copied (pending) or in its pipe (piped). */
#define PWS_HAS_PENDING(end) ((end)->pending != NULL || (end)->piped > 0)

/* The poll events end `i` needs now: readable while what it sends has somewhere
 * to go (backpressure: a stuck receiver stops its sender), writable while bytes
 * wait for it. */
static short proxy_wstunnel_raw_wanted(const proxy_wstunnel_raw *t, int i)
{
    const proxy_wstunnel_end *end = &t->end[i], *other = &t->end[1 - i];
    short events = 0;
    if (!end->read_done && !PWS_HAS_PENDING(other)) {
        events |= POLLIN;
    }
    if (PWS_HAS_PENDING(end)) {
        events |= POLLOUT;
    }
    return events;
}

/* Both ends sent their FIN, or both their close frames, and everything was
 * delivered. */
static int proxy_wstunnel_raw_finished(const proxy_wstunnel_raw *t)
{
    return ((t->end[0].read_done && t->end[1].read_done)
            || (t->end[0].frames.closed && t->end[1].frames.closed))
           && !PWS_HAS_PENDING(&t->end[0]) && !PWS_HAS_PENDING(&t->end[1]);
}

/* Pass our FIN on to `end` once the other end has sent its last byte and all of
 * it was delivered. */
static void proxy_wstunnel_raw_pass_fin(proxy_wstunnel_raw *t, int i)
{
    proxy_wstunnel_end *end = &t->end[i];
    if (t->end[1 - i].read_done && !PWS_HAS_PENDING(end) && !end->write_shut) {
        shutdown(end->fd, SHUT_WR);
        end->write_shut = 1;
    }
}

/* Write `data` to end `i` without blocking; what it does not take now is kept
 * for when it is writable. 0: fine; -1: the end is gone. */
static int proxy_wstunnel_raw_write(proxy_wstunnel_raw *t, int i,
                                    const char *data, apr_size_t length,
                                    apr_time_t now)
{
    proxy_wstunnel_end *end = &t->end[i];
    while (length > 0) {
        ssize_t sent = send(end->fd, data, length, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                break;
            }
            return -1;
        }
        data += sent;
        length -= (apr_size_t)sent;
    }
    if (length > 0) {
        end->pending = malloc(length);
        if (end->pending == NULL) {
            return -1;
        }
        memcpy(end->pending, data, length);
        end->pending_length = length;
        end->pending_offset = 0;
        end->blocked_since = now;
    }
    return 0;
}

/* Was the EOF just read on `fd` a reset? A reset's error is reported once: when
 * someone else read it first (the MPM on its own descriptor of a handed-off
 * socket), recv() says 0 as for a FIN. A FIN leaves the socket in CLOSE-WAIT
 * (when we have not sent ours); a reset leaves it closed. */
static int proxy_wstunnel_was_reset(int fd)
{
#if defined(__linux__) && defined(TCP_INFO)
    struct tcp_info info;
    socklen_t size = sizeof(info);
    memset(&info, 0, sizeof(info));
    return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &size) == 0
           && info.tcpi_state == TCP_CLOSE;
#else
    (void)fd;
    return 0;
#endif
}

static void proxy_wstunnel_close_pipe(proxy_wstunnel_end *end)
{
    if (end->pipe[0] >= 0) {
        close(end->pipe[0]);
        close(end->pipe[1]);
    }
    end->pipe[0] = end->pipe[1] = -1;
    end->piped = 0;
}

#if PWS_SPLICE
/* Move what end `i`'s pipe holds into its socket. 0: fine (all of it, or it is
 * full for now); -1: the end is gone. An emptied pipe is closed once the frame
 * that filled it has passed. */
static int proxy_wstunnel_pipe_flush(proxy_wstunnel_raw *t, int i,
                                     apr_time_t now)
{
    proxy_wstunnel_end *end = &t->end[i];
    while (end->piped > 0) {
        ssize_t moved = splice(end->pipe[0], NULL, end->fd, NULL, end->piped,
                               SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (moved < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (end->blocked_since == 0) {
                    end->blocked_since = now;
                }
                return 0;
            }
            return -1;
        }
        end->piped -= (apr_size_t)moved;
        t->last_activity = now;
    }
    end->blocked_since = 0;
    if (t->end[1 - i].frames.payload_left < PWS_SPLICE_MIN) {
        proxy_wstunnel_close_pipe(end);
    }
    return 0;
}

/* Read from end `i` by splice(2) when it is in the payload of a big frame. 1:
 * moved (or nothing there yet); 2: EOF; 0: not this way (no big payload, no
 * pipe to be had): read as usual; -1: broken. */
static int proxy_wstunnel_raw_splice(proxy_wstunnel_raw *t, int i,
                                     apr_time_t now)
{
    proxy_wstunnel_end *end = &t->end[i], *to = &t->end[1 - i];
    apr_size_t want;
    ssize_t got;
    if (end->frames.lost || end->frames.closed || end->frames.head_length != 0
        || end->frames.payload_left < PWS_SPLICE_MIN) {
        return 0;
    }
    if (to->pipe[0] < 0) {
        int k;
        if (pipe2(to->pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
            to->pipe[0] = to->pipe[1] = -1;
            return 0;
        }
        for (k = 0; k < 2; k++) { /* a splice to or from a socket waits unless
                                     the socket says not to */
            int flags = fcntl(t->end[k].fd, F_GETFL);
            if (flags >= 0 && !(flags & O_NONBLOCK)) {
                fcntl(t->end[k].fd, F_SETFL, flags | O_NONBLOCK);
            }
        }
    }
    want = end->frames.payload_left < PWS_RAW_BYTES
               ? (apr_size_t)end->frames.payload_left
               : PWS_RAW_BYTES;
    do {
        got = splice(end->fd, NULL, to->pipe[1], NULL, want,
                     SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    } while (got < 0 && errno == EINTR);
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 1;
        }
        if (errno == EINVAL || errno == ENOSYS) {
            proxy_wstunnel_close_pipe(
                to); /* no splice for these descriptors: copy */
            return 0;
        }
        return -1;
    }
    if (got == 0) {
        return 2;
    }
    t->last_activity = now;
    end->frames.payload_left -= (apr_uint64_t)got;
    to->piped = (apr_size_t)got;
    return proxy_wstunnel_pipe_flush(t, 1 - i, now) == 0 ? 1 : -1;
}
#endif

/* End `i` is ready (`revents` as poll() reports them; a hang-up or error counts
 * as ready for whatever the end was waiting for, and the read or write then
 * says what happened). 1: the tunnel has ended cleanly, both ways; -1: it is
 * broken (reset, error), end it now; 0: go on. */
static int proxy_wstunnel_raw_ready(proxy_wstunnel_raw *t, int i, short revents,
                                    char *buffer, apr_size_t size,
                                    apr_time_t now)
{
    proxy_wstunnel_end *end = &t->end[i];
    short wanted = proxy_wstunnel_raw_wanted(t, i);
    short trouble = revents & (POLLERR | POLLHUP | POLLNVAL);

    if ((wanted & POLLOUT) && (revents & (POLLOUT | trouble))) {
#if PWS_SPLICE
        if (end->piped > 0) {
            if (proxy_wstunnel_pipe_flush(t, i, now) != 0) {
                return -1;
            }
            if (end->piped == 0) {
                proxy_wstunnel_raw_pass_fin(t, i);
            }
        }
#endif
        while (end->pending_length > 0) {
            ssize_t sent =
                send(end->fd, end->pending + end->pending_offset,
                     end->pending_length, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (sent < 0) {
                if (errno == EINTR) {
                    continue;
                }
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    break;
                }
                return -1;
            }
            end->pending_offset += (apr_size_t)sent;
            end->pending_length -= (apr_size_t)sent;
            t->last_activity = now;
        }
        if (end->pending != NULL && end->pending_length == 0) {
            free(end->pending);
            end->pending = NULL;
            end->blocked_since = 0;
            proxy_wstunnel_raw_pass_fin(t, i);
        }
    }
    if ((wanted & POLLIN) && (revents & (POLLIN | trouble))) {
        ssize_t got = -1;
        int spliced = 0;
#if PWS_SPLICE
        spliced = proxy_wstunnel_raw_splice(t, i, now);
        if (spliced < 0) {
            return -1;
        }
        if (spliced == 2) {
            got = 0; /* EOF: as from recv() */
        }
        else if (spliced == 1) {
            return proxy_wstunnel_raw_finished(t) ? 1 : 0;
        }
#endif
        if (spliced == 0) {
            do {
                got = recv(end->fd, buffer, size, MSG_DONTWAIT);
            } while (got < 0 && errno == EINTR);
        }
        if (got > 0) {
            t->last_activity = now;
            proxy_wstunnel_frames_feed(&end->frames, buffer, (apr_size_t)got);
            if (proxy_wstunnel_raw_write(t, 1 - i, buffer, (apr_size_t)got, now)
                != 0) {
                return -1;
            }
            if (end->frames.closed && t->fin_since == 0) {
                t->fin_since = now; /* a close frame relayed: the answer has the
                                       fin timeout to come */
            }
        }
        else if (got == 0) {
            if (!end->write_shut && proxy_wstunnel_was_reset(end->fd)) {
                return -1;
            }
            /* Half-close: pass the FIN on, keep the other direction open for
             * what it still sends (for at most the fin timeout). */
            end->read_done = 1;
            if (t->fin_since == 0) {
                t->fin_since = now;
            }
            proxy_wstunnel_raw_pass_fin(t, 1 - i);
        }
        else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            return -1;
        }
    }
    else if ((revents & POLLNVAL)
             || ((revents & POLLERR) && !(wanted & POLLOUT))) {
        return -1;
    }
    return proxy_wstunnel_raw_finished(t) ? 1 : 0;
}

/* Has the tunnel been silent longer than its idle limit, or a receiver refused
 * our bytes too long (1)? Or has one side finished (FIN, close frame) longer
 * than the fin timeout ago (2)? 0: neither. */
static int proxy_wstunnel_raw_expired(const proxy_wstunnel_raw *t,
                                      apr_time_t now)
{
    int i;
    if (t->fin_timeout > 0 && t->fin_since != 0
        && now - t->fin_since >= t->fin_timeout) {
        return 2;
    }
    if (t->idle_timeout > 0 && now - t->last_activity >= t->idle_timeout) {
        return 1;
    }
    for (i = 0; i < 2; i++) {
        if (PWS_HAS_PENDING(&t->end[i]) && t->write_timeout > 0
            && now - t->end[i].blocked_since >= t->write_timeout) {
            return 1;
        }
    }
    return 0;
}

/* How long poll() may sleep before the next deadline of `t`, in milliseconds
 * (-1: no deadline). */
static int proxy_wstunnel_raw_wait_ms(const proxy_wstunnel_raw *t,
                                      apr_time_t now)
{
    apr_time_t deadlines[4];
    apr_interval_time_t wait;
    int count = 0, i;
    if (t->idle_timeout > 0) {
        deadlines[count++] = t->last_activity + t->idle_timeout;
    }
    if (t->fin_timeout > 0 && t->fin_since != 0) {
        deadlines[count++] = t->fin_since + t->fin_timeout;
    }
    for (i = 0; i < 2; i++) {
        if (PWS_HAS_PENDING(&t->end[i]) && t->write_timeout > 0) {
            deadlines[count++] = t->end[i].blocked_since + t->write_timeout;
        }
    }
    if (count == 0) {
        return -1;
    }
    wait = deadlines[0] - now;
    for (i = 1; i < count; i++) {
        if (deadlines[i] - now < wait) {
            wait = deadlines[i] - now;
        }
    }
    return wait <= 0 ? 0 : (int)((wait + 999) / 1000);
}

/* A tunnel that ends other than cleanly (the fin timeout, the idle limit, a
 * reset or error) closes the backend with a reset (zero linger) unless the
 * backend sent its FIN: a backend that does not close on EOF (broadwayd) would
 * sit in CLOSE-WAIT for good after a FIN, holding the dead client's session.
 * The reset takes its socket away at once and tells it, at its next read or
 * write, that the client is gone. The client's side is closed as always (what
 * was sent to it still arrives). */
void proxy_wstunnel_reset_on_close(int fd)
{
    struct linger abort_close;
    abort_close.l_onoff = 1;
    abort_close.l_linger = 0;
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof(abort_close));
}

void proxy_wstunnel_raw_free_pending(proxy_wstunnel_raw *t)
{
    int i;
    for (i = 0; i < 2; i++) {
        free(t->end[i].pending);
        t->end[i].pending = NULL;
        proxy_wstunnel_close_pipe(&t->end[i]);
    }
}

void proxy_wstunnel_raw_init(proxy_wstunnel_raw *t, int client_fd,
                             int backend_fd, apr_interval_time_t idle_timeout,
                             apr_interval_time_t fin_timeout,
                             apr_interval_time_t write_timeout)
{
    memset(t, 0, sizeof(*t));
    t->end[0].fd = client_fd;
    t->end[1].fd = backend_fd;
    t->end[0].tunnel = t->end[1].tunnel = t;
    t->end[0].pipe[0] = t->end[0].pipe[1] = t->end[1].pipe[0] =
        t->end[1].pipe[1] = -1;
    t->idle_timeout = idle_timeout;
    t->fin_timeout = fin_timeout;
    t->write_timeout = write_timeout;
    t->last_activity = apr_time_now();
}

/* The worker runs the raw tunnel itself until it ends. APR_SUCCESS: both sides
 * finished (FINs or close frames); APR_TIMEUP: idle or stuck past the limit;
 * APR_EOF: one side finished and the fin timeout passed; APR_ECONNRESET: a side
 * broke off. */
apr_status_t proxy_wstunnel_raw_run(proxy_wstunnel_raw *t, char *buffer)
{
    for (;;) {
        struct pollfd fds[2];
        apr_time_t now = apr_time_now();
        int i, polled;
        for (i = 0; i < 2; i++) {
            fds[i].events = proxy_wstunnel_raw_wanted(t, i);
            fds[i].fd =
                fds[i].events
                    ? t->end[i].fd
                    : -1; /* an end we wait nothing from is not polled */
            fds[i].revents = 0;
        }
        polled = poll(fds, 2, proxy_wstunnel_raw_wait_ms(t, now));
        if (polled < 0 && errno == EINTR) {
            continue;
        }
        if (polled < 0) {
            return APR_FROM_OS_ERROR(errno);
        }
        now = apr_time_now();
        /* Each end gets one read of at most PWS_RAW_BYTES per round: a flood
         * one way cannot starve the other. */
        for (i = 0; i < 2; i++) {
            int step;
            if (fds[i].revents == 0) {
                continue;
            }
            step = proxy_wstunnel_raw_ready(t, i, fds[i].revents, buffer,
                                            PWS_RAW_BYTES, now);
            if (step > 0) {
                return APR_SUCCESS;
            }
            if (step < 0) {
                return APR_ECONNRESET;
            }
        }
        /* Deadlines count even while bytes flow: a half-closed tunnel ends
         * after the fin timeout, busy or not. */
        switch (proxy_wstunnel_raw_expired(t, now)) {
        case 1:
            return APR_TIMEUP;
        case 2:
            return APR_EOF;
        default:
            break;
        }
    }
}

#if PWS_HANDOFF
/* The event loop one child process runs for the tunnels its workers handed off
 * (ProxyWebsocketHandoff On, threaded MPMs). It is made on the first handoff,
 * holds at most `limit` tunnels (two descriptors each: more stay with their
 * worker) and, when the child exits (graceful restart, MaxConnectionsPerChild),
 * keeps the child alive until its tunnels have ended, as a worker holding a
 * tunnel would. Only malloc'd memory and descriptors of its own (dups of
 * Apache's) are touched here: no pool, no filter, no conn_rec. */

/* Keep the end's epoll registration in step with what it waits for. -1: epoll
 * refused (end the tunnel). */
static int proxy_wstunnel_loop_register(proxy_wstunnel_loop *loop,
                                        proxy_wstunnel_end *end)
{
    short wanted = proxy_wstunnel_raw_wanted(
        end->tunnel, end == &end->tunnel->end[0] ? 0 : 1);
    struct epoll_event event;
    int done;
    if (wanted == end->events) {
        return 0;
    }
    memset(&event, 0, sizeof(event));
    event.events =
        ((wanted & POLLIN) ? EPOLLIN : 0) | ((wanted & POLLOUT) ? EPOLLOUT : 0);
    event.data.ptr = end;
    /* An end we wait nothing from leaves the set: epoll would report its
     * hang-up over and over. */
    if (wanted == 0) {
        done = epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, end->fd, &event);
    }
    else {
        done = epoll_ctl(loop->epoll_fd,
                         end->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, end->fd,
                         &event);
    }
    if (done != 0) {
        return -1;
    }
    end->events = wanted;
    return 0;
}

/* Unlink and close a tunnel (`clean`: it finished both ways; else its backend
 * is reset unless it sent its FIN); it is freed after the batch of events that
 * may still name it. */
static void proxy_wstunnel_loop_close(proxy_wstunnel_loop *loop,
                                      proxy_wstunnel_raw *t, int clean,
                                      proxy_wstunnel_raw **dead)
{
    int i;
    if (!clean && !t->end[1].read_done) {
        proxy_wstunnel_reset_on_close(t->end[1].fd);
    }
    for (i = 0; i < 2; i++) {
        struct epoll_event event;
        memset(&event, 0, sizeof(event));
        if (t->end[i].events) {
            epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, t->end[i].fd, &event);
        }
        close(t->end[i].fd);
    }
    proxy_wstunnel_raw_free_pending(t);
    if (t->prev) {
        t->prev->next = t->next;
    }
    else {
        loop->tunnels = t->next;
    }
    if (t->next) {
        t->next->prev = t->prev;
    }
    t->closed = 1;
    t->next = *dead;
    *dead = t;
    loop->count--;
}

static void *proxy_wstunnel_loop_run(void *data)
{
    proxy_wstunnel_loop *loop = data;
    struct epoll_event events[PWS_LOOP_EVENTS];
    apr_time_t last_sweep = apr_time_now();
    for (;;) {
        proxy_wstunnel_raw *dead = NULL, *t, *next;
        int ready = epoll_wait(loop->epoll_fd, events, PWS_LOOP_EVENTS,
                               PWS_LOOP_TICK_MS),
            i;
        apr_time_t now = apr_time_now();
        pthread_mutex_lock(&loop->lock);
        for (i = 0; i < ready; i++) {
            proxy_wstunnel_end *end = events[i].data.ptr;
            short revents = 0;
            int step;
            if (end == NULL) { /* the wake-up pipe */
                char drained[16];
                while (read(loop->wake[0], drained, sizeof(drained)) > 0) {
                }
                continue;
            }
            t = end->tunnel;
            if (t->closed) {
                continue;
            }
            revents |= (events[i].events & EPOLLIN) ? POLLIN : 0;
            revents |= (events[i].events & EPOLLOUT) ? POLLOUT : 0;
            revents |= (events[i].events & EPOLLERR) ? POLLERR : 0;
            revents |= (events[i].events & EPOLLHUP) ? POLLHUP : 0;
            step = proxy_wstunnel_raw_ready(t, end == &t->end[0] ? 0 : 1,
                                            revents, loop->buffer,
                                            sizeof(loop->buffer), now);
            if (step != 0 || proxy_wstunnel_loop_register(loop, &t->end[0]) != 0
                || proxy_wstunnel_loop_register(loop, &t->end[1]) != 0) {
                proxy_wstunnel_loop_close(loop, t, step > 0, &dead);
            }
        }
        if (now - last_sweep >= (apr_time_t)PWS_LOOP_TICK_MS * 1000) {
            last_sweep = now;
            for (t = loop->tunnels; t; t = next) {
                next = t->next;
                if (proxy_wstunnel_raw_expired(t, now)) {
                    proxy_wstunnel_loop_close(loop, t, 0, &dead);
                }
            }
        }
        for (t = dead; t; t = next) {
            next = t->next;
            free(t);
        }
        if (loop->stopping && loop->count == 0) {
            pthread_mutex_unlock(&loop->lock);
            return NULL;
        }
        pthread_mutex_unlock(&loop->lock);
    }
}

/* Stop `loop` once the tunnels it holds have ended (on their own, or by their
 * limits): it takes no new ones, and this returns when its thread is done. The
 * loop's struct and descriptors are left to the process, which exits: a
 * worker still holding the pointer (an MPM that exits without joining every
 * worker) cannot touch freed memory. */
void proxy_wstunnel_loop_finish(proxy_wstunnel_loop *loop)
{
    pthread_mutex_lock(&loop->lock);
    loop->stopping = 1;
    pthread_mutex_unlock(&loop->lock);
    if (write(loop->wake[1], "x", 1) < 0) {
        /* the loop still sees `stopping` at its next tick */
    }
    pthread_join(loop->thread, NULL);
}

/* A new event loop with its thread running. NULL: none can be had (errno
 * says why). It holds at most as many tunnels as the open-files limit leaves
 * room for, two descriptors each, PWS_LOOP_RESERVED_FDS kept for the rest. */
proxy_wstunnel_loop *proxy_wstunnel_loop_start(void)
{
    proxy_wstunnel_loop *loop = calloc(1, sizeof(*loop));
    struct rlimit files;
    struct epoll_event event;
    sigset_t all, previous;
    int made, saved;

    if (loop == NULL) {
        return NULL;
    }
    loop->epoll_fd = -1;
    loop->wake[0] = loop->wake[1] = -1;
    pthread_mutex_init(&loop->lock, NULL);
    loop->epoll_fd = epoll_create(PWS_LOOP_EVENTS);
    if (loop->epoll_fd < 0 || pipe(loop->wake) != 0) {
        goto failed;
    }
    fcntl(loop->epoll_fd, F_SETFD, FD_CLOEXEC);
    fcntl(loop->wake[0], F_SETFD, FD_CLOEXEC);
    fcntl(loop->wake[1], F_SETFD, FD_CLOEXEC);
    fcntl(loop->wake[0], F_SETFL, O_NONBLOCK);
    fcntl(loop->wake[1], F_SETFL, O_NONBLOCK);
    memset(&event, 0, sizeof(event));
    event.events = EPOLLIN;
    event.data.ptr = NULL;
    if (epoll_ctl(loop->epoll_fd, EPOLL_CTL_ADD, loop->wake[0], &event) != 0) {
        goto failed;
    }
    getrlimit(RLIMIT_NOFILE, &files);
    loop->limit = files.rlim_cur > PWS_LOOP_RESERVED_FDS * 2
                      ? (files.rlim_cur - PWS_LOOP_RESERVED_FDS) / 2
                      : 0;
    /* Signals stay with Apache's threads (the MPM's own handling of restarts
     * and stops). */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    made = pthread_create(&loop->thread, NULL, proxy_wstunnel_loop_run, loop);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    if (made != 0) {
        errno = made;
        goto failed;
    }
    return loop;

failed:
    saved = errno;
    if (loop->epoll_fd >= 0) {
        close(loop->epoll_fd);
    }
    if (loop->wake[0] >= 0) {
        close(loop->wake[0]);
        close(loop->wake[1]);
    }
    pthread_mutex_destroy(&loop->lock);
    free(loop);
    errno = saved;
    return NULL;
}

/* Put the raw tunnel `prepared`, on descriptors that are now the loop's, into
 * `loop`. 0: it is in; 1: the loop is full or stopping (`count` says how many
 * it holds); -1: no memory, or epoll refused. Unless 0, the descriptors are
 * closed. */
int proxy_wstunnel_loop_adopt(proxy_wstunnel_loop *loop,
                              const proxy_wstunnel_raw *prepared,
                              apr_size_t *count)
{
    proxy_wstunnel_raw *t = malloc(sizeof(*t));
    int i;
    if (t == NULL) {
        close(prepared->end[0].fd);
        close(prepared->end[1].fd);
        return -1;
    }
    pthread_mutex_lock(&loop->lock);
    *count = loop->count;
    if (loop->stopping || loop->count >= loop->limit) {
        pthread_mutex_unlock(&loop->lock);
        free(t);
        close(prepared->end[0].fd);
        close(prepared->end[1].fd);
        return 1;
    }
    *t = *prepared;
    for (i = 0; i < 2; i++) {
        t->end[i].tunnel = t;
        t->end[i].events = 0;
    }
    t->prev = NULL;
    t->next = loop->tunnels;
    if (loop->tunnels) {
        loop->tunnels->prev = t;
    }
    loop->tunnels = t;
    loop->count++;
    for (i = 0; i < 2; i++) {
        if (proxy_wstunnel_loop_register(loop, &t->end[i]) != 0) {
            proxy_wstunnel_raw *dead = NULL;
            proxy_wstunnel_loop_close(
                loop, t, 1,
                &dead); /* closes the descriptors, leaves the peers alone */
            pthread_mutex_unlock(&loop->lock);
            free(dead);
            return -1;
        }
    }
    pthread_mutex_unlock(&loop->lock);
    return 0;
}
#endif /* PWS_HANDOFF */
