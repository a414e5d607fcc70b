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

/* wstunnel_tunnel.c: the tunnel through httpd's connection filters, what a
 * TLS side (mod_ssl) or any other filter that needs the bytes keeps. When both
 * sides are plain TCP, the first rounds drain what came in behind the
 * handshake, then the tunnel goes raw (wstunnel_loop.c), in this worker or
 * handed off (wstunnel_handoff.c). */

#include "wstunnel.h"
#include "apr_poll.h"
#include "apr_portable.h"

/* bytes one direction may move before the other gets its turn */
#define PWS_TURN_BYTES (64 * 1024)
#define PWS_EMPTY_READS_AS_EOF 3 /* 2.2: readable, yet reads bring nothing */

/* Only filters that do not need the tunnel's bytes: anything else (TLS,
 * mod_dumpio, ...) keeps the filter path. */
static int proxy_wstunnel_is_plain(conn_rec *c)
{
    static const char *const plain[] = {"core_in", "core", "reqtimeout",
                                        "log_input_output", NULL};
    ap_filter_t *chains[2];
    int i, k;
    chains[0] = c->input_filters;
    chains[1] = c->output_filters;
    for (i = 0; i < 2; i++) {
        ap_filter_t *filter;
        for (filter = chains[i]; filter; filter = filter->next) {
            const char *name =
                filter->frec && filter->frec->name ? filter->frec->name : "";
            for (k = 0; plain[k] && strcasecmp(name, plain[k]) != 0; k++) {
            }
            if (plain[k] == NULL) {
                return 0;
            }
        }
    }
    return 1;
}

/* One direction of the tunnel. */
typedef struct {
    conn_rec *c;
    apr_pollfd_t pollfd;
    int read_done; /* EOF seen: nothing more comes from this side */
    int pending; /* the turn ended with bytes maybe still in the filters: read
                    again without polling */
    int empty_reads; /* 2.2's core filter answers a non-blocking read at EOF
                        with an empty brigade first */
    proxy_wstunnel_frames frames; /* the frames read from this side */
} proxy_wstunnel_side;

/* Move what is readable now from `from` to `to`, at most PWS_TURN_BYTES in one
 * turn, then flush once. APR_SUCCESS: this side may go on; APR_EOF: it finished
 * sending; anything else: the tunnel is broken. */
static apr_status_t proxy_wstunnel_pump(proxy_wstunnel_side *from,
                                        proxy_wstunnel_side *to,
                                        apr_bucket_brigade *bb,
                                        apr_bucket_brigade *out,
                                        apr_pool_t *pool)
{
    apr_off_t moved = 0;
    apr_status_t rv = APR_SUCCESS;
    int eos = 0;

    from->pending = 0;
    while (moved < PWS_TURN_BYTES) {
        apr_bucket *bucket;
        apr_off_t length = 0;
        apr_brigade_cleanup(bb);
        rv = ap_get_brigade(from->c->input_filters, bb, AP_MODE_READBYTES,
                            APR_NONBLOCK_READ, AP_IOBUFSIZE);
        if (APR_STATUS_IS_EAGAIN(rv)) {
            rv = APR_SUCCESS; /* nothing now (with TLS: a record is still
                                 arriving in pieces) */
            break;
        }
        if (rv != APR_SUCCESS) {
            break;
        }
        for (bucket = APR_BRIGADE_FIRST(bb); bucket != APR_BRIGADE_SENTINEL(bb);
             bucket = APR_BUCKET_NEXT(bucket)) {
            if (APR_BUCKET_IS_EOS(bucket)) {
                eos = 1;
            }
        }
        if (eos) {
            break;
        }
        apr_brigade_length(bb, 1, &length);
        if (length == 0) {
            /* 2.2: "nothing now" and "EOF" both read as an empty brigade, EOF
             * only on a later call. The socket was readable, so a few empty
             * reads in a row mean the peer has gone. */
            if (++from->empty_reads >= PWS_EMPTY_READS_AS_EOF) {
                eos = 1;
            }
            break;
        }
        from->empty_reads = 0;
        moved += length;
        /* mod_ssl hands out transient buckets over a buffer it reuses on the
         * next read: keep a copy. */
        for (bucket = APR_BRIGADE_FIRST(bb); bucket != APR_BRIGADE_SENTINEL(bb);
             bucket = APR_BUCKET_NEXT(bucket)) {
            const char *data;
            apr_size_t size;
            if (!APR_BUCKET_IS_METADATA(bucket)
                && apr_bucket_read(bucket, &data, &size, APR_BLOCK_READ)
                       == APR_SUCCESS) {
                proxy_wstunnel_frames_feed(&from->frames, data,
                                           size); /* read already: in memory */
            }
            rv = apr_bucket_setaside(bucket, pool);
            if (rv != APR_SUCCESS && !APR_STATUS_IS_ENOTIMPL(rv)) {
                return rv;
            }
        }
        rv = APR_SUCCESS;
        APR_BRIGADE_CONCAT(out, bb);
    }
    if (moved >= PWS_TURN_BYTES) {
        from->pending =
            1; /* the filters may hold more that poll() cannot see */
    }
    if (!APR_BRIGADE_EMPTY(out)) {
        apr_status_t sent;
        APR_BRIGADE_INSERT_TAIL(out,
                                apr_bucket_flush_create(to->c->bucket_alloc));
        sent = ap_pass_brigade(to->c->output_filters, out);
        apr_brigade_cleanup(out);
        if (sent != APR_SUCCESS) {
            return sent;
        }
    }
    apr_brigade_cleanup(bb);
    if (eos) {
        return APR_EOF;
    }
    return rv;
}

