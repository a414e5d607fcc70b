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

/* wstunnel_handshake.c: the upgrade as the backend sees it (the request, with
 * its body if any), the backend's answer read and checked before anything
 * reaches the client, and a refused upgrade streamed back as plain HTTP. */

#include "wstunnel.h"
#include "apr_base64.h"
#include "apr_sha1.h"

#define PWS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11" /* RFC 6455, 1.3 */
/* a backend's whole answer head; lines count alone like mod_proxy_http */
#define PWS_MAX_HEAD_BYTES (256 * 1024)
#define PWS_MAX_INTERIM 16 /* 1xx answers skipped before the final one */
#define PWS_MAX_UPGRADE_BODY (64 * 1024) /* a body sent with an upgrade */
/* a refused upgrade's body is passed on in pieces of at most this */
#define PWS_RELAY_BYTES (64 * 1024)

/* Is `token` one of the comma-separated tokens of `value` (case-insensitive)?
 */
int proxy_wstunnel_has_token(const char *value, const char *token)
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
        if ((apr_size_t)(last - value) == length
            && strncasecmp(value, token, length) == 0) {
            return 1;
        }
        value = end;
    }
    return 0;
}

int proxy_wstunnel_is_upgrade(request_rec *r)
{
    const char *upgrade = apr_table_get(r->headers_in, "Upgrade");
    const char *connection = apr_table_get(r->headers_in, "Connection");
    return upgrade && proxy_wstunnel_has_token(upgrade, "websocket")
           && connection && proxy_wstunnel_has_token(connection, "upgrade");
}

/* One CRLF-terminated line from `c`, without the line end; APR_ENOSPC when
 * longer than `size` - 1. */
