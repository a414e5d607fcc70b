/* mod_proxy_wstunnel: WebSocket (ws://, wss://) tunnelling for mod_proxy.
 *
 * The apachews backport, for Apache httpd 2.2.x and 2.4.x, written for apachews and licensed under the
 * Apache License 2.0. One source for every release: API differences are bridged with module magic
 * number checks below. It adds no symbol to mod_proxy: installing it is adding this one module.
 *
 * What it does differently from the 2013 backport people copy around:
 *  - the backend's answer is read and checked first: only "101 Switching Protocols" opens a tunnel;
 *    any other answer is relayed to the client as plain HTTP (no raw tunnel, CVE-2019-17567 class);
 *  - a reset or close on either side ends the tunnel and closes the other side at once (no busy poll
 *    loop, the backend connection is shut down and released, never reused);
 *  - Upgrade and Connection are parsed as token lists, case-insensitively.
 */

#include "mod_proxy.h"
#include "http_log.h"
#include "http_request.h"
#include "apr_strings.h"
#include "apr_poll.h"

#if AP_MODULE_MAGIC_AT_LEAST(20120211, 0)
#define WS_HTTPD_24 1
#define WS_WORKER_SHARED(w) ((w)->s)
#define WS_CLIENT_IP(r) ((r)->useragent_ip)
#else
#define WS_HTTPD_24 0
#define WS_WORKER_SHARED(w) (w)
#define WS_CLIENT_IP(r) ((r)->connection->remote_ip)
#endif

#ifdef APLOG_USE_MODULE
APLOG_USE_MODULE(proxy_wstunnel); /* 2.4: log lines carry this module's name and LogLevel */
#else
module AP_MODULE_DECLARE_DATA proxy_wstunnel_module;
#endif

#define WS_MAX_HEADERS 100
#define WS_LINE_SIZE 8192

typedef struct {
    apr_interval_time_t idle_timeout; /* 0: not set, use the worker's or ProxyTimeout */
} ws_server_conf;

static void *ws_create_server_conf(apr_pool_t *p, server_rec *s)
{
    (void)s;
    return apr_pcalloc(p, sizeof(ws_server_conf));
}

static void *ws_merge_server_conf(apr_pool_t *p, void *basev, void *addv)
{
    ws_server_conf *base = basev, *add = addv;
    ws_server_conf *conf = apr_pcalloc(p, sizeof(ws_server_conf));
    conf->idle_timeout = add->idle_timeout ? add->idle_timeout : base->idle_timeout;
    return conf;
}

static const char *ws_set_idle_timeout(cmd_parms *cmd, void *dummy, const char *arg)
{
    ws_server_conf *conf = ap_get_module_config(cmd->server->module_config, &proxy_wstunnel_module);
    char *end;
    long seconds = strtol(arg, &end, 10);
    (void)dummy;
    if (*arg == '\0' || *end != '\0' || seconds < 1 || seconds > 86400 * 7) {
        return "ProxyWebsocketIdleTimeout takes a number of seconds from 1 to 604800";
    }
    conf->idle_timeout = apr_time_from_sec(seconds);
    return NULL;
}

static apr_port_t ws_default_port(const char *scheme)
{
    return strcasecmp(scheme, "wss") == 0 ? 443 : 80;
}

/* Is `token` one of the comma-separated tokens of `value` (case-insensitive)? */
static int ws_has_token(const char *value, const char *token)
{
    apr_size_t length = strlen(token);
    while (value && *value) {
        const char *end;
        while (*value == ' ' || *value == '\t' || *value == ',') {
            value++;
        }
        end = value;
        while (*end && *end != ',') {
            end++;
        }
        {
            const char *last = end;
            while (last > value && (last[-1] == ' ' || last[-1] == '\t')) {
                last--;
            }
            if ((apr_size_t)(last - value) == length && strncasecmp(value, token, length) == 0) {
                return 1;
            }
        }
        value = end;
    }
    return 0;
}

static int ws_scheme(const char *url, const char **scheme)
{
    if (strncasecmp(url, "ws:", 3) == 0) {
        *scheme = "ws";
        return 1;
    }
    if (strncasecmp(url, "wss:", 4) == 0) {
        *scheme = "wss";
        return 1;
    }
    return 0;
}