int proxy_wstunnel_tunnel(request_rec *r, proxy_conn_rec *backend,
                          apr_interval_time_t idle_timeout,
                          apr_interval_time_t fin_timeout, int handoff)
{
    conn_rec *client = r->connection;
    apr_socket_t *client_socket =
        ap_get_module_config(client->conn_config, &core_module);
    proxy_wstunnel_side sides[2];
    apr_pollset_t *pollset;
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, client->bucket_alloc);
    apr_bucket_brigade *out = apr_brigade_create(r->pool, client->bucket_alloc);
    apr_status_t rv = APR_SUCCESS;
    apr_time_t fin_since = 0; /* the first FIN or relayed close frame */
    int i, raw = 0, backend_finished,
           plain = proxy_wstunnel_is_plain(client)
                   && proxy_wstunnel_is_plain(backend->connection);

    if (apr_pollset_create(&pollset, 2, r->pool, 0) != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    memset(sides, 0, sizeof(sides));
    sides[0].c = client;
    sides[0].pollfd.desc.s = client_socket;
    sides[1].c = backend->connection;
    sides[1].pollfd.desc.s = backend->sock;
    for (i = 0; i < 2; i++) {
        sides[i].pollfd.p = r->pool;
        sides[i].pollfd.desc_type = APR_POLL_SOCKET;
        sides[i].pollfd.reqevents = APR_POLLIN | APR_POLLHUP | APR_POLLERR;
        sides[i].pollfd.client_data = &sides[i];
        sides[i].pending = 1; /* bytes may already sit in the filters (sent
                                 right behind the handshake) */
        apr_pollset_add(pollset, &sides[i].pollfd);
    }
    /* Writes to the client now wait as long as any write of the server,
     * whatever mod_reqtimeout set. */
    apr_socket_timeout_set(client_socket, r->server->timeout);

    while (rv == APR_SUCCESS && !(sides[0].read_done && sides[1].read_done)) {
        const apr_pollfd_t *signalled;
        /* Plain TCP both ways, and the filters hold nothing more (the first
         * round drained what came in behind the handshake): from here on the
         * bytes go straight between the sockets. */
        if (plain && !sides[0].pending && !sides[1].pending
            && !sides[0].read_done && !sides[1].read_done) {
            raw = 1;
            break;
        }
        apr_int32_t count = 0;
        int ready[2] = {0, 0};
        int any_pending = sides[0].pending || sides[1].pending, fin_nearer = 0;
        apr_interval_time_t wait = idle_timeout ? idle_timeout : -1;
        apr_status_t polled;
        if (fin_timeout > 0 && fin_since != 0) {
            apr_interval_time_t left = fin_since + fin_timeout - apr_time_now();
            if (left <= 0) {
                ap_log_rerror(
                    APLOG_MARK, APLOG_DEBUG, 0, r,
                    PWS_LOGNO(0022) "one side finished %" APR_TIME_T_FMT
                                    " ms ago, the other did not: closing the "
                                    "tunnel (ProxyWebsocketFinTimeout)",
                    (apr_time_t)apr_time_as_msec(fin_timeout));
                rv = APR_EOF;
                break;
            }
            if (wait < 0 || left < wait) {
                wait = left;
                fin_nearer = 1;
            }
        }
        polled = apr_pollset_poll(pollset, any_pending ? 0 : wait, &count,
                                  &signalled);
        if (APR_STATUS_IS_EINTR(polled)) {
            continue;
        }
        if (APR_STATUS_IS_TIMEUP(polled) && !any_pending) {
            if (fin_nearer) {
                continue; /* the fin timeout is up: said and done at the top */
            }
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                          PWS_LOGNO(0002) "idle timeout, closing the tunnel");
            rv = APR_TIMEUP;
            break;
        }
        if (polled != APR_SUCCESS && !APR_STATUS_IS_TIMEUP(polled)) {
            rv = polled;
            break;
        }
        for (i = 0; i < count; i++) {
            proxy_wstunnel_side *side = signalled[i].client_data;
            if (signalled[i].rtnevents & APR_POLLNVAL) {
                rv = APR_EBADF;
            }
            ready[side == &sides[0] ? 0 : 1] =
                1; /* a hang-up or error still reads first: last bytes, then EOF
                    */
        }
        /* Each direction gets one bounded turn per round: a flood one way
         * cannot starve the other. */
        for (i = 0; i < 2 && rv == APR_SUCCESS; i++) {
            proxy_wstunnel_side *from = &sides[i], *to = &sides[1 - i];
            apr_status_t pumped;
            if (from->read_done || !(ready[i] || from->pending)) {
                continue;
            }
            pumped = proxy_wstunnel_pump(from, to, bb, out, r->pool);
            if (APR_STATUS_IS_EOF(pumped)) {
                /* Half-close: pass the FIN on, keep the other direction open
                 * for what it still sends (for at most the fin timeout). */
                from->read_done = 1;
                from->pending = 0;
                apr_pollset_remove(pollset, &from->pollfd);
                apr_socket_shutdown(to->pollfd.desc.s, APR_SHUTDOWN_WRITE);
            }
            else if (pumped != APR_SUCCESS) {
                rv = pumped;
            }
            if (fin_since == 0 && (from->read_done || from->frames.closed)) {
                fin_since = apr_time_now(); /* a FIN, or a close frame relayed:
                                               the other side's answer is due */
            }
        }
        if (rv == APR_SUCCESS && sides[0].frames.closed
            && sides[1].frames.closed) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                          PWS_LOGNO(0023) "close frames relayed both ways");
            break;
        }
    }
    backend_finished = sides[1].read_done;
    if (raw) {
        apr_os_sock_t client_fd, backend_fd;
        proxy_wstunnel_raw tunnel;
        apr_os_sock_get(&client_fd, client_socket);
        apr_os_sock_get(&backend_fd, backend->sock);
        proxy_wstunnel_raw_init(&tunnel, client_fd, backend_fd, idle_timeout,
                                fin_timeout, r->server->timeout);
        tunnel.fin_since = fin_since; /* what the first rounds saw (a close
                                         frame right behind the handshake) */
        for (i = 0; i < 2; i++) {
            tunnel.end[i].frames = sides[i].frames;
        }
#if PWS_HANDOFF
        if (handoff
            && (proxy_wstunnel_threaded
                    ? proxy_wstunnel_hand_off(r, &tunnel)
                    : proxy_wstunnel_send_to_keeper(r, &tunnel))) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                          PWS_LOGNO(0018) "tunnel handed to the event loop%s",
                          proxy_wstunnel_threaded ? ""
                                                  : " of the tunnel keeper");
            /* Apache closes its own descriptors now, without a shutdown
             * (aborted): the loop's copies go on. */
            backend->close = 1;
            client->keepalive = AP_CONN_CLOSE;
            client->aborted = 1;
            return OK;
        }
