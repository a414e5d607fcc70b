/* Licensed to the Apache Software Foundation (ASF) under one or more
 * contributor license agreements. The ASF licenses this file to You under the Apache License, Version 2.0
 * (the "License"); you may not use this file except in compliance with the License. You may obtain a copy
 * of the License at http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software distributed under the License is
 * distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
 * See the License for the specific language governing permissions and limitations under the License.
 */

/* mod_proxy_wstunnel: WebSocket (ws://, wss://) tunnelling for mod_proxy.
 *
 * The apachews backport, for Apache httpd 2.2.x and 2.4.x. One source for every release: API differences
 * are bridged with module magic number checks below. It adds no symbol to mod_proxy: installing it is
 * adding this one module.
 *
 * What it does differently from the 2013 backport people copy around:
 *  - the backend's answer is read and checked first: only a "101 Switching Protocols" that upgrades to
 *    websocket (and, when the client sent a key, with the right Sec-WebSocket-Accept) opens a tunnel; any
 *    other final answer is streamed to the client as plain HTTP (no raw tunnel, CVE-2019-17567 class);
 *  - once the tunnel is open, mod_reqtimeout's filter is removed from the client connection: the tunnel's
 *    own idle limit (ProxyWebsocketIdleTimeout, else the worker's timeout, else ProxyTimeout/Timeout) is
 *    what ends a silent session;
 *  - each direction ends on its own (half-close): EOF from one side is passed on as a FIN to the other,
 *    whose answer still flows back for at most ProxyWebsocketFinTimeout (default 5 s), then both sides are
 *    closed: a client that vanished (a killed browser's FIN, no close frame) cannot hold a backend that never
 *    closes, nor a worker, until the idle limit; a reset or error on either side ends the tunnel at once;
 *  - WebSocket close frames are spotted (frame headers are followed, never rewritten): once both directions'
 *    close frames are relayed the tunnel ends; one relayed starts the same short grace as a FIN;
 *  - "ProxyWebsocketHandoff On" (Linux) gives a plain tunnel's worker back after the handshake: the tunnel lives
 *    on in an epoll loop, the child's own on worker and event, a tunnel keeper process's on prefork;
 *  - "ProxyWebsocketUpgrade On" lets a WebSocket upgrade arriving on an http:// or https:// ProxyPass be
 *    tunnelled (like 2.4.47's upgrade=websocket), for servers whose mod_rewrite has no ws:// scheme;
 *  - Upgrade and Connection are parsed as token lists, case-insensitively.
 */

#if defined(__linux__) && !defined(_GNU_SOURCE)
#define _GNU_SOURCE /* struct ucred (SO_PEERCRED), for the tunnel keeper */
#endif

/* APR's ring and brigade macros compute member offsets by subtracting from a null pointer (APR_OFFSET); clang's
 * -Wextra reports every use of them in this file. The arithmetic is APR's, not ours. */
#if defined(__clang__) && defined(__has_warning)
#if __has_warning("-Wnull-pointer-subtraction")
#pragma clang diagnostic ignored "-Wnull-pointer-subtraction"
#endif
#endif

#include "mod_proxy.h"
#include "http_log.h"
#include "http_request.h"
#include "util_filter.h"
#include "apr_strings.h"
#include "apr_poll.h"
#include "apr_sha1.h"
#include "apr_base64.h"
#include "apr_portable.h"
#include "ap_mpm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#if defined(__linux__)
/* The event loop of ProxyWebsocketHandoff: epoll and a thread of our own per child (Linux, where every server
 * this module is for runs). Elsewhere the directive is accepted and every tunnel stays with its worker. */
#define PWS_HANDOFF 1
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include "ap_listen.h"
#include "mpm_common.h"
#include "unixd.h"
#if AP_MODULE_MAGIC_AT_LEAST(20120211, 0)
#include "mod_unixd.h"
#define PWS_APACHE_UID ap_unixd_config.user_id
#define PWS_SETUP_CHILD() ap_unixd_setup_child()
#else
#define PWS_APACHE_UID unixd_config.user_id
#define PWS_SETUP_CHILD() unixd_setup_child()
#endif
#else
#define PWS_HANDOFF 0
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

#ifdef APLOG_USE_MODULE
APLOG_USE_MODULE(proxy_wstunnel); /* 2.4: log lines carry this module's name and LogLevel */
#else
module AP_MODULE_DECLARE_DATA proxy_wstunnel_module;
#endif

/* Log tags in the manner of httpd's APLOGNO: "APWS0001: ...", grep-able across releases. */
#define PWS_LOGNO(n) "APWS" #n ": "

#define PWS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455, section 1.3 */
#define PWS_MAX_HEAD_BYTES (256 * 1024)  /* a backend's whole answer head; lines count alone like mod_proxy_http */
#define PWS_MAX_INTERIM 16              /* 1xx answers skipped before the final one */
#define PWS_MAX_UPGRADE_BODY (64 * 1024) /* a request body sent along with an upgrade */
#define PWS_TURN_BYTES (64 * 1024)       /* bytes one direction may move before the other gets its turn */
#define PWS_RELAY_BYTES (64 * 1024)      /* a refused upgrade's body is passed on in pieces of at most this */
#define PWS_EMPTY_READS_AS_EOF 3         /* 2.2: readable, yet successful reads bring nothing */
/* After one side's FIN (or a close frame relayed one way), how long the other direction may go on: the torture
 * half-close case needs 0.2 s, a close handshake one round trip; 5 s leaves room for two TCP retransmissions
 * (1 s + 2 s) on a bad link. Beyond it a peer that never closes (broadwayd) would hold its socket and a worker. */
#define PWS_DEFAULT_FIN_TIMEOUT apr_time_from_sec(5)

typedef struct {
    apr_interval_time_t idle_timeout; /* -1: not set here */
    apr_interval_time_t fin_timeout;  /* -1: not set here; 0: a half-closed tunnel waits for the idle limit */
    int upgrade_http;                 /* -1: not set here; 1: tunnel upgrades on http(s):// routes */
    int handoff;                      /* -1: not set here; 1: plain tunnels go to the child's event loop */
} proxy_wstunnel_dir_conf;

static int proxy_wstunnel_handoff_configured; /* some "ProxyWebsocketHandoff On" was read */
static int proxy_wstunnel_threaded;           /* this child's MPM runs threads (worker, event) */

static void *proxy_wstunnel_create_dir_conf(apr_pool_t *p, char *dir)
{
    proxy_wstunnel_dir_conf *conf = apr_pcalloc(p, sizeof(*conf));
    (void)dir;
    conf->idle_timeout = -1;
    conf->fin_timeout = -1;
    conf->upgrade_http = -1;
    conf->handoff = -1;
    return conf;
}

static void *proxy_wstunnel_merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    proxy_wstunnel_dir_conf *base = basev, *add = addv;
    proxy_wstunnel_dir_conf *conf = apr_pcalloc(p, sizeof(*conf));
    conf->idle_timeout = add->idle_timeout >= 0 ? add->idle_timeout : base->idle_timeout;
    conf->fin_timeout = add->fin_timeout >= 0 ? add->fin_timeout : base->fin_timeout;
    conf->upgrade_http = add->upgrade_http >= 0 ? add->upgrade_http : base->upgrade_http;
    conf->handoff = add->handoff >= 0 ? add->handoff : base->handoff;
    return conf;
}

/* "30" (seconds), "500ms", "2mi", "1h": the syntax of httpd's timeout parameters. */
static apr_status_t proxy_wstunnel_parse_timeout(const char *arg, apr_interval_time_t *timeout)
{
#if AP_MODULE_MAGIC_AT_LEAST(20051115, 19)
    return ap_timeout_parameter_parse(arg, timeout, "s");
#else
    /* 2.2.0-2.2.10 lack ap_timeout_parameter_parse: the same units, parsed here. */
    char *end;
    apr_int64_t number = apr_strtoi64(arg, &end, 10);
    if (end == arg || number < 0) {
        return APR_EGENERAL;
    }
    if (*end == '\0' || strcasecmp(end, "s") == 0) {
        *timeout = apr_time_from_sec(number);
    }
    else if (strcasecmp(end, "ms") == 0) {
        *timeout = number * 1000;
    }
    else if (strcasecmp(end, "mi") == 0 || strcasecmp(end, "min") == 0) {
        *timeout = apr_time_from_sec(number * 60);
    }
    else if (strcasecmp(end, "h") == 0) {
        *timeout = apr_time_from_sec(number * 3600);
    }
    else {
        return APR_EGENERAL;
    }
    return APR_SUCCESS;
#endif
}

static const char *proxy_wstunnel_set_idle_timeout(cmd_parms *cmd, void *dirconf, const char *arg)
{
    proxy_wstunnel_dir_conf *conf = dirconf;
    apr_interval_time_t timeout;
    (void)cmd;
    if (proxy_wstunnel_parse_timeout(arg, &timeout) != APR_SUCCESS || timeout < 0) {
        return "ProxyWebsocketIdleTimeout takes a timeout such as 300, 500ms, 5mi or 1h (0: no idle limit)";
    }
    conf->idle_timeout = timeout;
    return NULL;
}

static const char *proxy_wstunnel_set_fin_timeout(cmd_parms *cmd, void *dirconf, const char *arg)
{
    proxy_wstunnel_dir_conf *conf = dirconf;
    apr_interval_time_t timeout;
    (void)cmd;
    if (proxy_wstunnel_parse_timeout(arg, &timeout) != APR_SUCCESS || timeout < 0) {
        return "ProxyWebsocketFinTimeout takes a timeout such as 5, 500ms or 1mi (0: wait for the idle limit)";
    }
    conf->fin_timeout = timeout;
    return NULL;
}

static const char *proxy_wstunnel_set_upgrade(cmd_parms *cmd, void *dirconf, int on)
{
    proxy_wstunnel_dir_conf *conf = dirconf;
    (void)cmd;
    conf->upgrade_http = on ? 1 : 0;
    return NULL;
}

static const char *proxy_wstunnel_set_handoff(cmd_parms *cmd, void *dirconf, int on)
{
    proxy_wstunnel_dir_conf *conf = dirconf;
    (void)cmd;
    conf->handoff = on ? 1 : 0;
    if (on) {
        proxy_wstunnel_handoff_configured = 1;
    }
    return NULL;
}

static apr_port_t proxy_wstunnel_default_port(const char *scheme)
{
    return strcasecmp(scheme, "wss") == 0 || strcasecmp(scheme, "https") == 0 ? 443 : 80;
}

/* Is `token` one of the comma-separated tokens of `value` (case-insensitive)? */
static int proxy_wstunnel_has_token(const char *value, const char *token)
{
    apr_size_t length = strlen(token);
    while (value && *value) {
        const char *end, *last;
        while (*value == ' ' || *value == '\t' || *value == ',') {
            value++;
        }
        end = value;
        while (*end && *end != ',') {
            end++;
        }
        last = end;
        while (last > value && (last[-1] == ' ' || last[-1] == '\t')) {
            last--;
        }
        if ((apr_size_t)(last - value) == length && strncasecmp(value, token, length) == 0) {
            return 1;
        }
        value = end;
    }
    return 0;
}

static int proxy_wstunnel_is_upgrade(request_rec *r)
{
    const char *upgrade = apr_table_get(r->headers_in, "Upgrade");
    const char *connection = apr_table_get(r->headers_in, "Connection");
    return upgrade && proxy_wstunnel_has_token(upgrade, "websocket") && connection
           && proxy_wstunnel_has_token(connection, "upgrade");
}

/* The scheme this module tunnels for `url`: ws/wss always, http/https where ProxyWebsocketUpgrade is on
 * and the request is an upgrade (plain HTTP on such a route stays with mod_proxy_http). NULL: decline. */
