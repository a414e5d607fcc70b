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

/* wstunnel_handler.c: mod_proxy's hooks for ws://, wss:// (and, with
 * ProxyWebsocketUpgrade On, http:// and https:// upgrades): the canon handler
 * and the scheme handler that takes an upgrade from request to tunnel. */

#include "wstunnel.h"

static apr_port_t proxy_wstunnel_default_port(const char *scheme)
{
    return strcasecmp(scheme, "wss") == 0 || strcasecmp(scheme, "https") == 0
               ? 443
               : 80;
}

/* The scheme this module tunnels for `url`: ws/wss always, http/https where
 * ProxyWebsocketUpgrade is on and the request is an upgrade (plain HTTP on such
 * a route stays with mod_proxy_http). NULL: decline. */
static const char *proxy_wstunnel_scheme(request_rec *r, const char *url)
{
    proxy_wstunnel_dir_conf *dconf =
        ap_get_module_config(r->per_dir_config, &proxy_wstunnel_module);
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

/* canon_handler: proxy:ws://host:port/path from ws://host[:port]/path (http
 * routes: mod_proxy_http's). */
int proxy_wstunnel_canon(request_rec *r, char *url)
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
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      PWS_LOGNO(0001) "error parsing URL %s: %s", url, err);
        return HTTP_BAD_REQUEST;
    }
    if (apr_table_get(r->notes, "proxy-nocanon")) {
        path = url;
    }
    else {
        path = ap_proxy_canonenc(r->pool, url, (int)strlen(url), enc_path, 0,
                                 r->proxyreq);
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
    r->filename =
        apr_pstrcat(r->pool, "proxy:", scheme, "://", host, sport, "/", path,
                    search ? "?" : "", search ? search : "", NULL);
    return OK;
}

int proxy_wstunnel_handler(request_rec *r, proxy_worker *worker,
                           proxy_server_conf *conf, char *url,
                           const char *proxyname, apr_port_t proxyport)
{
    proxy_wstunnel_dir_conf *dconf =
        ap_get_module_config(r->per_dir_config, &proxy_wstunnel_module);
    const char *scheme = proxy_wstunnel_scheme(r, url);
    proxy_conn_rec *backend = NULL;
    apr_uri_t *uri;
    apr_bucket_brigade *bb;
    char server_port[32];
    apr_size_t line_size;
    char *line, *body;
    apr_size_t body_length;
    apr_table_t *response_headers;
    const char *status_line = NULL, *host_header, *raw_response = NULL, *key,
               *upgrade, *accept;
    apr_interval_time_t idle_timeout;
    int status, result, preserve_host;

    if (scheme == NULL) {
        return DECLINED;
    }
    if (!proxy_wstunnel_is_upgrade(r)) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      PWS_LOGNO(0008) "%s is not a WebSocket upgrade", r->uri);
        apr_table_setn(r->err_headers_out, "Upgrade", "websocket");
        apr_table_setn(r->err_headers_out, "Connection", "Upgrade");
        return HTTP_UPGRADE_REQUIRED;
    }
    body = proxy_wstunnel_read_body(r, &body_length, &result);
    if (body == NULL) {
        return result;
    }
    /* Like mod_proxy_http: answer lines as long as the server accepts request
     * header lines, 8 KiB at least. */
    line_size = r->server->limit_req_fieldsize > HUGE_STRING_LEN
                    ? (apr_size_t)r->server->limit_req_fieldsize + 2
                    : HUGE_STRING_LEN;
    line = apr_palloc(r->pool, line_size);

    uri = apr_palloc(r->pool, sizeof(*uri));
    result = ap_proxy_acquire_connection(scheme, &backend, worker, r->server);
    if (result != OK) {
        return result;
    }
    backend->is_ssl =
        strcasecmp(scheme, "wss") == 0 || strcasecmp(scheme, "https") == 0;
    backend->close = 0;
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);

    result = ap_proxy_determine_connection(r->pool, r, conf, worker, backend,
                                           uri, &url, proxyname, proxyport,
                                           server_port, sizeof(server_port));
    if (result != OK) {
        goto done;
    }
    if (ap_proxy_connect_backend(scheme, backend, worker, r->server)) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                      PWS_LOGNO(0009) "cannot connect to the backend for %s",
                      url);
        result = HTTP_SERVICE_UNAVAILABLE;
        goto done;
    }
    if (!backend->connection) {
        result = ap_proxy_connection_create(scheme, backend, r->connection,
                                            r->server);
        if (result != OK) {
            goto done;
        }
    }

