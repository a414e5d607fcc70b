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

/* wstunnel.h: what the files of mod_proxy_wstunnel share.
 *
 *   mod_proxy_wstunnel.c  the module: its config, directives and hooks
 *   wstunnel_handshake.c  the upgrade request, the backend's answer, a refusal
 *   wstunnel_handler.c    mod_proxy's scheme and canon handlers
 *   wstunnel_tunnel.c     the tunnel through httpd's filters (TLS), and the
 *                         choice of the raw path once both sides are plain
 *   wstunnel_frames.c     the WebSocket frame tracker (close frames)
 *   wstunnel_loop.c       the raw tunnel and the event loop: sockets, limits,
 *                         no httpd (tests/loop_test.c drives it alone)
 *   wstunnel_handoff.c    ProxyWebsocketHandoff: the child's event loop, and
 *                         the tunnel keeper process under prefork
 *
 * The first part of this header needs APR only (wstunnel_frames.c and
 * wstunnel_loop.c define PWS_LOOP_ONLY before they include it); the second
 * part is httpd's.
 */

#ifndef WSTUNNEL_H
#define WSTUNNEL_H

#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* splice, pipe2, struct ucred (SO_PEERCRED) */
#endif

/* APR's ring and brigade macros compute member offsets by subtracting from a
 * null pointer (APR_OFFSET); clang's -Wextra reports every use of them. The
 * arithmetic is APR's, not ours. */
#if defined(__clang__) && defined(__has_warning)
#if __has_warning("-Wnull-pointer-subtraction")
#pragma clang diagnostic ignored "-Wnull-pointer-subtraction"
#endif
#endif

#include "apr.h"
#include "apr_errno.h"
#include "apr_time.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__linux__)
/* The event loop of ProxyWebsocketHandoff: epoll and a thread of our own per
 * child (Linux, where every server this module is for runs). Elsewhere the
 * directive is accepted and every tunnel stays with its worker. */
#define PWS_HANDOFF 1
#include <pthread.h>
#else
#define PWS_HANDOFF 0
#endif

/* The functions one file gives the others stay inside mod_proxy_wstunnel.so. */
#if defined(__GNUC__) && __GNUC__ >= 4
#define PWS_INTERNAL __attribute__((visibility("hidden")))
#else
#define PWS_INTERNAL
#endif

/* Log tags in the manner of httpd's APLOGNO: "APWS0001: ...", grep-able
 * across releases. Each number is used once (tests/test_module.py checks). */
#define PWS_LOGNO(n) "APWS" #n ": "

/* After one side's FIN (or a close frame relayed one way), how long the other
 * direction may go on: the torture half-close case needs 0.2 s, a close
 * handshake one round trip; 5 s leaves room for two TCP retransmissions
 * (1 s + 2 s) on a bad link. Beyond it a peer that never closes (broadwayd)
 * would hold its socket and a worker. */
#define PWS_DEFAULT_FIN_TIMEOUT apr_time_from_sec(5)

/* -- the frame tracker (wstunnel_frames.c) ---------------------------------
 * Where one direction stands in the WebSocket frames it carries: enough of
 * each frame's header to know its opcode and payload length, whatever the TCP
 * pieces (a header may be cut anywhere), so that a close frame is seen once it
 * has passed whole. Payloads are skipped (masked or not, compressed or not);
 * nothing is rewritten. Bytes that are not framing as RFC 6455 has it (a
 * control frame longer than 125 bytes or fragmented, a reserved opcode) make
 * it stop looking: that direction then ends by FIN, reset or timeout only. */
typedef struct {
    unsigned char head[14]; /* the frame's header so far (2 + 8 + 4 at most) */
    apr_size_t head_length; /* 0: between frames, or in a payload */
    apr_uint64_t payload_left; /* the frame's payload bytes still to come */
    int in_close; /* the current payload is a close frame's */
    int closed; /* a whole close frame has passed: nothing more is looked at */
    int lost; /* not WebSocket framing: nothing more is looked at */
} proxy_wstunnel_frames;

PWS_INTERNAL void proxy_wstunnel_frames_feed(proxy_wstunnel_frames *f,
                                             const char *data,
                                             apr_size_t length);