static const char *proxy_wstunnel_scheme(request_rec *r, const char *url)
{
    proxy_wstunnel_dir_conf *dconf = ap_get_module_config(r->per_dir_config, &proxy_wstunnel_module);
    if (strncasecmp(url, "ws:", 3) == 0) {
        return "ws";
    }
    if (strncasecmp(url, "wss:", 4) == 0) {
        return "wss";
    }
    if (dconf->upgrade_http == 1 && proxy_wstunnel_is_upgrade(r)) {
        if (strncasecmp(url, "http:", 5) == 0) {
            return "http";
        }
        if (strncasecmp(url, "https:", 6) == 0) {
            return "https";
        }
    }
    return NULL;
}

/* canon_handler: proxy:ws://host:port/path from ws://host[:port]/path (http routes: mod_proxy_http's). */
static int proxy_wstunnel_canon(request_rec *r, char *url)
{
    const char *scheme;
    char *host, *path, *err;
    const char *search = NULL, *sport = "";
    apr_port_t port, default_port;

    if (strncasecmp(url, "ws:", 3) == 0) {
        scheme = "ws";
    }
    else if (strncasecmp(url, "wss:", 4) == 0) {
        scheme = "wss";
    }
    else {
        return DECLINED;
    }
    url += strlen(scheme) + 1; /* past "ws:" or "wss:" */
    port = default_port = proxy_wstunnel_default_port(scheme);
    err = ap_proxy_canon_netloc(r->pool, &url, NULL, NULL, &host, &port);
    if (err) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, PWS_LOGNO(0001) "error parsing URL %s: %s", url, err);
        return HTTP_BAD_REQUEST;
    }
    if (apr_table_get(r->notes, "proxy-nocanon")) {
        path = url;
    }
    else {
        path = ap_proxy_canonenc(r->pool, url, (int)strlen(url), enc_path, 0, r->proxyreq);
        search = r->args;
    }
    if (path == NULL) {
        return HTTP_BAD_REQUEST;
    }
    if (port != default_port) {
        sport = apr_psprintf(r->pool, ":%u", (unsigned)port);
    }
    if (ap_strchr_c(host, ':')) { /* IPv6 literal */
        host = apr_pstrcat(r->pool, "[", host, "]", NULL);
    }
    r->filename = apr_pstrcat(r->pool, "proxy:", scheme, "://", host, sport, "/", path,
                              search ? "?" : "", search ? search : "", NULL);
    return OK;
}

/* One CRLF-terminated line from `c`, without the line end; APR_ENOSPC when longer than `size` - 1. */
static apr_status_t proxy_wstunnel_getline(conn_rec *c, apr_bucket_brigade *bb, char *buffer, apr_size_t size)
{
    apr_size_t used = 0;
    for (;;) {
        apr_size_t chunk = size - 1 - used;
        apr_status_t rv;
        apr_brigade_cleanup(bb);
        rv = ap_get_brigade(c->input_filters, bb, AP_MODE_GETLINE, APR_BLOCK_READ, 0);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        if (APR_BRIGADE_EMPTY(bb) || APR_BUCKET_IS_EOS(APR_BRIGADE_FIRST(bb))) {
            return APR_EOF;
        }
        rv = apr_brigade_flatten(bb, buffer + used, &chunk);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        used += chunk;
        if (used > 0 && buffer[used - 1] == '\n') {
            break;
        }
        if (used >= size - 1) {
            return APR_ENOSPC;
        }
    }
    while (used > 0 && (buffer[used - 1] == '\n' || buffer[used - 1] == '\r')) {
        used--;
    }
    buffer[used] = '\0';
    return APR_SUCCESS;
}

static int proxy_wstunnel_hop_by_hop(const char *name)
{
    return strcasecmp(name, "Connection") == 0 || strcasecmp(name, "Keep-Alive") == 0
        || strcasecmp(name, "TE") == 0 || strcasecmp(name, "Trailer") == 0
        || strcasecmp(name, "Transfer-Encoding") == 0 || strcasecmp(name, "Upgrade") == 0
        || strncasecmp(name, "Proxy-", 6) == 0;
}

/* The request body, if the client sent one with its upgrade (read through httpd's own HTTP_IN filter, so
 * the bytes after it can never be taken for a second request). NULL with *status set: refuse. */
static char *proxy_wstunnel_read_body(request_rec *r, apr_size_t *length, int *status)
{
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    char *body = apr_palloc(r->pool, PWS_MAX_UPGRADE_BODY);
    *length = 0;
    *status = OK;
    for (;;) {
        apr_bucket *bucket;
        apr_status_t rv = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES, APR_BLOCK_READ, AP_IOBUFSIZE);
        int eos = 0;
        if (rv != APR_SUCCESS) {
            *status = HTTP_BAD_REQUEST;
            return NULL;
        }
        for (bucket = APR_BRIGADE_FIRST(bb); bucket != APR_BRIGADE_SENTINEL(bb); bucket = APR_BUCKET_NEXT(bucket)) {
            const char *data;
            apr_size_t size;
            if (APR_BUCKET_IS_EOS(bucket)) {
                eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(bucket)) {
                continue;
            }
            if (apr_bucket_read(bucket, &data, &size, APR_BLOCK_READ) != APR_SUCCESS) {
                *status = HTTP_BAD_REQUEST;
                return NULL;
            }
            if (*length + size > PWS_MAX_UPGRADE_BODY) {
                *status = HTTP_REQUEST_ENTITY_TOO_LARGE;
                return NULL;
            }
            memcpy(body + *length, data, size);
            *length += size;
        }
        apr_brigade_cleanup(bb);
        if (eos) {
            return body;
        }
    }
}

static apr_status_t proxy_wstunnel_send_request(request_rec *r, proxy_conn_rec *backend, apr_bucket_brigade *bb,
                                                const char *path, const char *host_header, const char *body,
                                                apr_size_t body_length)
{
    const apr_array_header_t *headers = apr_table_elts(r->headers_in);
    const apr_table_entry_t *entry = (const apr_table_entry_t *)headers->elts;
    const char *forwarded = apr_table_get(r->headers_in, "X-Forwarded-For");
    char *request = apr_pstrcat(r->pool, r->method, " ", path, " HTTP/1.1\r\nHost: ", host_header,
                                "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", NULL);
    int i;

    for (i = 0; i < headers->nelts; i++) {
        if (entry[i].key == NULL || entry[i].val == NULL || strcasecmp(entry[i].key, "Host") == 0
            || strcasecmp(entry[i].key, "X-Forwarded-For") == 0 || strcasecmp(entry[i].key, "Content-Length") == 0
            || proxy_wstunnel_hop_by_hop(entry[i].key)) {
            continue;
        }
        request = apr_pstrcat(r->pool, request, entry[i].key, ": ", entry[i].val, "\r\n", NULL);
    }
    if (body_length > 0) {
        request = apr_psprintf(r->pool, "%sContent-Length: %" APR_SIZE_T_FMT "\r\n", request, body_length);
    }
    request = apr_pstrcat(r->pool, request, "X-Forwarded-For: ",
                          forwarded ? apr_pstrcat(r->pool, forwarded, ", ", NULL) : "", PWS_CLIENT_IP(r),
                          "\r\n\r\n", NULL);
    apr_brigade_cleanup(bb);
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_pool_create(request, strlen(request), r->pool,
                                                       backend->connection->bucket_alloc));
    if (body_length > 0) {
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_pool_create(body, body_length, r->pool,
                                                           backend->connection->bucket_alloc));
    }
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(backend->connection->bucket_alloc));
    return ap_pass_brigade(backend->connection->output_filters, bb);
}

/* Stream a refused upgrade's answer to the client as an ordinary HTTP response: status, headers, then the
 * body chunk by chunk (never held whole: a backend may send gigabytes, or never stop). */
static int proxy_wstunnel_relay_plain_response(request_rec *r, proxy_conn_rec *backend, apr_bucket_brigade *bb,
                                               int status, const char *status_line, apr_table_t *headers,
                                               char *line, apr_size_t line_size)
{
    const char *length_header = apr_table_get(headers, "Content-Length");
    const char *encoding = apr_table_get(headers, "Transfer-Encoding");
    const char *type = apr_table_get(headers, "Content-Type");
    apr_bucket_brigade *out = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    apr_off_t remaining = -1; /* -1: until the backend closes */
    int chunked = encoding && proxy_wstunnel_has_token(encoding, "chunked");
    char *buffer = apr_palloc(r->pool, PWS_RELAY_BYTES);
    const apr_array_header_t *elts = apr_table_elts(headers);
    const apr_table_entry_t *entry = (const apr_table_entry_t *)elts->elts;
    int i;

    r->status = status;
    r->status_line = apr_pstrdup(r->pool, status_line);
    for (i = 0; i < elts->nelts; i++) {
        if (proxy_wstunnel_hop_by_hop(entry[i].key) || strcasecmp(entry[i].key, "Content-Length") == 0
            || strcasecmp(entry[i].key, "Content-Type") == 0) {
            continue;
        }
        apr_table_add(r->headers_out, entry[i].key, entry[i].val);
    }
    if (type) {
        ap_set_content_type(r, apr_pstrdup(r->pool, type));
    }
    if (length_header && !chunked) {
        char *end;
        remaining = (apr_off_t)apr_strtoi64(length_header, &end, 10);
        if (remaining < 0 || end == length_header || *end != '\0') {
            return HTTP_BAD_GATEWAY;
        }
    }
    backend->close = 1; /* the upgrade was refused: this connection is not reused */

    for (;;) {
        apr_off_t want = remaining;
        if (chunked) {
            if (proxy_wstunnel_getline(backend->connection, bb, line, line_size) != APR_SUCCESS) {
                break;
            }
            want = (apr_off_t)apr_strtoi64(line, NULL, 16);
            if (want <= 0) {
                break; /* last chunk; trailers are dropped */
            }
        }
        else if (remaining == 0) {
            break;
        }
        while (want != 0) {
            /* Fill up to PWS_RELAY_BYTES (what is there now, after one blocking read), then pass it on at
             * once: memory stays one buffer deep, and big bodies do not cost one pass per 8 KiB. */
            apr_size_t filled = 0;
            apr_read_type_e block = APR_BLOCK_READ;
            int ended = 0;
            while (filled < PWS_RELAY_BYTES && want != 0) {
                apr_off_t room = (apr_off_t)(PWS_RELAY_BYTES - filled);
                apr_size_t got = (apr_size_t)room;
                apr_status_t rv;
                apr_brigade_cleanup(bb);
                rv = ap_get_brigade(backend->connection->input_filters, bb, AP_MODE_READBYTES, block,
                                    (want < 0 || want > room) ? room : want);
                if (block == APR_NONBLOCK_READ
                    && (APR_STATUS_IS_EAGAIN(rv) || (rv == APR_SUCCESS && APR_BRIGADE_EMPTY(bb)))) {
                    break; /* nothing more right now: pass on what there is */
                }
                if (rv != APR_SUCCESS || APR_BRIGADE_EMPTY(bb) || apr_brigade_flatten(bb, buffer + filled, &got)
                    || got == 0) {
                    ended = 1;
                    break;
                }
                filled += got;
                if (want > 0) {
                    want -= (apr_off_t)got;
                }
                block = APR_NONBLOCK_READ;
            }
            if (filled > 0) {
                apr_brigade_write(out, NULL, NULL, buffer, filled); /* copied into the client's allocator */
                if (ap_pass_brigade(r->output_filters, out) != APR_SUCCESS || r->connection->aborted) {
                    apr_brigade_cleanup(out);
                    return OK; /* the client went away: nothing more to say */
                }
                apr_brigade_cleanup(out);
            }
            if (ended) {
                break;
            }
        }
        if (!chunked) {
            break;
        }
        if (want != 0 || proxy_wstunnel_getline(backend->connection, bb, line, line_size) != APR_SUCCESS) {
            break; /* a chunk cut short, or its CRLF missing */
        }
    }
    APR_BRIGADE_INSERT_TAIL(out, apr_bucket_eos_create(r->connection->bucket_alloc));
    ap_pass_brigade(r->output_filters, out);
    return OK;
}