static apr_status_t proxy_wstunnel_getline(conn_rec *c, apr_bucket_brigade *bb,
                                           char *buffer, apr_size_t size)
{
    apr_size_t used = 0;
    for (;;) {
        apr_size_t chunk = size - 1 - used;
        apr_status_t rv;
        apr_brigade_cleanup(bb);
        rv = ap_get_brigade(c->input_filters, bb, AP_MODE_GETLINE,
                            APR_BLOCK_READ, 0);
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
    return strcasecmp(name, "Connection") == 0
           || strcasecmp(name, "Keep-Alive") == 0 || strcasecmp(name, "TE") == 0
           || strcasecmp(name, "Trailer") == 0
           || strcasecmp(name, "Transfer-Encoding") == 0
           || strcasecmp(name, "Upgrade") == 0
           || strncasecmp(name, "Proxy-", 6) == 0;
}

/* The request body, if the client sent one with its upgrade (read through
 * httpd's own HTTP_IN filter, so the bytes after it can never be taken for a
 * second request). NULL with *status set: refuse. */
char *proxy_wstunnel_read_body(request_rec *r, apr_size_t *length, int *status)
{
    apr_bucket_brigade *bb =
        apr_brigade_create(r->pool, r->connection->bucket_alloc);
    char *body = apr_palloc(r->pool, PWS_MAX_UPGRADE_BODY);
    *length = 0;
    *status = OK;
    for (;;) {
        apr_bucket *bucket;
        apr_status_t rv =
            ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES,
                           APR_BLOCK_READ, AP_IOBUFSIZE);
        int eos = 0;
        if (rv != APR_SUCCESS) {
            *status = HTTP_BAD_REQUEST;
            return NULL;
        }
        for (bucket = APR_BRIGADE_FIRST(bb); bucket != APR_BRIGADE_SENTINEL(bb);
             bucket = APR_BUCKET_NEXT(bucket)) {
            const char *data;
            apr_size_t size;
            if (APR_BUCKET_IS_EOS(bucket)) {
                eos = 1;
                break;
            }
            if (APR_BUCKET_IS_METADATA(bucket)) {
                continue;
            }
            if (apr_bucket_read(bucket, &data, &size, APR_BLOCK_READ)
                != APR_SUCCESS) {
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

apr_status_t
proxy_wstunnel_send_request(request_rec *r, proxy_conn_rec *backend,
                            apr_bucket_brigade *bb, const char *path,
                            const char *host_header, const char *body,
                            apr_size_t body_length)
{
    const apr_array_header_t *headers = apr_table_elts(r->headers_in);
    const apr_table_entry_t *entry = (const apr_table_entry_t *)headers->elts;
    const char *forwarded = apr_table_get(r->headers_in, "X-Forwarded-For");
    char *request = apr_pstrcat(
        r->pool, r->method, " ", path, " HTTP/1.1\r\nHost: ", host_header,
        "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", NULL);
    int i;

    for (i = 0; i < headers->nelts; i++) {
        if (entry[i].key == NULL || entry[i].val == NULL
            || strcasecmp(entry[i].key, "Host") == 0
            || strcasecmp(entry[i].key, "X-Forwarded-For") == 0
            || strcasecmp(entry[i].key, "Content-Length") == 0
            || proxy_wstunnel_hop_by_hop(entry[i].key)) {
            continue;
        }
        request = apr_pstrcat(r->pool, request, entry[i].key, ": ",
                              entry[i].val, "\r\n", NULL);
    }
    if (body_length > 0) {
        request =
            apr_psprintf(r->pool, "%sContent-Length: %" APR_SIZE_T_FMT "\r\n",
                         request, body_length);
    }
    request = apr_pstrcat(
        r->pool, request, "X-Forwarded-For: ",
        forwarded ? apr_pstrcat(r->pool, forwarded, ", ", NULL) : "",
        PWS_CLIENT_IP(r), "\r\n\r\n", NULL);
    apr_brigade_cleanup(bb);
    APR_BRIGADE_INSERT_TAIL(
        bb, apr_bucket_pool_create(request, strlen(request), r->pool,
                                   backend->connection->bucket_alloc));
    if (body_length > 0) {
        APR_BRIGADE_INSERT_TAIL(
            bb, apr_bucket_pool_create(body, body_length, r->pool,
                                       backend->connection->bucket_alloc));
    }
    APR_BRIGADE_INSERT_TAIL(
        bb, apr_bucket_flush_create(backend->connection->bucket_alloc));
    return ap_pass_brigade(backend->connection->output_filters, bb);
}

/* Stream a refused upgrade's answer to the client as an ordinary HTTP response:
 * status, headers, then the body chunk by chunk (never held whole: a backend
 * may send gigabytes, or never stop). */
int proxy_wstunnel_relay_plain_response(request_rec *r, proxy_conn_rec *backend,
                                        apr_bucket_brigade *bb, int status,
                                        const char *status_line,
                                        apr_table_t *headers, char *line,
                                        apr_size_t line_size)
{
    const char *length_header = apr_table_get(headers, "Content-Length");
    const char *encoding = apr_table_get(headers, "Transfer-Encoding");
    const char *type = apr_table_get(headers, "Content-Type");
    apr_bucket_brigade *out =
        apr_brigade_create(r->pool, r->connection->bucket_alloc);
    apr_off_t remaining = -1; /* -1: until the backend closes */
    int chunked = encoding && proxy_wstunnel_has_token(encoding, "chunked");
    char *buffer = apr_palloc(r->pool, PWS_RELAY_BYTES);
    const apr_array_header_t *elts = apr_table_elts(headers);
    const apr_table_entry_t *entry = (const apr_table_entry_t *)elts->elts;
    int i;

    r->status = status;
    r->status_line = apr_pstrdup(r->pool, status_line);
    for (i = 0; i < elts->nelts; i++) {
        if (proxy_wstunnel_hop_by_hop(entry[i].key)
            || strcasecmp(entry[i].key, "Content-Length") == 0
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
    backend->close =
        1; /* the upgrade was refused: this connection is not reused */

    for (;;) {
        apr_off_t want = remaining;
        if (chunked) {
            if (proxy_wstunnel_getline(backend->connection, bb, line, line_size)
                != APR_SUCCESS) {
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
            /* Fill up to PWS_RELAY_BYTES (what is there now, after one blocking
             * read), then pass it on at once: memory stays one buffer deep, and
             * big bodies do not cost one pass per 8 KiB. */
            apr_size_t filled = 0;
            apr_read_type_e block = APR_BLOCK_READ;
            int ended = 0;
            while (filled < PWS_RELAY_BYTES && want != 0) {
                apr_off_t room = (apr_off_t)(PWS_RELAY_BYTES - filled);
                apr_size_t got = (apr_size_t)room;
                apr_status_t rv;
                apr_brigade_cleanup(bb);
                rv = ap_get_brigade(backend->connection->input_filters, bb,
                                    AP_MODE_READBYTES, block,
                                    (want < 0 || want > room) ? room : want);
                if (block == APR_NONBLOCK_READ
                    && (APR_STATUS_IS_EAGAIN(rv)
                        || (rv == APR_SUCCESS && APR_BRIGADE_EMPTY(bb)))) {
                    break; /* nothing more right now: pass on what there is */
                }
                if (rv != APR_SUCCESS || APR_BRIGADE_EMPTY(bb)
                    || apr_brigade_flatten(bb, buffer + filled, &got)
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
                apr_brigade_write(
                    out, NULL, NULL, buffer,
                    filled); /* copied into the client's allocator */
                if (ap_pass_brigade(r->output_filters, out) != APR_SUCCESS
                    || r->connection->aborted) {
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
        if (want != 0
            || proxy_wstunnel_getline(backend->connection, bb, line, line_size)
                   != APR_SUCCESS) {
            break; /* a chunk cut short, or its CRLF missing */
        }
    }
    APR_BRIGADE_INSERT_TAIL(out,
                            apr_bucket_eos_create(r->connection->bucket_alloc));
    ap_pass_brigade(r->output_filters, out);
    return OK;
}

/* The Sec-WebSocket-Accept a backend must answer to `key` (RFC 6455, 4.2.2). */
const char *proxy_wstunnel_accept_for(apr_pool_t *p, const char *key)
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

/* mod_reqtimeout times the request body; a tunnel is no request body. Its
 * filter must go, or a session that stays silent longer than
 * "RequestReadTimeout body=..." dies the next time the client speaks. */
void proxy_wstunnel_remove_reqtimeout(conn_rec *c)
{
    ap_filter_t *filter = c->input_filters;
    while (filter) {
        ap_filter_t *next = filter->next;
        if (filter->frec && filter->frec->name
            && strcasecmp(filter->frec->name, "reqtimeout") == 0) {
            ap_remove_input_filter(filter);
        }
        filter = next;
    }
}

/* Read the backend's final answer head (skipping interim 1xx ones) into
 * `headers` and `raw`, the bytes to relay as is on a 101. Returns the status,
 * or -1 when the answer is not valid HTTP. */
int proxy_wstunnel_read_answer(request_rec *r, proxy_conn_rec *backend,
                               apr_bucket_brigade *bb, char *line,
                               apr_size_t line_size, apr_table_t *headers,
                               const char **status_line, const char **raw)
{
    apr_size_t head_bytes = 0;
    int interim;
    for (interim = 0; interim <= PWS_MAX_INTERIM; interim++) {
        int status;
        apr_table_clear(headers);
        if (proxy_wstunnel_getline(backend->connection, bb, line, line_size)
                != APR_SUCCESS
            || strncmp(line, "HTTP/1.", 7) != 0 || strlen(line) < 12
            || !apr_isdigit(line[9]) || !apr_isdigit(line[10])
            || !apr_isdigit(line[11])) {
            ap_log_rerror(
                APLOG_MARK, APLOG_ERR, 0, r,
                PWS_LOGNO(0004) "no valid HTTP answer from the backend");
            return -1;
        }
        status = atoi(line + 9);
        *status_line = apr_pstrdup(r->pool, line + 9);
        *raw = apr_pstrcat(r->pool, line, "\r\n", NULL);
        for (;;) {
            char *colon;
            apr_size_t length;
            if (proxy_wstunnel_getline(backend->connection, bb, line, line_size)
                != APR_SUCCESS) {
                ap_log_rerror(
                    APLOG_MARK, APLOG_ERR, 0, r,
                    PWS_LOGNO(
                        0005) "bad or oversized header line from the backend");
                return -1;
            }
            if (line[0] == '\0') {
                break;
            }
            length = strlen(line);
            head_bytes += length;
            colon = strchr(line, ':');
            if (head_bytes > PWS_MAX_HEAD_BYTES || !colon || colon == line) {
                ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                              PWS_LOGNO(0006) "bad or oversized answer head");
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
        /* 100 Continue and other interim answers are not the backend's verdict
         * on the upgrade. */
    }
    ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r,
                  PWS_LOGNO(0007) "too many interim answers from the backend");
    return -1;
}