/* canon_handler: proxy:ws://host:port/path from ws://host[:port]/path */
static int ws_canon(request_rec *r, char *url)
{
    const char *scheme;
    char *host, *path, *err;
    const char *search = NULL, *sport = "";
    apr_port_t port, default_port;

    if (!ws_scheme(url, &scheme)) {
        return DECLINED;
    }
    url += strlen(scheme) + 1; /* past "ws:" or "wss:" */
    port = default_port = ws_default_port(scheme);
    err = ap_proxy_canon_netloc(r->pool, &url, NULL, NULL, &host, &port);
    if (err) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "wstunnel: error parsing URL %s: %s", url, err);
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

/* One CRLF-terminated line from `c`, without the line end; APR_ENOSPC when longer than `size`. */
static apr_status_t ws_getline(conn_rec *c, apr_bucket_brigade *bb, char *buffer, apr_size_t size)
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

static int ws_hop_by_hop(const char *name)
{
    return strcasecmp(name, "Connection") == 0 || strcasecmp(name, "Keep-Alive") == 0
        || strcasecmp(name, "TE") == 0 || strcasecmp(name, "Trailer") == 0
        || strcasecmp(name, "Transfer-Encoding") == 0 || strcasecmp(name, "Upgrade") == 0
        || strncasecmp(name, "Proxy-", 6) == 0;
}

static apr_status_t ws_send_request(request_rec *r, proxy_conn_rec *backend, apr_bucket_brigade *bb,
                                    const char *path, const char *host_header)
{
    const apr_array_header_t *headers = apr_table_elts(r->headers_in);
    const apr_table_entry_t *entry = (const apr_table_entry_t *)headers->elts;
    char *request = apr_pstrcat(r->pool, "GET ", path, " HTTP/1.1\r\nHost: ", host_header,
                                "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", NULL);
    const char *forwarded = apr_table_get(r->headers_in, "X-Forwarded-For");
    int i;

    for (i = 0; i < headers->nelts; i++) {
        if (entry[i].key == NULL || entry[i].val == NULL || strcasecmp(entry[i].key, "Host") == 0
            || strcasecmp(entry[i].key, "X-Forwarded-For") == 0 || ws_hop_by_hop(entry[i].key)) {
            continue;
        }
        request = apr_pstrcat(r->pool, request, entry[i].key, ": ", entry[i].val, "\r\n", NULL);
    }
    request = apr_pstrcat(r->pool, request, "X-Forwarded-For: ",
                          forwarded ? apr_pstrcat(r->pool, forwarded, ", ", NULL) : "",
                          WS_CLIENT_IP(r), "\r\n\r\n", NULL);
    apr_brigade_cleanup(bb);
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_pool_create(request, strlen(request), r->pool,
                                                       backend->connection->bucket_alloc));
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(backend->connection->bucket_alloc));
    return ap_pass_brigade(backend->connection->output_filters, bb);
}