/* The Sec-WebSocket-Accept a backend must answer to `key` (RFC 6455, 4.2.2). */
static const char *proxy_wstunnel_accept_for(apr_pool_t *p, const char *key)
{
    apr_sha1_ctx_t sha1;
    unsigned char digest[APR_SHA1_DIGESTSIZE];
    char *encoded = apr_palloc(p, apr_base64_encode_len(APR_SHA1_DIGESTSIZE));
    apr_sha1_init(&sha1);
    apr_sha1_update(&sha1, key, (unsigned int)strlen(key));
    apr_sha1_update(&sha1, PWS_GUID, (unsigned int)strlen(PWS_GUID));
    apr_sha1_final(digest, &sha1);
    apr_base64_encode(encoded, (const char *)digest, APR_SHA1_DIGESTSIZE);
    return encoded;
}

/* mod_reqtimeout times the request body; a tunnel is no request body. Its filter must go, or a session
 * that stays silent longer than "RequestReadTimeout body=..." dies the next time the client speaks. */
static void proxy_wstunnel_remove_reqtimeout(conn_rec *c)
{
    ap_filter_t *filter = c->input_filters;
    while (filter) {
        ap_filter_t *next = filter->next;
        if (filter->frec && filter->frec->name && strcasecmp(filter->frec->name, "reqtimeout") == 0) {
            ap_remove_input_filter(filter);
        }
        filter = next;
    }
}

/* Where one direction stands in the WebSocket frames it carries: enough of each frame's header to know its opcode
 * and payload length, whatever the TCP pieces (a header may be cut anywhere), so that a close frame is seen once
 * it has passed whole. Payloads are skipped (masked or not, compressed or not); nothing is rewritten. Bytes that
 * are not framing as RFC 6455 has it (a control frame longer than 125 bytes or fragmented, a reserved opcode)
 * make it stop looking: that direction then ends by FIN, reset or timeout only. */
typedef struct {
    unsigned char head[14];    /* the current frame's header so far (2 + 8 length + 4 mask bytes at most) */
    apr_size_t head_length;    /* 0: between frames, or in a payload */
    apr_uint64_t payload_left; /* the current frame's payload bytes still to come */
    int in_close;              /* the current payload is a close frame's */
    int closed;                /* a whole close frame has passed: nothing more is looked at */
    int lost;                  /* not WebSocket framing: nothing more is looked at */
} proxy_wstunnel_frames;

static apr_size_t proxy_wstunnel_frame_head_size(const unsigned char *head)
{
    apr_size_t length = head[1] & 0x7F;
    return 2 + (length == 126 ? 2 : length == 127 ? 8 : 0) + ((head[1] & 0x80) ? 4 : 0);
}

static void proxy_wstunnel_frames_feed(proxy_wstunnel_frames *f, const char *data, apr_size_t length)
{
    while (length > 0 && !f->closed && !f->lost) {
        if (f->payload_left > 0) {
            apr_size_t skip = f->payload_left < (apr_uint64_t)length ? (apr_size_t)f->payload_left : length;
            f->payload_left -= skip;
            data += skip;
            length -= skip;
        }
        else {
            unsigned char *head = f->head;
            unsigned opcode, short_length;
            apr_uint64_t payload = 0;
            apr_size_t k;
            head[f->head_length++] = (unsigned char)*data++;
            length--;
            if (f->head_length < 2 || f->head_length < proxy_wstunnel_frame_head_size(head)) {
                continue;
            }
            opcode = head[0] & 0x0F;
            short_length = head[1] & 0x7F;
            if (short_length < 126) {
                payload = short_length;
            }
            else {
                for (k = 2; k < (short_length == 126 ? 4u : 10u); k++) {
                    payload = (payload << 8) | head[k];
                }
            }
            if ((opcode >= 0x3 && opcode <= 0x7) || opcode > 0xA
                || (opcode >= 0x8 && (!(head[0] & 0x80) || (head[0] & 0x70) || short_length > 125))) {
                f->lost = 1;
                return;
            }
            f->in_close = opcode == 0x8;
            f->payload_left = payload;
            f->head_length = 0;
        }
        if (f->in_close && f->payload_left == 0 && f->head_length == 0) {
            f->closed = 1;
        }
    }
}

/* The raw tunnel: once both connections are plain TCP (no TLS, no filter that needs the bytes), bytes move
 * straight between the sockets in reads of up to PWS_RAW_BYTES: one poll, one recv and one send per message
 * and direction, where the filter path costs a flush per 8 KiB and a read that only learns EAGAIN. The same
 * state machine runs in two places: in the worker that took the upgrade (one tunnel, poll()), or, with
 * "ProxyWebsocketHandoff On" on a threaded MPM, in this child's event loop (every tunnel handed to it,
 * epoll), which gives the worker back to Apache. */
#define PWS_RAW_BYTES (64 * 1024)
/* Linux: the payload of a big frame (at least PWS_SPLICE_MIN bytes still to come) moves with splice(2) through a
 * pipe, socket to pipe to socket, without passing through user space; one splice of at most PWS_RAW_BYTES per
 * turn, as a read. The pipe is made for the frame and closed once it is through. */
#define PWS_SPLICE PWS_HANDOFF
#define PWS_SPLICE_MIN (16 * 1024)

typedef struct proxy_wstunnel_raw proxy_wstunnel_raw;

/* One end of a raw tunnel: 0 the client, 1 the backend. */
typedef struct {
    proxy_wstunnel_raw *tunnel;
    int fd;
    int read_done;             /* EOF read from this end */
    int write_shut;            /* our FIN has been sent to this end */
    proxy_wstunnel_frames frames; /* the frames read from this end */
    char *pending;             /* bytes for this end it did not take yet (malloc'd; NULL: none) */
    apr_size_t pending_length; /* how many of them are left, from pending_offset */
    apr_size_t pending_offset;
    apr_time_t blocked_since; /* when a write to this end got stuck (0: it is not) */
    short events;             /* the poll events this end is registered for in the event loop (0: none) */
    int pipe[2];              /* splice: the pipe payload bytes for this end pass through (-1: none) */
    apr_size_t piped;         /* bytes in that pipe this end did not take yet */
} proxy_wstunnel_end;

/* Bytes wait for this end: copied (pending) or in its pipe (piped). */
#define PWS_HAS_PENDING(end) ((end)->pending != NULL || (end)->piped > 0)

struct proxy_wstunnel_raw {
    proxy_wstunnel_end end[2];
    apr_interval_time_t idle_timeout;  /* 0: no idle limit */
    apr_interval_time_t write_timeout; /* how long an end may refuse what we write (the server's Timeout) */
    apr_interval_time_t fin_timeout;   /* how long after fin_since the tunnel may live on (0: no limit) */
    apr_time_t fin_since;              /* the first FIN or relayed close frame (0: none yet) */
    apr_time_t last_activity;
    int closed;
    proxy_wstunnel_raw *prev, *next; /* the event loop's list */
};

/* The poll events end `i` needs now: readable while what it sends has somewhere to go (backpressure: a
 * stuck receiver stops its sender), writable while bytes wait for it. */
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

/* Both ends sent their FIN, or both their close frames, and everything was delivered. */
static int proxy_wstunnel_raw_finished(const proxy_wstunnel_raw *t)
{
    return ((t->end[0].read_done && t->end[1].read_done)
            || (t->end[0].frames.closed && t->end[1].frames.closed))
           && !PWS_HAS_PENDING(&t->end[0]) && !PWS_HAS_PENDING(&t->end[1]);
}

/* Pass our FIN on to `end` once the other end has sent its last byte and all of it was delivered. */
static void proxy_wstunnel_raw_pass_fin(proxy_wstunnel_raw *t, int i)
{
    proxy_wstunnel_end *end = &t->end[i];
    if (t->end[1 - i].read_done && !PWS_HAS_PENDING(end) && !end->write_shut) {
        shutdown(end->fd, SHUT_WR);
        end->write_shut = 1;
    }
}

/* Write `data` to end `i` without blocking; what it does not take now is kept for when it is writable.
 * 0: fine; -1: the end is gone. */