#else
        (void)handoff;
#endif
        rv =
            proxy_wstunnel_raw_run(&tunnel, apr_palloc(r->pool, PWS_RAW_BYTES));
        proxy_wstunnel_raw_free_pending(&tunnel);
        backend_finished = tunnel.end[1].read_done;
        if (APR_STATUS_IS_TIMEUP(rv)) {
            ap_log_rerror(
                APLOG_MARK, APLOG_DEBUG, 0, r,
                PWS_LOGNO(0021) "idle timeout, closing the raw tunnel");
        }
        else if (APR_STATUS_IS_EOF(rv)) {
            ap_log_rerror(
                APLOG_MARK, APLOG_DEBUG, 0, r,
                PWS_LOGNO(0024) "one side finished %" APR_TIME_T_FMT
                                " ms ago, the other did not: closing the raw "
                                "tunnel (ProxyWebsocketFinTimeout)",
                (apr_time_t)apr_time_as_msec(fin_timeout));
        }
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, r,
                  PWS_LOGNO(0003) "tunnel finished");
    /* Close both ends now: the backend must not wait for a timeout to learn the
     * client is gone. */
    if (rv != APR_SUCCESS && !backend_finished) {
        apr_os_sock_t backend_fd;
        apr_os_sock_get(&backend_fd, backend->sock);
        proxy_wstunnel_reset_on_close(
            backend_fd); /* no FIN first: it would only be read as one more EOF
                          */
    }
    else {
        apr_socket_shutdown(backend->sock, APR_SHUTDOWN_READWRITE);
    }
    backend->close = 1;
    client->keepalive = AP_CONN_CLOSE;
    client->aborted = 1; /* nothing more may be written on this connection (no
                            late HTTP headers) */
    return OK;
}
