/* Licensed to the Apache Software Foundation (ASF) under one or more
 * contributor license agreements. The ASF licenses this file to You under the
 * Apache License, Version 2.0 (the "License"); you may not use this file except
 * in compliance with the License. You may obtain a copy of the License at
 * http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
 * WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
 * License for the specific language governing permissions and limitations under
 * the License.
 */

/* mod_proxy_wstunnel: WebSocket (ws://, wss://) tunnelling for mod_proxy.
 *
 * The apachews backport, for Apache httpd 2.2.x and 2.4.x. One source for every
 * release: API differences are bridged with module magic number checks below.
 * It adds no symbol to mod_proxy: installing it is adding this one module.
 *
 * What it does differently from the 2013 backport people copy around:
 *  - the backend's answer is read and checked first: only a "101 Switching
 * Protocols" that upgrades to websocket (and, when the client sent a key, with
 * the right Sec-WebSocket-Accept) opens a tunnel; any other final answer is
 * streamed to the client as plain HTTP (no raw tunnel, CVE-2019-17567 class);
 *  - once the tunnel is open, mod_reqtimeout's filter is removed from the
 * client connection: the tunnel's own idle limit (ProxyWebsocketIdleTimeout,
 * else the worker's timeout, else ProxyTimeout/Timeout) is what ends a silent
 * session;
 *  - each direction ends on its own (half-close): EOF from one side is passed
 * on as a FIN to the other, whose answer still flows back for at most
 * ProxyWebsocketFinTimeout (default 5 s), then both sides are closed: a client
 * that vanished (a killed browser's FIN, no close frame) cannot hold a backend
 * that never closes, nor a worker, until the idle limit; a reset or error on
 * either side ends the tunnel at once;
 *  - WebSocket close frames are spotted (frame headers are followed, never
 * rewritten): once both directions' close frames are relayed the tunnel ends;
 * one relayed starts the same short grace as a FIN;
 *  - "ProxyWebsocketHandoff On" (Linux) gives a plain tunnel's worker back
 * after the handshake: the tunnel lives on in an epoll loop, the child's own on
 * worker and event, a tunnel keeper process's on prefork;
 *  - "ProxyWebsocketUpgrade On" lets a WebSocket upgrade arriving on an http://
 * or https:// ProxyPass be tunnelled (like 2.4.47's upgrade=websocket), for
 * servers whose mod_rewrite has no ws:// scheme;
 *  - Upgrade and Connection are parsed as token lists, case-insensitively.
 */

/* This file holds the module record (its name, mod_proxy_wstunnel.c, is what
 * <IfModule mod_proxy_wstunnel.c> tests), the per-directory config, the
 * directives and the hooks. The other parts: wstunnel.h. */

#include "wstunnel.h"
#include "ap_mpm.h"

int proxy_wstunnel_handoff_configured; /* some "ProxyWebsocketHandoff On" */
int proxy_wstunnel_threaded; /* this child's MPM runs threads (worker, event) */

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

static void *proxy_wstunnel_merge_dir_conf(apr_pool_t *p, void *basev,
                                           void *addv)
{
    proxy_wstunnel_dir_conf *base = basev, *add = addv;
    proxy_wstunnel_dir_conf *conf = apr_pcalloc(p, sizeof(*conf));
    conf->idle_timeout =
        add->idle_timeout >= 0 ? add->idle_timeout : base->idle_timeout;
    conf->fin_timeout =
        add->fin_timeout >= 0 ? add->fin_timeout : base->fin_timeout;
    conf->upgrade_http =
        add->upgrade_http >= 0 ? add->upgrade_http : base->upgrade_http;
    conf->handoff = add->handoff >= 0 ? add->handoff : base->handoff;
    return conf;
}

/* "30" (seconds), "500ms", "2mi", "1h": the syntax of httpd's timeout
 * parameters. */