static int proxy_wstunnel_raw_write(proxy_wstunnel_raw *t, int i, const char *data, apr_size_t length,
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

/* Was the EOF just read on `fd` a reset? A reset's error is reported once: when someone else read it first (the
 * MPM on its own descriptor of a handed-off socket), recv() says 0 as for a FIN. A FIN leaves the socket in
 * CLOSE-WAIT (when we have not sent ours); a reset leaves it closed. */
static int proxy_wstunnel_was_reset(int fd)
{
#if defined(__linux__) && defined(TCP_INFO)
    struct tcp_info info;
    socklen_t size = sizeof(info);
    memset(&info, 0, sizeof(info));
    return getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &size) == 0 && info.tcpi_state == TCP_CLOSE;
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
/* Move what end `i`'s pipe holds into its socket. 0: fine (all of it, or it is full for now); -1: the end is gone.
 * An emptied pipe is closed once the frame that filled it has passed. */
static int proxy_wstunnel_pipe_flush(proxy_wstunnel_raw *t, int i, apr_time_t now)
{
    proxy_wstunnel_end *end = &t->end[i];
    while (end->piped > 0) {
        ssize_t moved = splice(end->pipe[0], NULL, end->fd, NULL, end->piped, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
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

/* Read from end `i` by splice(2) when it is in the payload of a big frame. 1: moved (or nothing there yet);
 * 2: EOF; 0: not this way (no big payload, no pipe to be had): read as usual; -1: broken. */
static int proxy_wstunnel_raw_splice(proxy_wstunnel_raw *t, int i, apr_time_t now)
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
        for (k = 0; k < 2; k++) { /* a splice to or from a socket waits unless the socket says not to */
            int flags = fcntl(t->end[k].fd, F_GETFL);
            if (flags >= 0 && !(flags & O_NONBLOCK)) {
                fcntl(t->end[k].fd, F_SETFL, flags | O_NONBLOCK);
            }
        }
    }
    want = end->frames.payload_left < PWS_RAW_BYTES ? (apr_size_t)end->frames.payload_left : PWS_RAW_BYTES;
    do {
        got = splice(end->fd, NULL, to->pipe[1], NULL, want, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    } while (got < 0 && errno == EINTR);
    if (got < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 1;
        }
        if (errno == EINVAL || errno == ENOSYS) {
            proxy_wstunnel_close_pipe(to); /* no splice for these descriptors: copy */
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

/* End `i` is ready (`revents` as poll() reports them; a hang-up or error counts as ready for whatever the
 * end was waiting for, and the read or write then says what happened). 1: the tunnel has ended cleanly,
 * both ways; -1: it is broken (reset, error), end it now; 0: go on. */
static int proxy_wstunnel_raw_ready(proxy_wstunnel_raw *t, int i, short revents, char *buffer, apr_size_t size,
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
            ssize_t sent = send(end->fd, end->pending + end->pending_offset, end->pending_length,
                                MSG_DONTWAIT | MSG_NOSIGNAL);
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
            if (proxy_wstunnel_raw_write(t, 1 - i, buffer, (apr_size_t)got, now) != 0) {
                return -1;
            }
            if (end->frames.closed && t->fin_since == 0) {
                t->fin_since = now; /* a close frame relayed: the answer has the fin timeout to come */
            }
        }
        else if (got == 0) {
            if (!end->write_shut && proxy_wstunnel_was_reset(end->fd)) {
                return -1;
            }
            /* Half-close: pass the FIN on, keep the other direction open for what it still sends (for at most
             * the fin timeout). */
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
    else if ((revents & POLLNVAL) || ((revents & POLLERR) && !(wanted & POLLOUT))) {
        return -1;
    }
    return proxy_wstunnel_raw_finished(t) ? 1 : 0;
}

/* Has the tunnel been silent longer than its idle limit, or a receiver refused our bytes too long (1)? Or has
 * one side finished (FIN, close frame) longer than the fin timeout ago (2)? 0: neither. */
static int proxy_wstunnel_raw_expired(const proxy_wstunnel_raw *t, apr_time_t now)
{
    int i;
    if (t->fin_timeout > 0 && t->fin_since != 0 && now - t->fin_since >= t->fin_timeout) {
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

/* How long poll() may sleep before the next deadline of `t`, in milliseconds (-1: no deadline). */
static int proxy_wstunnel_raw_wait_ms(const proxy_wstunnel_raw *t, apr_time_t now)
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

/* A tunnel that ends other than cleanly (the fin timeout, the idle limit, a reset or error) closes the backend
 * with a reset (zero linger) unless the backend sent its FIN: a backend that does not close on EOF (broadwayd)
 * would sit in CLOSE-WAIT for good after a FIN, holding the dead client's session. The reset takes its socket
 * away at once and tells it, at its next read or write, that the client is gone. The client's side is closed as
 * always (what was sent to it still arrives). */
static void proxy_wstunnel_reset_on_close(int fd)
{
    struct linger abort_close;
    abort_close.l_onoff = 1;
    abort_close.l_linger = 0;
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof(abort_close));
}

static void proxy_wstunnel_raw_free_pending(proxy_wstunnel_raw *t)
{
    int i;
    for (i = 0; i < 2; i++) {
        free(t->end[i].pending);
        t->end[i].pending = NULL;
        proxy_wstunnel_close_pipe(&t->end[i]);
    }
}

static void proxy_wstunnel_raw_init(proxy_wstunnel_raw *t, int client_fd, int backend_fd,
                                    apr_interval_time_t idle_timeout, apr_interval_time_t fin_timeout,
                                    apr_interval_time_t write_timeout)
{
    memset(t, 0, sizeof(*t));
    t->end[0].fd = client_fd;
    t->end[1].fd = backend_fd;
    t->end[0].tunnel = t->end[1].tunnel = t;
    t->end[0].pipe[0] = t->end[0].pipe[1] = t->end[1].pipe[0] = t->end[1].pipe[1] = -1;
    t->idle_timeout = idle_timeout;
    t->fin_timeout = fin_timeout;
    t->write_timeout = write_timeout;
    t->last_activity = apr_time_now();
}

/* The worker runs the raw tunnel itself until it ends. APR_SUCCESS: both sides finished (FINs or close frames);
 * APR_TIMEUP: idle or stuck past the limit; APR_EOF: one side finished and the fin timeout passed;
 * APR_ECONNRESET: a side broke off. */
static apr_status_t proxy_wstunnel_raw_run(proxy_wstunnel_raw *t, char *buffer)
{
    for (;;) {
        struct pollfd fds[2];
        apr_time_t now = apr_time_now();
        int i, polled;
        for (i = 0; i < 2; i++) {
            fds[i].events = proxy_wstunnel_raw_wanted(t, i);
            fds[i].fd = fds[i].events ? t->end[i].fd : -1; /* an end we wait nothing from is not polled */
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
        /* Each end gets one read of at most PWS_RAW_BYTES per round: a flood one way cannot starve the other. */
        for (i = 0; i < 2; i++) {
            int step;
            if (fds[i].revents == 0) {
                continue;
            }
            step = proxy_wstunnel_raw_ready(t, i, fds[i].revents, buffer, PWS_RAW_BYTES, now);
            if (step > 0) {
                return APR_SUCCESS;
            }
            if (step < 0) {
                return APR_ECONNRESET;
            }
        }
        /* Deadlines count even while bytes flow: a half-closed tunnel ends after the fin timeout, busy or not. */
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
/* The event loop one child process runs for the tunnels its workers handed off (ProxyWebsocketHandoff On,
 * threaded MPMs). It is made on the first handoff, holds at most `limit` tunnels (two descriptors each:
 * more stay with their worker) and, when the child exits (graceful restart, MaxConnectionsPerChild), keeps
 * the child alive until its tunnels have ended, as a worker holding a tunnel would. Only malloc'd memory and
 * descriptors of its own (dups of Apache's) are touched here: no pool, no filter, no conn_rec. */
#define PWS_LOOP_EVENTS 64
#define PWS_LOOP_TICK_MS 250 /* how often idle and stuck tunnels are looked for */
#define PWS_LOOP_RESERVED_FDS 64

typedef struct {
    pthread_mutex_t lock; /* the list and count; held by the loop while it handles a batch of events */
    pthread_t thread;
    int epoll_fd;
    int wake[2]; /* a pipe: written when the child exits, so a sleeping loop sees it at once */
    int stopping;
    apr_size_t count, limit;
    proxy_wstunnel_raw *tunnels;
    char buffer[PWS_RAW_BYTES];
} proxy_wstunnel_loop;

static pthread_mutex_t proxy_wstunnel_loop_lock = PTHREAD_MUTEX_INITIALIZER;
static proxy_wstunnel_loop *proxy_wstunnel_child_loop; /* this child's, once made */
static int proxy_wstunnel_loop_failed;                   /* making it failed: do not try on every upgrade */

/* Keep the end's epoll registration in step with what it waits for. -1: epoll refused (end the tunnel). */
static int proxy_wstunnel_loop_register(proxy_wstunnel_loop *loop, proxy_wstunnel_end *end)
{
    short wanted = proxy_wstunnel_raw_wanted(end->tunnel, end == &end->tunnel->end[0] ? 0 : 1);
    struct epoll_event event;
    int done;
    if (wanted == end->events) {
        return 0;
    }
    memset(&event, 0, sizeof(event));
    event.events = ((wanted & POLLIN) ? EPOLLIN : 0) | ((wanted & POLLOUT) ? EPOLLOUT : 0);
    event.data.ptr = end;
    /* An end we wait nothing from leaves the set: epoll would report its hang-up over and over. */
    if (wanted == 0) {
        done = epoll_ctl(loop->epoll_fd, EPOLL_CTL_DEL, end->fd, &event);
    }
    else {
        done = epoll_ctl(loop->epoll_fd, end->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, end->fd, &event);
    }
    if (done != 0) {
        return -1;
    }
    end->events = wanted;
    return 0;
}

/* Unlink and close a tunnel (`clean`: it finished both ways; else its backend is reset unless it sent its FIN);
 * it is freed after the batch of events that may still name it. */
static void proxy_wstunnel_loop_close(proxy_wstunnel_loop *loop, proxy_wstunnel_raw *t, int clean,
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
        int ready = epoll_wait(loop->epoll_fd, events, PWS_LOOP_EVENTS, PWS_LOOP_TICK_MS), i;
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
            step = proxy_wstunnel_raw_ready(t, end == &t->end[0] ? 0 : 1, revents, loop->buffer,
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

/* The child exits: let the loop finish the tunnels it holds (they end on their own or idle out), then go. */
static apr_status_t proxy_wstunnel_loop_stop(void *data)
{
    proxy_wstunnel_loop *loop;
    (void)data;
    pthread_mutex_lock(&proxy_wstunnel_loop_lock);
    loop = proxy_wstunnel_child_loop;
    proxy_wstunnel_child_loop = NULL;
    pthread_mutex_unlock(&proxy_wstunnel_loop_lock);
    if (loop == NULL) {
        return APR_SUCCESS;
    }
    pthread_mutex_lock(&loop->lock);
    loop->stopping = 1;
    pthread_mutex_unlock(&loop->lock);
    if (write(loop->wake[1], "x", 1) < 0) {
        /* the loop still sees `stopping` at its next tick */
    }
    pthread_join(loop->thread, NULL);
    /* The process exits now: the loop's struct and descriptors are left to it, so that a worker still
     * holding the pointer (an MPM that exits without joining every worker) cannot touch freed memory. */
    return APR_SUCCESS;
}

/* This child's loop, made on first use. NULL: none can be had (the error log says why, once). */
static proxy_wstunnel_loop *proxy_wstunnel_loop_get(server_rec *s)
{
    proxy_wstunnel_loop *loop;
    struct rlimit files;
    struct epoll_event event;
    sigset_t all, previous;
    int made;

    pthread_mutex_lock(&proxy_wstunnel_loop_lock);
    loop = proxy_wstunnel_child_loop;
    if (loop || proxy_wstunnel_loop_failed) {
        pthread_mutex_unlock(&proxy_wstunnel_loop_lock);
        return loop;
    }
    loop = calloc(1, sizeof(*loop));
    if (loop == NULL) {
        goto failed;
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
    loop->limit = files.rlim_cur > PWS_LOOP_RESERVED_FDS * 2 ? (files.rlim_cur - PWS_LOOP_RESERVED_FDS) / 2 : 0;
    /* Signals stay with Apache's threads (the MPM's own handling of restarts and stops). */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &previous);
    made = pthread_create(&loop->thread, NULL, proxy_wstunnel_loop_run, loop);
    pthread_sigmask(SIG_SETMASK, &previous, NULL);
    if (made != 0) {
        goto failed;
    }
    proxy_wstunnel_child_loop = loop;
    pthread_mutex_unlock(&proxy_wstunnel_loop_lock);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s,
                 PWS_LOGNO(0014) "event loop started: up to %" APR_SIZE_T_FMT " tunnels in this child", loop->limit);
    return loop;

failed:
    proxy_wstunnel_loop_failed = 1;
    pthread_mutex_unlock(&proxy_wstunnel_loop_lock);
    ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), s,
                 PWS_LOGNO(0015) "cannot start the WebSocket event loop: tunnels stay with their workers");
    if (loop) {
        if (loop->epoll_fd >= 0) {
            close(loop->epoll_fd);
        }
        if (loop->wake[0] >= 0) {
            close(loop->wake[0]);
            close(loop->wake[1]);
        }
        pthread_mutex_destroy(&loop->lock);
        free(loop);
    }
    return NULL;
}

static int proxy_wstunnel_dup(int fd)
{
#ifdef F_DUPFD_CLOEXEC
    return fcntl(fd, F_DUPFD_CLOEXEC, 0);
#else
    int copy = dup(fd);
    if (copy >= 0) {
        fcntl(copy, F_SETFD, FD_CLOEXEC);
    }
    return copy;
#endif
}

/* Put the raw tunnel `prepared`, on descriptors that are now the loop's, into `loop`. 0: it is in; 1: the loop is
 * full or stopping (`count` says how many it holds); -1: no memory, or epoll refused. Unless 0, the descriptors
 * are closed. */
static int proxy_wstunnel_loop_adopt(proxy_wstunnel_loop *loop, const proxy_wstunnel_raw *prepared,
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
            proxy_wstunnel_loop_close(loop, t, 1, &dead); /* closes the descriptors, leaves the peers alone */
            pthread_mutex_unlock(&loop->lock);
            free(dead);
            return -1;
        }
    }
    pthread_mutex_unlock(&loop->lock);
    return 0;
}

/* Give the raw tunnel `prepared` (the worker's, on Apache's descriptors) to this child's event loop. The loop
 * works on a copy with duplicates of the two descriptors: Apache closes its own when the request ends (without
 * a shutdown: the connections are marked aborted), and the sockets live on in the loop. 1: handed off; 0: the
 * worker keeps the tunnel (no loop, loop full, no fds). */
static int proxy_wstunnel_hand_off(request_rec *r, const proxy_wstunnel_raw *prepared)
{
    proxy_wstunnel_loop *loop = proxy_wstunnel_loop_get(r->server);
    proxy_wstunnel_raw copy;
    apr_size_t count = 0;
    int i, adopted;

    if (loop == NULL) {
        return 0;
    }
    copy = *prepared;
    copy.end[0].fd = proxy_wstunnel_dup(prepared->end[0].fd);
    copy.end[1].fd = copy.end[0].fd >= 0 ? proxy_wstunnel_dup(prepared->end[1].fd) : -1;
    if (copy.end[1].fd < 0) {
        if (copy.end[0].fd >= 0) {
            close(copy.end[0].fd);
        }
        ap_log_rerror(APLOG_MARK, APLOG_INFO, APR_FROM_OS_ERROR(errno), r,
                      PWS_LOGNO(0017) "no descriptors for the event loop: this worker keeps the tunnel");
        return 0;
    }
    for (i = 0; i < 2; i++) {
        copy.end[i].pending = NULL; /* nothing is pending at a handoff: the filters were drained first */
    }
    adopted = proxy_wstunnel_loop_adopt(loop, &copy, &count);
    if (adopted > 0) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      PWS_LOGNO(0016) "event loop full (%" APR_SIZE_T_FMT " tunnels): this worker keeps the tunnel",
                      count);
    }
    return adopted == 0;
}
/* The tunnel keeper: "ProxyWebsocketHandoff On" under prefork, where a child serves one connection at a time and
 * is retired whenever MaxSpareServers says so. The parent starts one keeper process per generation (after the
 * config is read, as mod_cgid starts its daemon; it restarts one that dies); the keeper runs the same event
 * loop as a threaded child. A child that has finished a plain tunnel's handshake passes both descriptors to it
 * over a Unix socket (SCM_RIGHTS) with the tunnel's state (idle limit, fin timeout, frames seen), waits for its
 * "taken", and lets Apache close its own copies without a shutdown, as the threaded handoff does. The socket
 * sits in a directory only the Apache user can enter (0700, checked at every start); the keeper takes
 * descriptors only from processes of its own user whose parent is its parent. On a graceful restart the old
 * keeper takes no more tunnels and exits when its last one ends; a stop or hard restart ends them. */
#define PWS_KEEPER_MAGIC 0x41505753u   /* "APWS" */
#define PWS_KEEPER_STARTUP_ERROR 75     /* the keeper's exit code when it cannot start: not restarted */
#define PWS_KEEPER_PATIENCE_SEC 10      /* how long a child waits for the keeper to take a tunnel */
#define PWS_KEEPER_FILES 65536          /* the open-files limit the keeper asks for (two per tunnel) */

typedef struct {
    apr_uint32_t magic;
    apr_uint32_t size; /* the child and the keeper are the same build: the struct is sent as it is */
    apr_interval_time_t idle_timeout, fin_timeout, write_timeout;
    apr_time_t fin_since;
    proxy_wstunnel_frames frames[2];
} proxy_wstunnel_keeper_msg;

typedef struct {
    apr_proc_t proc;
    int alive;        /* proc.pid is this generation's running keeper */
    int listener;     /* the listening socket, made by the parent, inherited by each keeper it starts */
    const char *path; /* where it is bound */
    apr_time_t started;
    apr_pool_t *pool;
    server_rec *s;
} proxy_wstunnel_keeper;

static const char *proxy_wstunnel_keeper_path; /* this generation's keeper socket (NULL: none): children use it */
static int proxy_wstunnel_keeper_listener = -1; /* closed in children, which only connect */
static pid_t proxy_wstunnel_parent_pid;
static volatile sig_atomic_t proxy_wstunnel_keeper_retiring;

/* The parent of process `pid` (from /proc), or -1. */
static pid_t proxy_wstunnel_parent_of(pid_t pid)
{
    char path[64], stat[512], *end;
    ssize_t got;
    int fd;
    long parent;
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    got = read(fd, stat, sizeof(stat) - 1);
    close(fd);
    if (got <= 0) {
        return -1;
    }
    stat[got] = '\0';
    end = strrchr(stat, ')'); /* "pid (name) state ppid ...": the name may hold anything */
    if (end == NULL || sscanf(end + 1, " %*c %ld", &parent) != 1) {
        return -1;
    }
    return (pid_t)parent;
}

static void proxy_wstunnel_keeper_on_signal(int sig)
{
    (void)sig;
    proxy_wstunnel_keeper_retiring = 1;
}

/* Take one tunnel from a child on `conn`, and say whether it was taken ("K") or not ("N"). */
static void proxy_wstunnel_keeper_take(proxy_wstunnel_loop *loop, int conn, server_rec *s, pid_t parent)
{
    proxy_wstunnel_keeper_msg msg;
    proxy_wstunnel_raw tunnel;
    struct msghdr header;
    struct iovec part;
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(4 * sizeof(int))];
    } control;
    struct cmsghdr *cmsg;
    struct ucred peer;
    socklen_t size = sizeof(peer);
    struct timeval patience;
    int fds[4], count = 0, i;
    apr_size_t held = 0;
    ssize_t got;
    char answer = 'N';

    memset(&peer, 0, sizeof(peer));
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0 || peer.uid != geteuid()
        || proxy_wstunnel_parent_of(peer.pid) != parent) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     PWS_LOGNO(0028) "tunnel keeper: refused a connection from pid %ld (uid %ld): not a child of "
                                     "this server",
                     (long)peer.pid, (long)peer.uid);
        return;
    }
    patience.tv_sec = PWS_KEEPER_PATIENCE_SEC;
    patience.tv_usec = 0;
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof(patience));
    memset(&msg, 0, sizeof(msg));
    memset(&header, 0, sizeof(header));
    memset(&control, 0, sizeof(control));
    part.iov_base = &msg;
    part.iov_len = sizeof(msg);
    header.msg_iov = &part;
    header.msg_iovlen = 1;
    header.msg_control = control.space;
    header.msg_controllen = sizeof(control.space);
    do {
        got = recvmsg(conn, &header, MSG_CMSG_CLOEXEC);
    } while (got < 0 && errno == EINTR);
    for (cmsg = got > 0 ? CMSG_FIRSTHDR(&header) : NULL; cmsg; cmsg = CMSG_NXTHDR(&header, cmsg)) {
        if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
            int n = (int)((cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (i = 0; i < n && count < 4; i++) {
                memcpy(&fds[count++], CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
            }
        }
    }
    if (got != (ssize_t)sizeof(msg) || (header.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || count != 2
        || msg.magic != PWS_KEEPER_MAGIC || msg.size != sizeof(msg)) {
        for (i = 0; i < count; i++) {
            close(fds[i]);
        }
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     PWS_LOGNO(0029) "tunnel keeper: a hand-over from pid %ld was not a tunnel", (long)peer.pid);
    }
    else {
        proxy_wstunnel_raw_init(&tunnel, fds[0], fds[1], msg.idle_timeout, msg.fin_timeout, msg.write_timeout);
        tunnel.fin_since = msg.fin_since;
        tunnel.end[0].frames = msg.frames[0];
        tunnel.end[1].frames = msg.frames[1];
        switch (proxy_wstunnel_loop_adopt(loop, &tunnel, &held)) {
        case 0:
            answer = 'K';
            break;
        case 1:
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                         PWS_LOGNO(0016) "tunnel keeper full (%" APR_SIZE_T_FMT " tunnels): the child keeps the "
                                         "tunnel",
                         held);
            break;
        default:
            break;
        }
    }
    if (send(conn, &answer, 1, MSG_NOSIGNAL) < 0) {
        /* the child gave up waiting: it runs the tunnel itself (ours, if taken, ends with its own sockets) */
    }
}