/* Relay a non-101 answer to the client as an ordinary HTTP response: status, headers, body. */
static int ws_relay_plain_response(request_rec *r, proxy_conn_rec *backend, apr_bucket_brigade *bb,
                                   int status, const char *status_line, apr_table_t *headers)
{
    const char *length_header = apr_table_get(headers, "Content-Length");
    const char *encoding = apr_table_get(headers, "Transfer-Encoding");
    const char *type = apr_table_get(headers, "Content-Type");
    apr_bucket_brigade *out = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    apr_off_t remaining = -1; /* -1: until the backend closes */
    int chunked = encoding && ws_has_token(encoding, "chunked");
    char line[WS_LINE_SIZE];
    apr_status_t rv = APR_SUCCESS;

    r->status = status;
    r->status_line = apr_pstrdup(r->pool, status_line);
    {
        const apr_array_header_t *elts = apr_table_elts(headers);
        const apr_table_entry_t *entry = (const apr_table_entry_t *)elts->elts;
        int i;
        for (i = 0; i < elts->nelts; i++) {
            if (ws_hop_by_hop(entry[i].key) || strcasecmp(entry[i].key, "Content-Length") == 0
                || strcasecmp(entry[i].key, "Content-Type") == 0) {
                continue;
            }
            apr_table_add(r->headers_out, entry[i].key, entry[i].val);
        }
    }
    if (type) {
        ap_set_content_type(r, apr_pstrdup(r->pool, type));
    }
    if (length_header && !chunked) {
        remaining = (apr_off_t)apr_atoi64(length_header);
        if (remaining < 0) {
            return HTTP_BAD_GATEWAY;
        }
    }
    backend->close = 1; /* the upgrade was refused: this connection is not reused */

    for (;;) {
        apr_off_t want = remaining;
        if (chunked) {
            if (ws_getline(backend->connection, bb, line, sizeof(line)) != APR_SUCCESS) {
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
            apr_off_t read_size = (want < 0 || want > AP_IOBUFSIZE) ? AP_IOBUFSIZE : want;
            apr_off_t got = 0;
            apr_brigade_cleanup(bb);
            rv = ap_get_brigade(backend->connection->input_filters, bb, AP_MODE_READBYTES,
                                APR_BLOCK_READ, read_size);
            if (rv != APR_SUCCESS || APR_BRIGADE_EMPTY(bb)) {
                break;
            }
            apr_brigade_length(bb, 1, &got);
            if (got <= 0) {
                break;
            }
            {
                char *copy = apr_palloc(r->pool, (apr_size_t)got);
                apr_size_t copied = (apr_size_t)got;
                apr_brigade_flatten(bb, copy, &copied);
                APR_BRIGADE_INSERT_TAIL(out, apr_bucket_pool_create(copy, copied, r->pool,
                                                                    r->connection->bucket_alloc));
            }
            if (want > 0) {
                want -= got;
            }
        }
        if (!chunked) {
            break;
        }
        if (want != 0 || ws_getline(backend->connection, bb, line, sizeof(line)) != APR_SUCCESS) {
            break; /* a chunk cut short, or its CRLF missing */
        }
    }
    APR_BRIGADE_INSERT_TAIL(out, apr_bucket_eos_create(r->connection->bucket_alloc));
    ap_pass_brigade(r->output_filters, out);
    return OK;
}

/* Move whatever is readable now from `from` to `to`. APR_SUCCESS: bytes moved; APR_EAGAIN: none were
 * there; anything else: this side is done. (2.2's core input filter answers a non-blocking read that
 * finds nothing with an empty brigade, 2.4's with EAGAIN: both mean "nothing now".) */
static apr_status_t ws_pump(conn_rec *from, conn_rec *to, apr_bucket_brigade *bb)
{
    int moved = 0;
    for (;;) {
        apr_status_t rv;
        int eos = 0;
        apr_bucket *bucket;
        apr_brigade_cleanup(bb);
        rv = ap_get_brigade(from->input_filters, bb, AP_MODE_READBYTES, APR_NONBLOCK_READ, AP_IOBUFSIZE);
        if (APR_STATUS_IS_EAGAIN(rv) || (rv == APR_SUCCESS && APR_BRIGADE_EMPTY(bb))) {
            return moved ? APR_SUCCESS : APR_EAGAIN;
        }
        if (rv != APR_SUCCESS) {
            return rv;
        }
        for (bucket = APR_BRIGADE_FIRST(bb); bucket != APR_BRIGADE_SENTINEL(bb);
             bucket = APR_BUCKET_NEXT(bucket)) {
            if (APR_BUCKET_IS_EOS(bucket)) {
                eos = 1;
            }
        }
        if (eos) {
            return APR_EOF;
        }
        APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(to->bucket_alloc));
        rv = ap_pass_brigade(to->output_filters, bb);
        if (rv != APR_SUCCESS) {
            return rv;
        }
        moved = 1;
    }
}