#if PWS_HTTPD_24
    {
        proxy_dir_conf *proxy_dconf =
            ap_get_module_config(r->per_dir_config, &proxy_module);
        preserve_host = proxy_dconf->preserve_host;
    }
#else
    preserve_host = conf->preserve_host;
#endif
    host_header =
        preserve_host && apr_table_get(r->headers_in, "Host")
            ? apr_table_get(r->headers_in, "Host")
            : apr_pstrcat(r->pool, ap_strchr_c(uri->hostname, ':') ? "[" : "",
                          uri->hostname,
                          ap_strchr_c(uri->hostname, ':') ? "]" : "",
                          uri->port_str ? ":" : "",
                          uri->port_str ? uri->port_str : "", NULL);

    if (proxy_wstunnel_send_request(r, backend, bb, url, host_header, body,
                                    body_length)
        != APR_SUCCESS) {
        result = HTTP_BAD_GATEWAY;
        goto done;
    }

    /* The backend's answer, status line and headers, before anything reaches
     * the client. */
    response_headers = apr_table_make(r->pool, 16);
    status = proxy_wstunnel_read_answer(r, backend, bb, line, line_size,
                                        response_headers, &status_line,
                                        &raw_response);
    if (status < 0) {
        result = HTTP_BAD_GATEWAY;
        goto done;
    }
    if (status != HTTP_SWITCHING_PROTOCOLS) {
        ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                      PWS_LOGNO(0010) "backend refused the upgrade (%d)",
                      status);
        result = proxy_wstunnel_relay_plain_response(
            r, backend, bb, status, status_line, response_headers, line,
            line_size);
        goto done;
    }

    /* A 101 must switch to what was asked for, and prove it read this client's
     * key. */
    upgrade = apr_table_get(response_headers, "Upgrade");
    key = apr_table_get(r->headers_in, "Sec-WebSocket-Key");
    accept = apr_table_get(response_headers, "Sec-WebSocket-Accept");
    if (!upgrade || !proxy_wstunnel_has_token(upgrade, "websocket")) {
        ap_log_rerror(
            APLOG_MARK, APLOG_ERR, 0, r,
            PWS_LOGNO(0011) "backend answered 101 without Upgrade: websocket");
        result = HTTP_BAD_GATEWAY;
        goto done;
    }
    if (key
        && (!accept
            || strcmp(accept, proxy_wstunnel_accept_for(r->pool, key)) != 0)) {
        ap_log_rerror(
            APLOG_MARK, APLOG_ERR, 0, r,
            PWS_LOGNO(0012) "backend's Sec-WebSocket-Accept does not match");
        result = HTTP_BAD_GATEWAY;
        goto done;
    }

    /* 101: hand the backend's handshake answer to the client as is, then tunnel
     * the bytes. */
    raw_response = apr_pstrcat(r->pool, raw_response, "\r\n", NULL);
    r->status = HTTP_SWITCHING_PROTOCOLS;
    r->status_line = apr_pstrdup(r->pool, status_line);
    apr_brigade_cleanup(bb);
    APR_BRIGADE_INSERT_TAIL(
        bb, apr_bucket_pool_create(raw_response, strlen(raw_response), r->pool,
                                   r->connection->bucket_alloc));
    APR_BRIGADE_INSERT_TAIL(
        bb, apr_bucket_flush_create(r->connection->bucket_alloc));
    if (ap_pass_brigade(r->connection->output_filters, bb) != APR_SUCCESS) {
        r->connection->aborted = 1;
        backend->close = 1;
        result = OK;
        goto done;
    }
    proxy_wstunnel_remove_reqtimeout(r->connection);

    idle_timeout = dconf->idle_timeout;
    if (idle_timeout < 0) {
        idle_timeout = PWS_WORKER_SHARED(worker)->timeout_set
                           ? PWS_WORKER_SHARED(worker)->timeout
                       : conf->timeout_set ? conf->timeout
                                           : r->server->timeout;
    }
    result = proxy_wstunnel_tunnel(
        r, backend, idle_timeout,
        dconf->fin_timeout >= 0 ? dconf->fin_timeout : PWS_DEFAULT_FIN_TIMEOUT,
        dconf->handoff == 1 && proxy_wstunnel_can_hand_off());

done:
    if (result != OK) {
        backend->close = 1;
    }
    ap_proxy_release_connection(scheme, backend, r->server);
    return result;
}