/* The keeper process, forked by the parent: never returns. */
static void proxy_wstunnel_keeper_main(proxy_wstunnel_keeper *keeper)
{
    server_rec *s = keeper->s;
    pid_t parent = getppid();
    proxy_wstunnel_loop *loop;
    struct sigaction action;
    struct rlimit files;
    sigset_t none;
    int fd;

    /* The parent's handlers are not ours: a stop (SIGTERM) or hard restart (SIGHUP), sent to the whole process
     * group, ends the keeper and its tunnels; SIGUSR1 (from the parent on a graceful restart) and SIGWINCH
     * (graceful-stop) make it take no new ones. */
    memset(&action, 0, sizeof(action));
    sigemptyset(&action.sa_mask);
    action.sa_handler = SIG_DFL;
    sigaction(SIGTERM, &action, NULL);
    sigaction(SIGHUP, &action, NULL);
    sigaction(SIGINT, &action, NULL);
    sigaction(SIGCHLD, &action, NULL);
    action.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &action, NULL);
    action.sa_handler = proxy_wstunnel_keeper_on_signal;
    sigaction(SIGUSR1, &action, NULL);
    sigaction(SIGWINCH, &action, NULL);
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    ap_close_listeners(); /* the server's ports are the children's */

    /* Two descriptors per tunnel: ask for PWS_KEEPER_FILES while still root, else take the hard limit. */
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < PWS_KEEPER_FILES) {
        struct rlimit wanted = files;
        wanted.rlim_cur = PWS_KEEPER_FILES;
        if (wanted.rlim_max < PWS_KEEPER_FILES) {
            wanted.rlim_max = PWS_KEEPER_FILES;
        }
        if (setrlimit(RLIMIT_NOFILE, &wanted) != 0) {
            files.rlim_cur = files.rlim_max < PWS_KEEPER_FILES ? files.rlim_max : PWS_KEEPER_FILES;
            setrlimit(RLIMIT_NOFILE, &files);
        }
    }
    if (geteuid() == 0 && PWS_SETUP_CHILD() != 0) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     PWS_LOGNO(0030) "tunnel keeper: cannot become the server's User: it is not started again");
        _exit(PWS_KEEPER_STARTUP_ERROR);
    }
    loop = proxy_wstunnel_loop_get(s);
    if (loop == NULL) {
        _exit(PWS_KEEPER_STARTUP_ERROR);
    }
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s,
                 PWS_LOGNO(0026) "tunnel keeper (pid %ld) takes up to %" APR_SIZE_T_FMT " tunnels on %s",
                 (long)getpid(), loop->limit, keeper->path);
    while (!proxy_wstunnel_keeper_retiring && getppid() == parent) {
        struct pollfd ready;
        ready.fd = keeper->listener;
        ready.events = POLLIN;
        ready.revents = 0;
        if (poll(&ready, 1, 1000) <= 0) {
            continue; /* a signal, or a second to look at the parent again */
        }
        fd = accept(keeper->listener, NULL, NULL);
        if (fd >= 0) {
            proxy_wstunnel_keeper_take(loop, fd, s, parent);
            close(fd);
        }
    }
    close(keeper->listener);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s,
                 PWS_LOGNO(0031) "tunnel keeper (pid %ld) takes no new tunnels; it exits when its %" APR_SIZE_T_FMT
                                 " end",
                 (long)getpid(), loop->count);
    proxy_wstunnel_loop_stop(NULL);
    _exit(0);
}

static void proxy_wstunnel_keeper_maintain(int reason, void *data, apr_wait_t status);

/* Fork this generation's keeper and have the parent watch it. */
static void proxy_wstunnel_keeper_start(proxy_wstunnel_keeper *keeper)
{
    apr_status_t rv = apr_proc_fork(&keeper->proc, keeper->pool);
    if (rv == APR_INCHILD) {
        proxy_wstunnel_keeper_main(keeper);
    }
    if (rv != APR_INPARENT) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, keeper->s,
                     PWS_LOGNO(0032) "cannot start the tunnel keeper: tunnels stay with their processes");
        return;
    }
    keeper->alive = 1;
    keeper->started = apr_time_now();
    apr_proc_other_child_register(&keeper->proc, proxy_wstunnel_keeper_maintain, keeper, NULL, keeper->pool);
}