static int ws_tunnel(request_rec *r, proxy_conn_rec *backend, apr_interval_time_t idle_timeout)
{
    conn_rec *client = r->connection;
    apr_socket_t *client_socket = ap_get_module_config(client->conn_config, &core_module);
    apr_pollset_t *pollset;
    apr_pollfd_t descriptor;
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, client->bucket_alloc);
    apr_status_t rv;
    int client_idle = 0, backend_idle = 0;

    if (apr_pollset_create(&pollset, 2, r->pool, 0) != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    memset(&descriptor, 0, sizeof(descriptor));
    descriptor.p = r->pool;
    descriptor.desc_type = APR_POLL_SOCKET;
    descriptor.reqevents = APR_POLLIN | APR_POLLHUP | APR_POLLERR;
    descriptor.desc.s = client_socket;
    descriptor.client_data = client;
    apr_pollset_add(pollset, &descriptor);
    descriptor.desc.s = backend->sock;
    descriptor.client_data = backend->connection;
    apr_pollset_add(pollset, &descriptor);

    /* Bytes may already sit in the filters (sent right behind the handshake): move them first. */
    rv = ws_pump(backend->connection, client, bb);
    if (rv == APR_SUCCESS || APR_STATUS_IS_EAGAIN(rv)) {
        rv = ws_pump(client, backend->connection, bb);
    }
    if (APR_STATUS_IS_EAGAIN(rv)) {
        rv = APR_SUCCESS;
    }
    while (rv == APR_SUCCESS) {
        const apr_pollfd_t *signalled;
        apr_int32_t count, i;
        apr_status_t polled = apr_pollset_poll(pollset, idle_timeout, &count, &signalled);
        if (APR_STATUS_IS_EINTR(polled)) {
            continue;
        }
        if (APR_STATUS_IS_TIMEUP(polled)) {
            ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "wstunnel: idle timeout, closing the tunnel");
            rv = APR_TIMEUP;
            break;
        }
        if (polled != APR_SUCCESS) {
            rv = polled;
            break;
        }
        for (i = 0; i < count && rv == APR_SUCCESS; i++) {
            conn_rec *from = signalled[i].client_data;
            conn_rec *to = from == client ? backend->connection : client;
            int *idle = from == client ? &client_idle : &backend_idle;
            if (signalled[i].rtnevents & (APR_POLLIN | APR_POLLHUP | APR_POLLERR)) {
                /* A hang-up or error still reads first: it yields the last bytes, then EOF. */
                rv = ws_pump(from, to, bb);
                if (APR_STATUS_IS_EAGAIN(rv)) {
                    /* Readable yet nothing to read: tolerated twice (2.2 reports EOF one call late),
                     * then taken as a dead peer, so the loop can never spin. */
                    rv = ++*idle > 2 ? APR_EOF : APR_SUCCESS;
                }
                else if (rv == APR_SUCCESS) {
                    *idle = 0;
                }
                if (rv == APR_SUCCESS && (signalled[i].rtnevents & (APR_POLLHUP | APR_POLLERR))) {
                    rv = APR_EOF;
                }
            }
            else if (signalled[i].rtnevents & APR_POLLNVAL) {
                rv = APR_EBADF;
            }
        }
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, rv, r, "wstunnel: tunnel finished");
    /* Close both ends now: the backend must not wait for a timeout to learn the client is gone. */
    apr_socket_shutdown(backend->sock, APR_SHUTDOWN_READWRITE);
    backend->close = 1;
    client->keepalive = AP_CONN_CLOSE;
    client->aborted = 1; /* nothing more may be written on this connection (no late HTTP headers) */
    return OK;
}

static int ws_handler(request_rec *r, proxy_worker *worker, proxy_server_conf *conf, char *url,
                      const char *proxyname, apr_port_t proxyport)
{
    ws_server_conf *ws_conf = ap_get_module_config(r->server->module_config, &proxy_wstunnel_module);
    const char *scheme, *upgrade, *connection;
    proxy_conn_rec *backend = NULL;
    apr_uri_t *uri;
    apr_bucket_brigade *bb;
    char server_port[32];
    char line[WS_LINE_SIZE];
    apr_table_t *response_headers;
    const char *status_line, *host_header, *raw_response;
    apr_interval_time_t idle_timeout;
    int status, result, header_count = 0, preserve_host;

    if (!ws_scheme(url, &scheme)) {
        return DECLINED;
    }
    upgrade = apr_table_get(r->headers_in, "Upgrade");
    connection = apr_table_get(r->headers_in, "Connection");
    if (!upgrade || !ws_has_token(upgrade, "websocket") || !connection || !ws_has_token(connection, "upgrade")) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "wstunnel: %s is not a WebSocket upgrade", r->uri);
        apr_table_setn(r->err_headers_out, "Upgrade", "websocket");
        apr_table_setn(r->err_headers_out, "Connection", "Upgrade");
        return HTTP_UPGRADE_REQUIRED;
    }

    uri = apr_palloc(r->pool, sizeof(*uri));
    result = ap_proxy_acquire_connection(scheme, &backend, worker, r->server);
    if (result != OK) {
        return result;
    }
    backend->is_ssl = strcasecmp(scheme, "wss") == 0;
    backend->close = 0;
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);

    result = ap_proxy_determine_connection(r->pool, r, conf, worker, backend, uri, &url, proxyname,
                                           proxyport, server_port, sizeof(server_port));
    if (result != OK) {
        goto done;
    }
    if (ap_proxy_connect_backend(scheme, backend, worker, r->server)) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "wstunnel: cannot connect to the backend for %s", url);
        result = HTTP_SERVICE_UNAVAILABLE;
        goto done;
    }
    if (!backend->connection) {
        result = ap_proxy_connection_create(scheme, backend, r->connection, r->server);
        if (result != OK) {
            goto done;
        }
    }