/* -- the raw tunnel and the event loop (wstunnel_loop.c) -------------------
 * Once both connections are plain TCP (no TLS, no filter that needs the
 * bytes), bytes move straight between the sockets in reads of up to
 * PWS_RAW_BYTES: one poll, one recv and one send per message and direction,
 * where the filter path costs a flush per 8 KiB and a read that only learns
 * EAGAIN. The same state machine runs in two places: in the worker that took
 * the upgrade (one tunnel, poll()), or, with "ProxyWebsocketHandoff On", in an
 * event loop (every tunnel handed to it, epoll), which gives the worker back
 * to Apache. It knows descriptors and limits only: no pool, no filter, no
 * conn_rec. */
#define PWS_RAW_BYTES (64 * 1024)
/* Linux: the payload of a big frame (at least PWS_SPLICE_MIN bytes still to
 * come) moves with splice(2) through a pipe, socket to pipe to socket, without
 * passing through user space; one splice of at most PWS_RAW_BYTES per turn, as
 * a read. The pipe is made for the frame and closed once it is through. */
#define PWS_SPLICE PWS_HANDOFF
#define PWS_SPLICE_MIN (16 * 1024)

typedef struct proxy_wstunnel_raw proxy_wstunnel_raw;

/* One end of a raw tunnel: 0 the client, 1 the backend. */
typedef struct {
    proxy_wstunnel_raw *tunnel;
    int fd;
    int read_done; /* EOF read from this end */
    int write_shut; /* our FIN has been sent to this end */
    proxy_wstunnel_frames frames; /* the frames read from this end */
    char *pending; /* bytes this end did not take yet (malloc'd; NULL: none) */
    apr_size_t pending_length; /* how many are left, from pending_offset */
    apr_size_t pending_offset;
    apr_time_t blocked_since; /* when a write to this end got stuck (0: not) */
    short events; /* what this end is registered for in the loop (0: none) */
    int pipe[2]; /* splice: the pipe bytes for this end pass through (-1) */
    apr_size_t piped; /* bytes in that pipe this end did not take yet */
} proxy_wstunnel_end;

struct proxy_wstunnel_raw {
    proxy_wstunnel_end end[2];
    apr_interval_time_t idle_timeout; /* 0: no idle limit */
    apr_interval_time_t write_timeout; /* how long an end may refuse bytes */
    apr_interval_time_t fin_timeout; /* life after fin_since (0: no limit) */
    apr_time_t fin_since; /* the first FIN or relayed close frame (0: none) */
    apr_time_t last_activity;
    int closed;
    proxy_wstunnel_raw *prev, *next; /* the event loop's list */
};

PWS_INTERNAL void proxy_wstunnel_raw_init(proxy_wstunnel_raw *t, int client_fd,
                                          int backend_fd,
                                          apr_interval_time_t idle_timeout,
                                          apr_interval_time_t fin_timeout,
                                          apr_interval_time_t write_timeout);
PWS_INTERNAL apr_status_t proxy_wstunnel_raw_run(proxy_wstunnel_raw *t,
                                                 char *buffer);
PWS_INTERNAL void proxy_wstunnel_raw_free_pending(proxy_wstunnel_raw *t);
PWS_INTERNAL void proxy_wstunnel_reset_on_close(int fd);

#if PWS_HANDOFF
#define PWS_LOOP_EVENTS 64
#define PWS_LOOP_TICK_MS                                                       \
    250 /* how often idle and stuck tunnels are looked for */
#define PWS_LOOP_RESERVED_FDS 64

typedef struct {
    pthread_mutex_t lock; /* the list and count; held for a batch of events */
    pthread_t thread;
    int epoll_fd;
    int wake[2]; /* a pipe: written when the loop must stop, so it sees it */
    int stopping;
    apr_size_t count, limit;
    proxy_wstunnel_raw *tunnels;
    char buffer[PWS_RAW_BYTES];
} proxy_wstunnel_loop;

PWS_INTERNAL proxy_wstunnel_loop *proxy_wstunnel_loop_start(void);
PWS_INTERNAL int proxy_wstunnel_loop_adopt(proxy_wstunnel_loop *loop,
                                           const proxy_wstunnel_raw *prepared,
                                           apr_size_t *count);
PWS_INTERNAL void proxy_wstunnel_loop_finish(proxy_wstunnel_loop *loop);
#endif /* PWS_HANDOFF */