/* The parent's watch over its keeper: one that died is started again (unless it could not start at all, or the
 * server is stopping); on a graceful restart (the config pool cleared) the old one is told to retire. */
static void proxy_wstunnel_keeper_maintain(int reason, void *data, apr_wait_t status)
{
    proxy_wstunnel_keeper *keeper = data;
    int state = AP_MPMQ_STOPPING;
    switch (reason) {
    case APR_OC_REASON_DEATH:
    case APR_OC_REASON_LOST:
        keeper->alive = 0;
        apr_proc_other_child_unregister(keeper);
        if (ap_mpm_query(AP_MPMQ_MPM_STATE, &state) != APR_SUCCESS || state == AP_MPMQ_STOPPING) {
            break;
        }
        if (WIFEXITED(status) && WEXITSTATUS(status) == PWS_KEEPER_STARTUP_ERROR) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, keeper->s,
                         PWS_LOGNO(0033) "the tunnel keeper could not start: tunnels stay with their processes");
            break;
        }
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, keeper->s,
                     PWS_LOGNO(0027) "tunnel keeper (pid %ld) died (%s %d): its tunnels are closed; starting a new one",
                     (long)keeper->proc.pid, WIFSIGNALED(status) ? "signal" : "exit code",
                     WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        proxy_wstunnel_keeper_start(keeper);
        break;
    case APR_OC_REASON_RESTART: /* a stop or hard restart: its tunnels end */
        if (keeper->alive) {
            keeper->alive = 0;
            kill(keeper->proc.pid, SIGTERM);
        }
        apr_proc_other_child_unregister(keeper);
        break;
    case APR_OC_REASON_UNREGISTER: /* the config pool is cleared: a restart, or the end */
        if (keeper->alive && getpid() == proxy_wstunnel_parent_pid) {
            keeper->alive = 0;
            kill(keeper->proc.pid, SIGUSR1);
        }
        break;
    default:
        break;
    }
}

/* The parent's listening socket and its path are removed with the generation's config pool. */
static apr_status_t proxy_wstunnel_keeper_cleanup(void *data)
{
    proxy_wstunnel_keeper *keeper = data;
    if (getpid() == proxy_wstunnel_parent_pid) {
        close(keeper->listener);
        unlink(keeper->path);
    }
    proxy_wstunnel_keeper_path = NULL;
    proxy_wstunnel_keeper_listener = -1;
    return APR_SUCCESS;
}

/* The private directory the keeper's socket lives in: made 0700 for the Apache user, or, when it is there,
 * checked to be exactly that. NULL: unusable (the error log says why). */
static const char *proxy_wstunnel_keeper_dir(apr_pool_t *p, server_rec *s, uid_t owner)
{
    /* Beside the pid file, where the server's User can reach (RHEL's run/ is 0710 root:apache; its logs/ 0700) */
#if AP_MODULE_MAGIC_AT_LEAST(20120211, 2)
    const char *dir = ap_runtime_dir_relative(p, "apachews-keeper");
#else
    const char *pid_file = ap_server_root_relative(p, ap_pid_fname ? ap_pid_fname : "logs/httpd.pid");
    const char *slash = pid_file ? strrchr(pid_file, '/') : NULL;
    const char *dir = slash ? apr_pstrcat(p, apr_pstrndup(p, pid_file, (apr_size_t)(slash - pid_file)),
                                          "/apachews-keeper", NULL)
                            : NULL;
#endif
    struct stat info;
    if (dir == NULL) {
        return NULL;
    }
    if (mkdir(dir, 0700) == 0 && chown(dir, owner, (gid_t)-1) != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), s,
                     PWS_LOGNO(0034) "cannot give %s to the server's User", dir);
        return NULL;
    }
    if (lstat(dir, &info) != 0 || !S_ISDIR(info.st_mode) || info.st_uid != owner || (info.st_mode & 077) != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), s,
                     PWS_LOGNO(0035) "%s must be a directory of the server's User (uid %ld) with mode 0700: remove "
                                     "it and restart; no tunnel keeper until then",
                     dir, (long)owner);
        return NULL;
    }
    return dir;
}

/* Post-config in the parent, under prefork: make the socket and start this generation's keeper. */
static void proxy_wstunnel_keeper_setup(apr_pool_t *pconf, server_rec *s, int generation)
{
    proxy_wstunnel_keeper *keeper;
    struct sockaddr_un address;
    uid_t owner = geteuid() == 0 ? PWS_APACHE_UID : geteuid();
    const char *dir = proxy_wstunnel_keeper_dir(pconf, s, owner);
    int fd;

    if (dir == NULL) {
        return;
    }
    proxy_wstunnel_parent_pid = getpid();
    keeper = apr_pcalloc(pconf, sizeof(*keeper));
    keeper->pool = pconf;
    keeper->s = s;
    keeper->path = apr_psprintf(pconf, "%s/%ld.%d.sock", dir, (long)getpid(), generation);
    memset(&address, 0, sizeof(address));
    address.sun_family = AF_UNIX;
    if (strlen(keeper->path) >= sizeof(address.sun_path)) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     PWS_LOGNO(0036) "tunnel keeper socket path too long: %s; no tunnel keeper", keeper->path);
        return;
    }
    strcpy(address.sun_path, keeper->path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    unlink(keeper->path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof(address)) != 0
        || chown(keeper->path, owner, (gid_t)-1) != 0 || chmod(keeper->path, 0600) != 0 || listen(fd, 511) != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), s,
                     PWS_LOGNO(0036) "cannot listen on %s; no tunnel keeper", keeper->path);
        if (fd >= 0) {
            close(fd);
        }
        return;
    }
    keeper->listener = fd;
    proxy_wstunnel_keeper_listener = fd;
    proxy_wstunnel_keeper_path = keeper->path;
    apr_pool_cleanup_register(pconf, keeper, proxy_wstunnel_keeper_cleanup, apr_pool_cleanup_null);
    proxy_wstunnel_keeper_start(keeper);
}

/* A prefork child hands the raw tunnel `prepared` (on Apache's descriptors) to the keeper. 1: the keeper has it
 * (Apache closes the child's copies without a shutdown, as after a threaded handoff); 0: this process keeps it. */
static int proxy_wstunnel_send_to_keeper(request_rec *r, const proxy_wstunnel_raw *prepared)
{
    proxy_wstunnel_keeper_msg msg;
    struct sockaddr_un address;
    struct msghdr header;
    struct iovec part;
    union {
        struct cmsghdr align;
        char space[CMSG_SPACE(2 * sizeof(int))];
    } control;
    struct cmsghdr *cmsg;
    struct timeval patience;
    int conn, fds[2];
    ssize_t done;
    char answer = 0;

    if (proxy_wstunnel_keeper_path == NULL) {
        return 0;
    }
    memset(&address, 0, sizeof(address));
    address.sun_family = AF_UNIX;
    strcpy(address.sun_path, proxy_wstunnel_keeper_path); /* its length was checked when it was bound */
    conn = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (conn < 0) {
        return 0;
    }
    patience.tv_sec = PWS_KEEPER_PATIENCE_SEC;
    patience.tv_usec = 0;
    setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &patience, sizeof(patience));
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof(patience));
    if (connect(conn, (struct sockaddr *)&address, sizeof(address)) != 0) {
        /* EACCES: a directory above the socket is closed to the server's User */
        ap_log_rerror(APLOG_MARK, errno == EACCES ? APLOG_WARNING : APLOG_INFO, APR_FROM_OS_ERROR(errno), r,
                      PWS_LOGNO(0037) "tunnel keeper unreachable at %s: this process keeps the tunnel",
                      proxy_wstunnel_keeper_path);
        close(conn);
        return 0;
    }
    memset(&msg, 0, sizeof(msg));
    msg.magic = PWS_KEEPER_MAGIC;
    msg.size = sizeof(msg);
    msg.idle_timeout = prepared->idle_timeout;
    msg.fin_timeout = prepared->fin_timeout;
    msg.write_timeout = prepared->write_timeout;
    msg.fin_since = prepared->fin_since;
    msg.frames[0] = prepared->end[0].frames;
    msg.frames[1] = prepared->end[1].frames;
    fds[0] = prepared->end[0].fd;
    fds[1] = prepared->end[1].fd;
    memset(&header, 0, sizeof(header));
    memset(&control, 0, sizeof(control));
    part.iov_base = &msg;
    part.iov_len = sizeof(msg);
    header.msg_iov = &part;
    header.msg_iovlen = 1;
    header.msg_control = control.space;
    header.msg_controllen = sizeof(control.space);
    cmsg = CMSG_FIRSTHDR(&header);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(fds));
    memcpy(CMSG_DATA(cmsg), fds, sizeof(fds));
    do {
        done = sendmsg(conn, &header, MSG_NOSIGNAL);
    } while (done < 0 && errno == EINTR);
    if (done == (ssize_t)sizeof(msg)) {
        do {
            done = recv(conn, &answer, 1, 0);
        } while (done < 0 && errno == EINTR);
        if (done < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* A keeper that neither took nor refused it in time (stopped?) may still take it: never run one
             * tunnel in two processes. The child lets go; the keeper has it, or it ends. */
            close(conn);
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                          PWS_LOGNO(0038) "no answer from the tunnel keeper in %d s: the tunnel is left to it",
                          PWS_KEEPER_PATIENCE_SEC);
            return 1;
        }
    }
    close(conn);
    if (answer != 'K') { /* refused, or the keeper closed (or died) without taking it: its copies are gone */
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      PWS_LOGNO(0037) "the tunnel keeper did not take the tunnel: this process keeps it");
        return 0;
    }
    return 1;
}
#endif /* PWS_HANDOFF */