#if WS_HTTPD_24
    {
        proxy_dir_conf *dconf = ap_get_module_config(r->per_dir_config, &proxy_module);
        preserve_host = dconf->preserve_host;
    }
#else
    preserve_host = conf->preserve_host;
#endif
    host_header = preserve_host && apr_table_get(r->headers_in, "Host")
                      ? apr_table_get(r->headers_in, "Host")
                      : apr_pstrcat(r->pool, ap_strchr_c(uri->hostname, ':') ? "[" : "", uri->hostname,
                                    ap_strchr_c(uri->hostname, ':') ? "]" : "",
                                    uri->port_str ? ":" : "", uri->port_str ? uri->port_str : "", NULL);

    if (ws_send_request(r, backend, bb, url, host_header) != APR_SUCCESS) {
        result = HTTP_BAD_GATEWAY;
        goto done;
    }

    /* The backend's answer, status line and headers, before anything reaches the client. */
    if (ws_getline(backend->connection, bb, line, sizeof(line)) != APR_SUCCESS
        || strncmp(line, "HTTP/1.", 7) != 0 || strlen(line) < 12 || !apr_isdigit(line[9])) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "wstunnel: no valid HTTP answer from the backend");
        result = HTTP_BAD_GATEWAY;
        goto done;
    }
    status = atoi(line + 9);
    status_line = apr_pstrdup(r->pool, line + 9);
    raw_response = apr_pstrcat(r->pool, line, "\r\n", NULL);
    response_headers = apr_table_make(r->pool, 16);
    for (;;) {
        char *colon;
        if (ws_getline(backend->connection, bb, line, sizeof(line)) != APR_SUCCESS
            || ++header_count > WS_MAX_HEADERS) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "wstunnel: bad or oversized headers from the backend");
            result = HTTP_BAD_GATEWAY;
            goto done;
        }
        if (line[0] == '\0') {
            break;
        }
        colon = strchr(line, ':');
        if (!colon || colon == line) {
            result = HTTP_BAD_GATEWAY;
            goto done;
        }
        raw_response = apr_pstrcat(r->pool, raw_response, line, "\r\n", NULL);
        *colon = '\0';
        do {
            colon++;
        } while (*colon == ' ' || *colon == '\t');
        apr_table_add(response_headers, line, colon);
    }

    if (status != HTTP_SWITCHING_PROTOCOLS) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "wstunnel: backend refused the upgrade (%d)", status);
        result = ws_relay_plain_response(r, backend, bb, status, status_line, response_headers);
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

    idle_timeout = ws_conf->idle_timeout;
    if (!idle_timeout) {
        idle_timeout = WS_WORKER_SHARED(worker)->timeout_set ? WS_WORKER_SHARED(worker)->timeout
                       : conf->timeout_set                   ? conf->timeout
                                                             : r->server->timeout;
    }
    result = ws_tunnel(r, backend, idle_timeout);

done:
    if (result != OK) {
        backend->close = 1;
    }
    ap_proxy_release_connection(scheme, backend, r->server);
    return result;
}

static void ws_register_hooks(apr_pool_t *p)
{
    /* From 2.4.47 mod_proxy_http claims ws:// URLs too: a loaded apachews module must go first. */
    static const char *const before_http[] = {"mod_proxy_http.c", NULL};
    (void)p;
    proxy_hook_scheme_handler(ws_handler, NULL, before_http, APR_HOOK_FIRST);
    proxy_hook_canon_handler(ws_canon, NULL, before_http, APR_HOOK_FIRST);
}

static const command_rec ws_commands[] = {
    AP_INIT_TAKE1("ProxyWebsocketIdleTimeout", ws_set_idle_timeout, NULL, RSRC_CONF,
                  "Seconds a WebSocket tunnel may stay idle before it is closed"),
    {NULL}
};

module AP_MODULE_DECLARE_DATA proxy_wstunnel_module = {
    STANDARD20_MODULE_STUFF,
    NULL,                  /* per-directory config creator */
    NULL,                  /* per-directory config merger */
    ws_create_server_conf, /* per-server config creator */
    ws_merge_server_conf,  /* per-server config merger */
    ws_commands,           /* command table */
    ws_register_hooks      /* hook registration */
#ifdef AP_MODULE_FLAG_NONE
    ,
    AP_MODULE_FLAG_NONE /* 2.4.x with module flags */
#endif
};