#ifndef PWS_LOOP_ONLY
/* -- httpd ----------------------------------------------------------------- */
#include "mod_proxy.h"
#include "http_log.h"
#include "http_request.h"
#include "util_filter.h"
#include "apr_strings.h"

#ifdef APLOG_USE_MODULE
APLOG_USE_MODULE(proxy_wstunnel); /* 2.4: log lines carry the module's name */
#else
extern module AP_MODULE_DECLARE_DATA proxy_wstunnel_module;
#endif

#if AP_MODULE_MAGIC_AT_LEAST(20120211, 0)
#define PWS_HTTPD_24 1
#define PWS_WORKER_SHARED(w) ((w)->s)
#define PWS_CLIENT_IP(r) ((r)->useragent_ip)
#else
#define PWS_HTTPD_24 0
#define PWS_WORKER_SHARED(w) (w)
#define PWS_CLIENT_IP(r) ((r)->connection->remote_ip)
#endif

typedef struct {
    apr_interval_time_t idle_timeout; /* -1: not set here */
    apr_interval_time_t fin_timeout; /* -1: not set here; 0: a half-closed
                                        tunnel waits for the idle limit */
    int upgrade_http; /* -1: not set here; 1: upgrades on http(s):// routes */
    int handoff; /* -1: not set here; 1: plain tunnels leave the worker */
} proxy_wstunnel_dir_conf;

/* mod_proxy_wstunnel.c */
PWS_INTERNAL extern int proxy_wstunnel_handoff_configured;
PWS_INTERNAL extern int proxy_wstunnel_threaded;

/* wstunnel_handshake.c */
PWS_INTERNAL int proxy_wstunnel_has_token(const char *value, const char *token);
PWS_INTERNAL int proxy_wstunnel_is_upgrade(request_rec *r);
PWS_INTERNAL char *proxy_wstunnel_read_body(request_rec *r, apr_size_t *length,
                                            int *status);
PWS_INTERNAL apr_status_t proxy_wstunnel_send_request(
    request_rec *r, proxy_conn_rec *backend, apr_bucket_brigade *bb,
    const char *path, const char *host_header, const char *body,
    apr_size_t body_length);
PWS_INTERNAL int
proxy_wstunnel_read_answer(request_rec *r, proxy_conn_rec *backend,
                           apr_bucket_brigade *bb, char *line,
                           apr_size_t line_size, apr_table_t *headers,
                           const char **status_line, const char **raw);
PWS_INTERNAL int proxy_wstunnel_relay_plain_response(
    request_rec *r, proxy_conn_rec *backend, apr_bucket_brigade *bb, int status,
    const char *status_line, apr_table_t *headers, char *line,
    apr_size_t line_size);
PWS_INTERNAL const char *proxy_wstunnel_accept_for(apr_pool_t *p,
                                                   const char *key);
PWS_INTERNAL void proxy_wstunnel_remove_reqtimeout(conn_rec *c);

/* wstunnel_tunnel.c */
PWS_INTERNAL int proxy_wstunnel_tunnel(request_rec *r, proxy_conn_rec *backend,
                                       apr_interval_time_t idle_timeout,
                                       apr_interval_time_t fin_timeout,
                                       int handoff);

/* wstunnel_handler.c */
PWS_INTERNAL int proxy_wstunnel_canon(request_rec *r, char *url);
PWS_INTERNAL int proxy_wstunnel_handler(request_rec *r, proxy_worker *worker,
                                        proxy_server_conf *conf, char *url,
                                        const char *proxyname,
                                        apr_port_t proxyport);

/* wstunnel_handoff.c */
PWS_INTERNAL int proxy_wstunnel_can_hand_off(void);
#if PWS_HANDOFF
PWS_INTERNAL int proxy_wstunnel_hand_off(request_rec *r,
                                         const proxy_wstunnel_raw *prepared);
PWS_INTERNAL int
proxy_wstunnel_send_to_keeper(request_rec *r,
                              const proxy_wstunnel_raw *prepared);
PWS_INTERNAL void proxy_wstunnel_keeper_setup(apr_pool_t *pconf, server_rec *s,
                                              int generation);
PWS_INTERNAL void proxy_wstunnel_handoff_child_init(apr_pool_t *pchild);
#endif
#endif /* PWS_LOOP_ONLY */

#endif /* WSTUNNEL_H */