/* Only filters that do not need the tunnel's bytes: anything else (TLS, mod_dumpio, ...) keeps the filter path. */
static int proxy_wstunnel_is_plain(conn_rec *c)
{
    static const char *const plain[] = {"core_in", "core", "reqtimeout", "log_input_output", NULL};
    ap_filter_t *chains[2];
    int i, k;
    chains[0] = c->input_filters;
    chains[1] = c->output_filters;
    for (i = 0; i < 2; i++) {
        ap_filter_t *filter;
        for (filter = chains[i]; filter; filter = filter->next) {
            const char *name = filter->frec && filter->frec->name ? filter->frec->name : "";
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
    int read_done;   /* EOF seen: nothing more comes from this side */
    int pending;     /* the turn ended with bytes maybe still in the filters: read again without polling */
    int empty_reads; /* 2.2's core filter answers a non-blocking read at EOF with an empty brigade first */
    proxy_wstunnel_frames frames; /* the frames read from this side */
} proxy_wstunnel_side;

/* Move what is readable now from `from` to `to`, at most PWS_TURN_BYTES in one turn, then flush once.
 * APR_SUCCESS: this side may go on; APR_EOF: it finished sending; anything else: the tunnel is broken. */
static apr_status_t proxy_wstunnel_pump(proxy_wstunnel_side *from, proxy_wstunnel_side *to,
                                        apr_bucket_brigade *bb, apr_bucket_brigade *out, apr_pool_t *pool)
{
    apr_off_t moved = 0;
    apr_status_t rv = APR_SUCCESS;
    int eos = 0;

    from->pending = 0;
    while (moved < PWS_TURN_BYTES) {
        apr_bucket *bucket;
        apr_off_t length = 0;
        apr_brigade_cleanup(bb);
        rv = ap_get_brigade(from->c->input_filters, bb, AP_MODE_READBYTES, APR_NONBLOCK_READ, AP_IOBUFSIZE);
        if (APR_STATUS_IS_EAGAIN(rv)) {
            rv = APR_SUCCESS; /* nothing now (with TLS: a record is still arriving in pieces) */
            break;
        }
        if (rv != APR_SUCCESS) {
            break;
        }
        for (bucket = APR_BRIGADE_FIRST(bb); bucket != APR_BRIGADE_SENTINEL(bb); bucket = APR_BUCKET_NEXT(bucket)) {
            if (APR_BUCKET_IS_EOS(bucket)) {
                eos = 1;
            }
        }
        if (eos) {
            break;
        }
        apr_brigade_length(bb, 1, &length);
        if (length == 0) {
            /* 2.2: "nothing now" and "EOF" both read as an empty brigade, EOF only on a later call. The
             * socket was readable, so a few empty reads in a row mean the peer has gone. */
            if (++from->empty_reads >= PWS_EMPTY_READS_AS_EOF) {
                eos = 1;
            }
            break;
        }
        from->empty_reads = 0;
        moved += length;
        /* mod_ssl hands out transient buckets over a buffer it reuses on the next read: keep a copy. */
        for (bucket = APR_BRIGADE_FIRST(bb); bucket != APR_BRIGADE_SENTINEL(bb); bucket = APR_BUCKET_NEXT(bucket)) {
            const char *data;
            apr_size_t size;
            if (!APR_BUCKET_IS_METADATA(bucket) && apr_bucket_read(bucket, &data, &size, APR_BLOCK_READ) == APR_SUCCESS) {
                proxy_wstunnel_frames_feed(&from->frames, data, size); /* read already: in memory */
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
        from->pending = 1; /* the filters may hold more that poll() cannot see */
    }
    if (!APR_BRIGADE_EMPTY(out)) {
        apr_status_t sent;
        APR_BRIGADE_INSERT_TAIL(out, apr_bucket_flush_create(to->c->bucket_alloc));
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

static int proxy_wstunnel_tunnel(request_rec *r, proxy_conn_rec *backend, apr_interval_time_t idle_timeout,
                                 apr_interval_time_t fin_timeout, int handoff)
{
    conn_rec *client = r->connection;
    apr_socket_t *client_socket = ap_get_module_config(client->conn_config, &core_module);
    proxy_wstunnel_side sides[2];
    apr_pollset_t *pollset;
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, client->bucket_alloc);
    apr_bucket_brigade *out = apr_brigade_create(r->pool, client->bucket_alloc);
    apr_status_t rv = APR_SUCCESS;
    apr_time_t fin_since = 0; /* the first FIN or relayed close frame */
    int i, raw = 0, backend_finished, plain = proxy_wstunnel_is_plain(client) && proxy_wstunnel_is_plain(backend->connection);

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
        sides[i].pending = 1; /* bytes may already sit in the filters (sent right behind the handshake) */
        apr_pollset_add(pollset, &sides[i].pollfd);
    }
    /* Writes to the client now wait as long as any write of the server, whatever mod_reqtimeout set. */
    apr_socket_timeout_set(client_socket, r->server->timeout);

    while (rv == APR_SUCCESS && !(sides[0].read_done && sides[1].read_done)) {
        const apr_pollfd_t *signalled;
        /* Plain TCP both ways, and the filters hold nothing more (the first round drained what came in behind
         * the handshake): from here on the bytes go straight between the sockets. */
        if (plain && !sides[0].pending && !sides[1].pending && !sides[0].read_done && !sides[1].read_done) {
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
                ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                              PWS_LOGNO(0022) "one side finished %" APR_TIME_T_FMT " ms ago, the other did not: "
                                              "closing the tunnel (ProxyWebsocketFinTimeout)",
                              (apr_time_t)apr_time_as_msec(fin_timeout));
                rv = APR_EOF;
                break;
            }
            if (wait < 0 || left < wait) {
                wait = left;
                fin_nearer = 1;
            }
        }
        polled = apr_pollset_poll(pollset, any_pending ? 0 : wait, &count, &signalled);
        if (APR_STATUS_IS_EINTR(polled)) {
            continue;
        }
        if (APR_STATUS_IS_TIMEUP(polled) && !any_pending) {
            if (fin_nearer) {
                continue; /* the fin timeout is up: said and done at the top */
            }
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, PWS_LOGNO(0002) "idle timeout, closing the tunnel");
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
            ready[side == &sides[0] ? 0 : 1] = 1; /* a hang-up or error still reads first: last bytes, then EOF */
        }
        /* Each direction gets one bounded turn per round: a flood one way cannot starve the other. */
        for (i = 0; i < 2 && rv == APR_SUCCESS; i++) {
            proxy_wstunnel_side *from = &sides[i], *to = &sides[1 - i];
            apr_status_t pumped;
            if (from->read_done || !(ready[i] || from->pending)) {
                continue;
            }
            pumped = proxy_wstunnel_pump(from, to, bb, out, r->pool);
            if (APR_STATUS_IS_EOF(pumped)) {
                /* Half-close: pass the FIN on, keep the other direction open for what it still sends (for at
                 * most the fin timeout). */
                from->read_done = 1;
                from->pending = 0;
                apr_pollset_remove(pollset, &from->pollfd);
                apr_socket_shutdown(to->pollfd.desc.s, APR_SHUTDOWN_WRITE);
            }
            else if (pumped != APR_SUCCESS) {
                rv = pumped;
            }
            if (fin_since == 0 && (from->read_done || from->frames.closed)) {
                fin_since = apr_time_now(); /* a FIN, or a close frame relayed: the other side's answer is due */
            }
        }
        if (rv == APR_SUCCESS && sides[0].frames.closed && sides[1].frames.closed) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, PWS_LOGNO(0023) "close frames relayed both ways");
            break;
        }
    }
    backend_finished = sides[1].read_done;
    if (raw) {
        apr_os_sock_t client_fd, backend_fd;
        proxy_wstunnel_raw tunnel;
        apr_os_sock_get(&client_fd, client_socket);
        apr_os_sock_get(&backend_fd, backend->sock);
        proxy_wstunnel_raw_init(&tunnel, client_fd, backend_fd, idle_timeout, fin_timeout, r->server->timeout);
        tunnel.fin_since = fin_since; /* what the first rounds saw (a close frame right behind the handshake) */
        for (i = 0; i < 2; i++) {
            tunnel.end[i].frames = sides[i].frames;
        }
#if PWS_HANDOFF
        if (handoff && (proxy_wstunnel_threaded ? proxy_wstunnel_hand_off(r, &tunnel)
                                                : proxy_wstunnel_send_to_keeper(r, &tunnel))) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, PWS_LOGNO(0018) "tunnel handed to the event loop%s",
                          proxy_wstunnel_threaded ? "" : " of the tunnel keeper");
            /* Apache closes its own descriptors now, without a shutdown (aborted): the loop's copies go on. */
            backend->close = 1;
            client->keepalive = AP_CONN_CLOSE;
            client->aborted = 1;
            return OK;
        }
#else
        (void)handoff;
#endif
        rv = proxy_wstunnel_raw_run(&tunnel, apr_palloc(r->pool, PWS_RAW_BYTES));
        proxy_wstunnel_raw_free_pending(&tunnel);
        backend_finished = tunnel.end[1].read_done;
        if (APR_STATUS_IS_TIMEUP(rv)) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, PWS_LOGNO(0021) "idle timeout, closing the raw tunnel");
        }
        else if (APR_STATUS_IS_EOF(rv)) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                          PWS_LOGNO(0024) "one side finished %" APR_TIME_T_FMT " ms ago, the other did not: "
                                          "closing the raw tunnel (ProxyWebsocketFinTimeout)",
                          (apr_time_t)apr_time_as_msec(fin_timeout));
        }
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, r, PWS_LOGNO(0003) "tunnel finished");
    /* Close both ends now: the backend must not wait for a timeout to learn the client is gone. */
    if (rv != APR_SUCCESS && !backend_finished) {
        apr_os_sock_t backend_fd;
        apr_os_sock_get(&backend_fd, backend->sock);
        proxy_wstunnel_reset_on_close(backend_fd); /* no FIN first: it would only be read as one more EOF */
    }
    else {
        apr_socket_shutdown(backend->sock, APR_SHUTDOWN_READWRITE);
    }
    backend->close = 1;
    client->keepalive = AP_CONN_CLOSE;
    client->aborted = 1; /* nothing more may be written on this connection (no late HTTP headers) */
    return OK;
}

/* Read the backend's final answer head (skipping interim 1xx ones) into `headers` and `raw`, the bytes to
 * relay as is on a 101. Returns the status, or -1 when the answer is not valid HTTP. */
static int proxy_wstunnel_read_answer(request_rec *r, proxy_conn_rec *backend, apr_bucket_brigade *bb, char *line,
                                      apr_size_t line_size, apr_table_t *headers, const char **status_line,
                                      const char **raw)
{
    apr_size_t head_bytes = 0;
    int interim;
    for (interim = 0; interim <= PWS_MAX_INTERIM; interim++) {
        int status;
        apr_table_clear(headers);
        if (proxy_wstunnel_getline(backend->connection, bb, line, line_size) != APR_SUCCESS
            || strncmp(line, "HTTP/1.", 7) != 0 || strlen(line) < 12 || !apr_isdigit(line[9])
            || !apr_isdigit(line[10]) || !apr_isdigit(line[11])) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, PWS_LOGNO(0004) "no valid HTTP answer from the backend");
            return -1;
        }
        status = atoi(line + 9);
        *status_line = apr_pstrdup(r->pool, line + 9);
        *raw = apr_pstrcat(r->pool, line, "\r\n", NULL);
        for (;;) {
            char *colon;
            apr_size_t length;
            if (proxy_wstunnel_getline(backend->connection, bb, line, line_size) != APR_SUCCESS) {
                ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                              PWS_LOGNO(0005) "bad or oversized header line from the backend");
                return -1;
            }
            if (line[0] == '\0') {
                break;
            }
            length = strlen(line);
            head_bytes += length;
            colon = strchr(line, ':');
            if (head_bytes > PWS_MAX_HEAD_BYTES || !colon || colon == line) {
                ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, PWS_LOGNO(0006) "bad or oversized answer head");
                return -1;
            }
            *raw = apr_pstrcat(r->pool, *raw, line, "\r\n", NULL);
            *colon = '\0';
            do {
                colon++;
            } while (*colon == ' ' || *colon == '\t');
            apr_table_add(headers, line, colon);
        }
        if (status >= 200 || status == HTTP_SWITCHING_PROTOCOLS) {
            return status;
        }
        /* 100 Continue and other interim answers are not the backend's verdict on the upgrade. */
    }
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, PWS_LOGNO(0007) "too many interim answers from the backend");
    return -1;
}

/* Whether a plain tunnel can leave this process: to its event loop (threaded MPMs) or to the keeper (prefork). */
static int proxy_wstunnel_can_hand_off(void)
{
#if PWS_HANDOFF
    return proxy_wstunnel_threaded || proxy_wstunnel_keeper_path != NULL;
#else
    return 0;
#endif
}