static apr_status_t proxy_wstunnel_parse_timeout(const char *arg,
                                                 apr_interval_time_t *timeout)
{
#if AP_MODULE_MAGIC_AT_LEAST(20051115, 19)
    return ap_timeout_parameter_parse(arg, timeout, "s");
#else
    /* 2.2.0-2.2.10 lack ap_timeout_parameter_parse: the same units, parsed
     * here. */
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

static const char *
proxy_wstunnel_set_idle_timeout(cmd_parms *cmd, void *dirconf, const char *arg)
{
    proxy_wstunnel_dir_conf *conf = dirconf;
    apr_interval_time_t timeout;
    (void)cmd;
    if (proxy_wstunnel_parse_timeout(arg, &timeout) != APR_SUCCESS
        || timeout < 0) {
        return "ProxyWebsocketIdleTimeout takes a timeout such as 300, 500ms, "
               "5mi or 1h (0: no idle limit)";
    }
    conf->idle_timeout = timeout;
    return NULL;
}

static const char *proxy_wstunnel_set_fin_timeout(cmd_parms *cmd, void *dirconf,
                                                  const char *arg)
{
    proxy_wstunnel_dir_conf *conf = dirconf;
    apr_interval_time_t timeout;
    (void)cmd;
    if (proxy_wstunnel_parse_timeout(arg, &timeout) != APR_SUCCESS
        || timeout < 0) {
        return "ProxyWebsocketFinTimeout takes a timeout such as 5, 500ms or "
               "1mi (0: wait for the idle limit)";
    }
    conf->fin_timeout = timeout;
    return NULL;
}

static const char *proxy_wstunnel_set_upgrade(cmd_parms *cmd, void *dirconf,
                                              int on)
{
    proxy_wstunnel_dir_conf *conf = dirconf;
    (void)cmd;
    conf->upgrade_http = on ? 1 : 0;
    return NULL;
}

static const char *proxy_wstunnel_set_handoff(cmd_parms *cmd, void *dirconf,
                                              int on)
{
    proxy_wstunnel_dir_conf *conf = dirconf;
    (void)cmd;
    conf->handoff = on ? 1 : 0;
    if (on) {
        proxy_wstunnel_handoff_configured = 1;
    }
    return NULL;
}

static int proxy_wstunnel_pre_config(apr_pool_t *pconf, apr_pool_t *plog,
                                     apr_pool_t *ptemp)
{
    (void)pconf;
    (void)plog;
    (void)ptemp;
    proxy_wstunnel_handoff_configured =
        0; /* the config is read again: only what it says now counts */
    return OK;
}

static int proxy_wstunnel_post_config(apr_pool_t *pconf, apr_pool_t *plog,
                                      apr_pool_t *ptemp, server_rec *s)
{
    int threaded = AP_MPMQ_NOT_SUPPORTED, *passes;
    void *data = NULL;
    (void)plog;
    (void)ptemp;
    /* Apache reads its config twice at startup; the first pass's process does
     * not serve (as mod_cgid has it). The count lives in the process pool: this
     * module's statics start afresh with each generation (the DSO is loaded
     * again), and it numbers the keeper sockets. */
    apr_pool_userdata_get(&data, "proxy_wstunnel_passes", s->process->pool);
    passes = data;
    if (passes == NULL) {
        passes = apr_pcalloc(s->process->pool, sizeof(*passes));
        apr_pool_userdata_set(passes, "proxy_wstunnel_passes",
                              apr_pool_cleanup_null, s->process->pool);
    }
    else {
        ++*passes;
    }
    if (!proxy_wstunnel_handoff_configured) {
        return OK;
    }
    ap_mpm_query(AP_MPMQ_IS_THREADED, &threaded);
    if (!PWS_HANDOFF) {
        ap_log_error(
            APLOG_MARK, APLOG_WARNING, 0, s,
            PWS_LOGNO(0019) "ProxyWebsocketHandoff is not available on this "
                            "platform: tunnels stay with their workers");
        return OK;
    }
#if PWS_HANDOFF
    if (threaded == AP_MPMQ_NOT_SUPPORTED && *passes > 0) {
        /* A prefork child serves one connection at a time and is retired
         * whenever MaxSpareServers says so: its tunnels go to a keeper process
         * instead. */
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
    proxy_wstunnel_handoff_child_init(pchild);
#else
    (void)pchild;
#endif
}

static void proxy_wstunnel_register_hooks(apr_pool_t *p)
{
    /* mod_proxy_http claims ws:// URLs from 2.4.47, and http:// ones always: a
     * loaded apachews module must see them first (it declines what it does not
     * tunnel). */
    static const char *const before_http[] = {"mod_proxy_http.c", NULL};
    (void)p;
    proxy_hook_scheme_handler(proxy_wstunnel_handler, NULL, before_http,
                              APR_HOOK_FIRST);
    proxy_hook_canon_handler(proxy_wstunnel_canon, NULL, before_http,
                             APR_HOOK_FIRST);
    ap_hook_pre_config(proxy_wstunnel_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(proxy_wstunnel_post_config, NULL, NULL,
                        APR_HOOK_MIDDLE);
    ap_hook_child_init(proxy_wstunnel_child_init, NULL, NULL, APR_HOOK_MIDDLE);
}

static const command_rec proxy_wstunnel_commands[] = {
    AP_INIT_TAKE1("ProxyWebsocketIdleTimeout", proxy_wstunnel_set_idle_timeout,
                  NULL, RSRC_CONF | ACCESS_CONF,
                  "How long a WebSocket tunnel may stay silent before it is "
                  "closed (300, 500ms, 5mi; 0: no limit)"),
    AP_INIT_TAKE1("ProxyWebsocketFinTimeout", proxy_wstunnel_set_fin_timeout,
                  NULL, RSRC_CONF | ACCESS_CONF,
                  "How long a WebSocket tunnel lives on after one side's FIN "
                  "or close frame (default 5; 0: until the idle limit)"),
    AP_INIT_FLAG("ProxyWebsocketUpgrade", proxy_wstunnel_set_upgrade, NULL,
                 RSRC_CONF | ACCESS_CONF,
                 "On: tunnel WebSocket upgrades that arrive on http:// and "
                 "https:// ProxyPass routes here"),
    AP_INIT_FLAG("ProxyWebsocketHandoff", proxy_wstunnel_set_handoff, NULL,
                 RSRC_CONF | ACCESS_CONF,
                 "On: plain ws:// tunnels move to an event loop after the "
                 "handshake and free their worker (the child's own on worker "
                 "and event, the tunnel keeper process's on prefork)"),
    {.name = NULL} /* the end of the table */
};

module AP_MODULE_DECLARE_DATA proxy_wstunnel_module = {
    STANDARD20_MODULE_STUFF,
    proxy_wstunnel_create_dir_conf, /* per-directory config creator */
    proxy_wstunnel_merge_dir_conf, /* per-directory config merger */
    NULL, /* per-server config creator */
    NULL, /* per-server config merger */
    proxy_wstunnel_commands, /* command table */
    proxy_wstunnel_register_hooks /* hook registration */
#ifdef AP_MODULE_FLAG_NONE
    ,
    AP_MODULE_FLAG_NONE /* 2.4.x with module flags */
#endif
};