static int proxy_wstunnel_handler(request_rec *r, proxy_worker *worker, proxy_server_conf *conf, char *url,
                                  const char *proxyname, apr_port_t proxyport)
{
    proxy_wstunnel_dir_conf *dconf = ap_get_module_config(r->per_dir_config, &proxy_wstunnel_module);
    const char *scheme = proxy_wstunnel_scheme(r, url);
    proxy_conn_rec *backend = NULL;
    apr_uri_t *uri;
    apr_bucket_brigade *bb;
    char server_port[32];
    apr_size_t line_size;
    char *line, *body;
    apr_size_t body_length;
    apr_table_t *response_headers;
    const char *status_line = NULL, *host_header, *raw_response = NULL, *key, *upgrade, *accept;
    apr_interval_time_t idle_timeout;
    int status, result, preserve_host;

    if (scheme == NULL) {
        return DECLINED;
    }
    if (!proxy_wstunnel_is_upgrade(r)) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, PWS_LOGNO(0008) "%s is not a WebSocket upgrade", r->uri);
        apr_table_setn(r->err_headers_out, "Upgrade", "websocket");
        apr_table_setn(r->err_headers_out, "Connection", "Upgrade");
        return HTTP_UPGRADE_REQUIRED;
    }
    body = proxy_wstunnel_read_body(r, &body_length, &result);
    if (body == NULL) {
        return result;
    }
    /* Like mod_proxy_http: answer lines as long as the server accepts request header lines, 8 KiB at least. */
    line_size = r->server->limit_req_fieldsize > HUGE_STRING_LEN ? (apr_size_t)r->server->limit_req_fieldsize + 2
                                                                  : HUGE_STRING_LEN;
    line = apr_palloc(r->pool, line_size);

    uri = apr_palloc(r->pool, sizeof(*uri));
    result = ap_proxy_acquire_connection(scheme, &backend, worker, r->server);
    if (result != OK) {
        return result;
    }
    backend->is_ssl = strcasecmp(scheme, "wss") == 0 || strcasecmp(scheme, "https") == 0;
    backend->close = 0;
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);

    result = ap_proxy_determine_connection(r->pool, r, conf, worker, backend, uri, &url, proxyname, proxyport,
                                           server_port, sizeof(server_port));
    if (result != OK) {
        goto done;
    }
    if (ap_proxy_connect_backend(scheme, backend, worker, r->server)) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, PWS_LOGNO(0009) "cannot connect to the backend for %s", url);
        result = HTTP_SERVICE_UNAVAILABLE;
        goto done;
    }
    if (!backend->connection) {
        result = ap_proxy_connection_create(scheme, backend, r->connection, r->server);
        if (result != OK) {
            goto done;
        }
    }

#if PWS_HTTPD_24
    {
        proxy_dir_conf *proxy_dconf = ap_get_module_config(r->per_dir_config, &proxy_module);
        preserve_host = proxy_dconf->preserve_host;
    }
#else
    preserve_host = conf->preserve_host;
#endif
    host_header = preserve_host && apr_table_get(r->headers_in, "Host")
                      ? apr_table_get(r->headers_in, "Host")
                      : apr_pstrcat(r->pool, ap_strchr_c(uri->hostname, ':') ? "[" : "", uri->hostname,
                                    ap_strchr_c(uri->hostname, ':') ? "]" : "", uri->port_str ? ":" : "",
                                    uri->port_str ? uri->port_str : "", NULL);

    if (proxy_wstunnel_send_request(r, backend, bb, url, host_header, body, body_length) != APR_SUCCESS) {
        result = HTTP_BAD_GATEWAY;
        goto done;
    }

    /* The backend's answer, status line and headers, before anything reaches the client. */
    response_headers = apr_table_make(r->pool, 16);
    status = proxy_wstunnel_read_answer(r, backend, bb, line, line_size, response_headers, &status_line,
                                        &raw_response);
    if (status < 0) {
        result = HTTP_BAD_GATEWAY;
        goto done;
    }
    if (status != HTTP_SWITCHING_PROTOCOLS) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, PWS_LOGNO(0010) "backend refused the upgrade (%d)", status);
        result = proxy_wstunnel_relay_plain_response(r, backend, bb, status, status_line, response_headers, line,
                                                     line_size);
        goto done;
    }

    /* A 101 must switch to what was asked for, and prove it read this client's key. */
    upgrade = apr_table_get(response_headers, "Upgrade");
    key = apr_table_get(r->headers_in, "Sec-WebSocket-Key");
    accept = apr_table_get(response_headers, "Sec-WebSocket-Accept");
    if (!upgrade || !proxy_wstunnel_has_token(upgrade, "websocket")) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, PWS_LOGNO(0011) "backend answered 101 without Upgrade: websocket");
        result = HTTP_BAD_GATEWAY;
        goto done;
    }
    if (key && (!accept || strcmp(accept, proxy_wstunnel_accept_for(r->pool, key)) != 0)) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, PWS_LOGNO(0012) "backend's Sec-WebSocket-Accept does not match");
        result = HTTP_BAD_GATEWAY;
        goto done;
    }

    /* 101: hand the backend's handshake answer to the client as is, then tunnel the bytes. */
    raw_response = apr_pstrcat(r->pool, raw_response, "\r\n", NULL);
    r->status = HTTP_SWITCHING_PROTOCOLS;
    r->status_line = apr_pstrdup(r->pool, status_line);
    apr_brigade_cleanup(bb);
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_pool_create(raw_response, strlen(raw_response), r->pool,
                                                       r->connection->bucket_alloc));
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(r->connection->bucket_alloc));
    if (ap_pass_brigade(r->connection->output_filters, bb) != APR_SUCCESS) {
        r->connection->aborted = 1;
        backend->close = 1;
        result = OK;
        goto done;
    }
    proxy_wstunnel_remove_reqtimeout(r->connection);

    idle_timeout = dconf->idle_timeout;
    if (idle_timeout < 0) {
        idle_timeout = PWS_WORKER_SHARED(worker)->timeout_set ? PWS_WORKER_SHARED(worker)->timeout
                       : conf->timeout_set                    ? conf->timeout
                                                              : r->server->timeout;
    }
    result = proxy_wstunnel_tunnel(r, backend, idle_timeout,
                                   dconf->fin_timeout >= 0 ? dconf->fin_timeout : PWS_DEFAULT_FIN_TIMEOUT,
                                   dconf->handoff == 1 && proxy_wstunnel_can_hand_off());

done:
    if (result != OK) {
        backend->close = 1;
    }
    ap_proxy_release_connection(scheme, backend, r->server);
    return result;
}

static int proxy_wstunnel_pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp)
{
    (void)pconf;
    (void)plog;
    (void)ptemp;
    proxy_wstunnel_handoff_configured = 0; /* the config is read again: only what it says now counts */
    return OK;
}

static int proxy_wstunnel_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s)
{
    int threaded = AP_MPMQ_NOT_SUPPORTED, *passes;
    void *data = NULL;
    (void)plog;
    (void)ptemp;
    /* Apache reads its config twice at startup; the first pass's process does not serve (as mod_cgid has it).
     * The count lives in the process pool: this module's statics start afresh with each generation (the DSO is
     * loaded again), and it numbers the keeper sockets. */
    apr_pool_userdata_get(&data, "proxy_wstunnel_passes", s->process->pool);
    passes = data;
    if (passes == NULL) {
        passes = apr_pcalloc(s->process->pool, sizeof(*passes));
        apr_pool_userdata_set(passes, "proxy_wstunnel_passes", apr_pool_cleanup_null, s->process->pool);
    }
    else {
        ++*passes;
    }
    if (!proxy_wstunnel_handoff_configured) {
        return OK;
    }
    ap_mpm_query(AP_MPMQ_IS_THREADED, &threaded);
    if (!PWS_HANDOFF) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     PWS_LOGNO(0019) "ProxyWebsocketHandoff is not available on this platform: tunnels stay with "
                                     "their workers");
        return OK;
    }
#if PWS_HANDOFF
    if (threaded == AP_MPMQ_NOT_SUPPORTED && *passes > 0) {
        /* A prefork child serves one connection at a time and is retired whenever MaxSpareServers says so: its
         * tunnels go to a keeper process instead. */
        proxy_wstunnel_keeper_setup(pconf, s, *passes);
    }
#else
    (void)pconf;
#endif
    return OK;
}

static void proxy_wstunnel_child_init(apr_pool_t *pchild, server_rec *s)
{
    int threaded = AP_MPMQ_NOT_SUPPORTED;
    (void)s;
    ap_mpm_query(AP_MPMQ_IS_THREADED, &threaded);
    proxy_wstunnel_threaded = threaded != AP_MPMQ_NOT_SUPPORTED;
#if PWS_HANDOFF
    if (proxy_wstunnel_keeper_listener >= 0) {
        close(proxy_wstunnel_keeper_listener); /* the keeper's: a child only connects to it */
        proxy_wstunnel_keeper_listener = -1;
    }
    if (proxy_wstunnel_handoff_configured && proxy_wstunnel_threaded) {
        /* Two descriptors per tunnel in the loop: take what the hard limit allows (at most 65536). */
        struct rlimit files;
        if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max && files.rlim_cur < 65536) {
            files.rlim_cur = files.rlim_max < 65536 ? files.rlim_max : 65536;
            setrlimit(RLIMIT_NOFILE, &files);
        }
        apr_pool_cleanup_register(pchild, NULL, proxy_wstunnel_loop_stop, apr_pool_cleanup_null);
    }
#else
    (void)pchild;
#endif
}

static void proxy_wstunnel_register_hooks(apr_pool_t *p)
{
    /* mod_proxy_http claims ws:// URLs from 2.4.47, and http:// ones always: a loaded apachews module must
     * see them first (it declines what it does not tunnel). */
    static const char *const before_http[] = {"mod_proxy_http.c", NULL};
    (void)p;
    proxy_hook_scheme_handler(proxy_wstunnel_handler, NULL, before_http, APR_HOOK_FIRST);
    proxy_hook_canon_handler(proxy_wstunnel_canon, NULL, before_http, APR_HOOK_FIRST);
    ap_hook_pre_config(proxy_wstunnel_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(proxy_wstunnel_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(proxy_wstunnel_child_init, NULL, NULL, APR_HOOK_MIDDLE);
}

static const command_rec proxy_wstunnel_commands[] = {
    AP_INIT_TAKE1("ProxyWebsocketIdleTimeout", proxy_wstunnel_set_idle_timeout, NULL, RSRC_CONF | ACCESS_CONF,
                  "How long a WebSocket tunnel may stay silent before it is closed (300, 500ms, 5mi; 0: no limit)"),
    AP_INIT_TAKE1("ProxyWebsocketFinTimeout", proxy_wstunnel_set_fin_timeout, NULL, RSRC_CONF | ACCESS_CONF,
                  "How long a WebSocket tunnel lives on after one side's FIN or close frame (default 5; 0: until "
                  "the idle limit)"),
    AP_INIT_FLAG("ProxyWebsocketUpgrade", proxy_wstunnel_set_upgrade, NULL, RSRC_CONF | ACCESS_CONF,
                 "On: tunnel WebSocket upgrades that arrive on http:// and https:// ProxyPass routes here"),
    AP_INIT_FLAG("ProxyWebsocketHandoff", proxy_wstunnel_set_handoff, NULL, RSRC_CONF | ACCESS_CONF,
                 "On: plain ws:// tunnels move to an event loop after the handshake and free their worker (the "
                 "child's own on worker and event, the tunnel keeper process's on prefork)"),
    {.name = NULL} /* the end of the table */
};

module AP_MODULE_DECLARE_DATA proxy_wstunnel_module = {
    STANDARD20_MODULE_STUFF,
    proxy_wstunnel_create_dir_conf, /* per-directory config creator */
    proxy_wstunnel_merge_dir_conf,  /* per-directory config merger */
    NULL,                           /* per-server config creator */
    NULL,                           /* per-server config merger */
    proxy_wstunnel_commands,        /* command table */
    proxy_wstunnel_register_hooks   /* hook registration */
#ifdef AP_MODULE_FLAG_NONE
    ,
    AP_MODULE_FLAG_NONE /* 2.4.x with module flags */
#endif
};
