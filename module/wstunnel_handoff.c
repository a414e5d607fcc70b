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

/* wstunnel_handoff.c: "ProxyWebsocketHandoff On". A plain tunnel leaves its
 * worker after the handshake: on a threaded MPM for this child's event loop
 * (wstunnel_loop.c), under prefork for the tunnel keeper process. */

#include "wstunnel.h"
#include "ap_mpm.h"

#if PWS_HANDOFF
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
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

static pthread_mutex_t proxy_wstunnel_loop_lock = PTHREAD_MUTEX_INITIALIZER;
static proxy_wstunnel_loop *proxy_wstunnel_child_loop; /* once made */
static int proxy_wstunnel_loop_failed; /* do not try on every upgrade */

/* This child's loop, made on first use. NULL: none can be had (the error log
 * says why, once). */
static proxy_wstunnel_loop *proxy_wstunnel_loop_get(server_rec *s)
{
    proxy_wstunnel_loop *loop;

    pthread_mutex_lock(&proxy_wstunnel_loop_lock);
    loop = proxy_wstunnel_child_loop;
    if (loop || proxy_wstunnel_loop_failed) {
        pthread_mutex_unlock(&proxy_wstunnel_loop_lock);
        return loop;
    }
    loop = proxy_wstunnel_loop_start();
    if (loop == NULL) {
        proxy_wstunnel_loop_failed = 1;
        pthread_mutex_unlock(&proxy_wstunnel_loop_lock);
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), s,
                     PWS_LOGNO(0015) "cannot start the WebSocket event loop: "
                                     "tunnels stay with their workers");
        return NULL;
    }
    proxy_wstunnel_child_loop = loop;
    pthread_mutex_unlock(&proxy_wstunnel_loop_lock);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s,
                 PWS_LOGNO(0014) "event loop started: up to %" APR_SIZE_T_FMT
                                 " tunnels in this child",
                 loop->limit);
    return loop;
}

/* The child exits: let the loop finish the tunnels it holds (they end on
 * their own or idle out), then go. */
static apr_status_t proxy_wstunnel_loop_stop(void *data)
{
    proxy_wstunnel_loop *loop;
    (void)data;
    pthread_mutex_lock(&proxy_wstunnel_loop_lock);
    loop = proxy_wstunnel_child_loop;
    proxy_wstunnel_child_loop = NULL;
    pthread_mutex_unlock(&proxy_wstunnel_loop_lock);
    if (loop != NULL) {
        proxy_wstunnel_loop_finish(loop);
    }
    return APR_SUCCESS;
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

/* Give the raw tunnel `prepared` (the worker's, on Apache's descriptors) to
 * this child's event loop. The loop works on a copy with duplicates of the two
 * descriptors: Apache closes its own when the request ends (without a shutdown:
 * the connections are marked aborted), and the sockets live on in the loop. 1:
 * handed off; 0: the worker keeps the tunnel (no loop, loop full, no fds). */
int proxy_wstunnel_hand_off(request_rec *r, const proxy_wstunnel_raw *prepared)
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
    copy.end[1].fd =
        copy.end[0].fd >= 0 ? proxy_wstunnel_dup(prepared->end[1].fd) : -1;
    if (copy.end[1].fd < 0) {
        if (copy.end[0].fd >= 0) {
            close(copy.end[0].fd);
        }
        ap_log_rerror(APLOG_MARK, APLOG_INFO, APR_FROM_OS_ERROR(errno), r,
                      PWS_LOGNO(0017) "no descriptors for the event loop: this "
                                      "worker keeps the tunnel");
        return 0;
    }
    for (i = 0; i < 2; i++) {
        copy.end[i].pending = NULL; /* nothing is pending at a handoff: the
                                       filters were drained first */
    }
    adopted = proxy_wstunnel_loop_adopt(loop, &copy, &count);
    if (adopted > 0) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      PWS_LOGNO(0016) "event loop full (%" APR_SIZE_T_FMT
                                      " tunnels): this worker keeps the tunnel",
                      count);
    }
    return adopted == 0;
}

/* The tunnel keeper: "ProxyWebsocketHandoff On" under prefork, where a child
 * serves one connection at a time and is retired whenever MaxSpareServers says
 * so. The parent starts one keeper process per generation (after the config is
 * read, as mod_cgid starts its daemon; it restarts one that dies); the keeper
 * runs the same event loop as a threaded child. A child that has finished a
 * plain tunnel's handshake passes both descriptors to it over a Unix socket
 * (SCM_RIGHTS) with the tunnel's state (idle limit, fin timeout, frames seen),
 * waits for its "taken", and lets Apache close its own copies without a
 * shutdown, as the threaded handoff does. The socket sits in a directory only
 * the Apache user can enter (0700, checked at every start); the keeper takes
 * descriptors only from processes of its own user whose parent is its parent.
 * On a graceful restart the old keeper takes no more tunnels and exits when its
 * last one ends; a stop or hard restart ends them. */
#define PWS_KEEPER_MAGIC 0x41505753u /* "APWS" */
#define PWS_KEEPER_STARTUP_ERROR                                               \
    75 /* the keeper's exit code when it cannot start: not restarted */
#define PWS_KEEPER_PATIENCE_SEC                                                \
    10 /* how long a child waits for the keeper to take a tunnel */
#define PWS_KEEPER_FILES                                                       \
    65536 /* the open-files limit the keeper asks for (two per tunnel) */

typedef struct {
    apr_uint32_t magic;
    apr_uint32_t size; /* the child and the keeper are the same build: the
                          struct is sent as it is */
    apr_interval_time_t idle_timeout, fin_timeout, write_timeout;
    apr_time_t fin_since;
    proxy_wstunnel_frames frames[2];
} proxy_wstunnel_keeper_msg;

typedef struct {
    apr_proc_t proc;
    int alive; /* proc.pid is this generation's running keeper */
    int listener; /* the listening socket, made by the parent, inherited by each
                     keeper it starts */
    const char *path; /* where it is bound */
    apr_time_t started;
    apr_pool_t *pool;
    server_rec *s;
} proxy_wstunnel_keeper;

static const char
    *proxy_wstunnel_keeper_path; /* this generation's keeper socket (NULL:
                                    none): children use it */
static int proxy_wstunnel_keeper_listener =
    -1; /* closed in children, which only connect */
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
    end = strrchr(
        stat,
        ')'); /* "pid (name) state ppid ...": the name may hold anything */
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

/* One keeper message and room for its descriptors in `header`, as the child
 * sends it and the keeper receives it. */
static void proxy_wstunnel_keeper_header(struct msghdr *header,
                                         struct iovec *part,
                                         proxy_wstunnel_keeper_msg *msg,
                                         char *space, size_t space_len)
{
    memset(header, 0, sizeof(*header));
    memset(space, 0, space_len);
    part->iov_base = msg;
    part->iov_len = sizeof(*msg);
    header->msg_iov = part;
    header->msg_iovlen = 1;
    header->msg_control = space;
    header->msg_controllen = space_len;
}

/* Take one tunnel from a child on `conn`, and say whether it was taken ("K") or
 * not ("N"). */
static void proxy_wstunnel_keeper_take(proxy_wstunnel_loop *loop, int conn,
                                       server_rec *s, pid_t parent)
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
    if (getsockopt(conn, SOL_SOCKET, SO_PEERCRED, &peer, &size) != 0
        || peer.uid != geteuid()
        || proxy_wstunnel_parent_of(peer.pid) != parent) {
        ap_log_error(
            APLOG_MARK, APLOG_WARNING, 0, s,
            PWS_LOGNO(0028) "tunnel keeper: refused a connection from pid %ld "
                            "(uid %ld): not a child of this server",
            (long)peer.pid, (long)peer.uid);
        return;
    }
    patience.tv_sec = PWS_KEEPER_PATIENCE_SEC;
    patience.tv_usec = 0;
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof(patience));
    memset(&msg, 0, sizeof(msg));
    proxy_wstunnel_keeper_header(&header, &part, &msg, control.space,
                                 sizeof(control.space));
    do {
        got = recvmsg(conn, &header, MSG_CMSG_CLOEXEC);
    } while (got < 0 && errno == EINTR);
    for (cmsg = got > 0 ? CMSG_FIRSTHDR(&header) : NULL; cmsg;
         cmsg = CMSG_NXTHDR(&header, cmsg)) {
        if (cmsg->cmsg_level == SOL_SOCKET && cmsg->cmsg_type == SCM_RIGHTS) {
            int n = (int)((cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int));
            for (i = 0; i < n && count < 4; i++) {
                memcpy(&fds[count++], CMSG_DATA(cmsg) + i * sizeof(int),
                       sizeof(int));
            }
        }
    }
    if (got != (ssize_t)sizeof(msg)
        || (header.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || count != 2
        || msg.magic != PWS_KEEPER_MAGIC || msg.size != sizeof(msg)) {
        for (i = 0; i < count; i++) {
            close(fds[i]);
        }
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     PWS_LOGNO(0029) "tunnel keeper: a hand-over from pid %ld "
                                     "was not a tunnel",
                     (long)peer.pid);
    }
    else {
        proxy_wstunnel_raw_init(&tunnel, fds[0], fds[1], msg.idle_timeout,
                                msg.fin_timeout, msg.write_timeout);
        tunnel.fin_since = msg.fin_since;
        tunnel.end[0].frames = msg.frames[0];
        tunnel.end[1].frames = msg.frames[1];
        switch (proxy_wstunnel_loop_adopt(loop, &tunnel, &held)) {
        case 0:
            answer = 'K';
            break;
        case 1:
            ap_log_error(
                APLOG_MARK, APLOG_INFO, 0, s,
                PWS_LOGNO(0039) "tunnel keeper full (%" APR_SIZE_T_FMT
                                " tunnels): the child keeps the tunnel",
                held);
            break;
        default:
            break;
        }
    }
    if (send(conn, &answer, 1, MSG_NOSIGNAL) < 0) {
        /* the child gave up waiting: it runs the tunnel itself (ours, if taken,
         * ends with its own sockets) */
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

    /* The parent's handlers are not ours: a stop (SIGTERM) or hard restart
     * (SIGHUP), sent to the whole process group, ends the keeper and its
     * tunnels; SIGUSR1 (from the parent on a graceful restart) and SIGWINCH
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

    /* Two descriptors per tunnel: ask for PWS_KEEPER_FILES while still root,
     * else take the hard limit. */
    if (getrlimit(RLIMIT_NOFILE, &files) == 0
        && files.rlim_cur < PWS_KEEPER_FILES) {
        struct rlimit wanted = files;
        wanted.rlim_cur = PWS_KEEPER_FILES;
        if (wanted.rlim_max < PWS_KEEPER_FILES) {
            wanted.rlim_max = PWS_KEEPER_FILES;
        }
        if (setrlimit(RLIMIT_NOFILE, &wanted) != 0) {
            files.rlim_cur = files.rlim_max < PWS_KEEPER_FILES
                                 ? files.rlim_max
                                 : PWS_KEEPER_FILES;
            setrlimit(RLIMIT_NOFILE, &files);
        }
    }
    if (geteuid() == 0 && PWS_SETUP_CHILD() != 0) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     PWS_LOGNO(0030) "tunnel keeper: cannot become the "
                                     "server's User: it is not started again");
        _exit(PWS_KEEPER_STARTUP_ERROR);
    }
    loop = proxy_wstunnel_loop_get(s);
    if (loop == NULL) {
        _exit(PWS_KEEPER_STARTUP_ERROR);
    }
    ap_log_error(
        APLOG_MARK, APLOG_NOTICE, 0, s,
        PWS_LOGNO(0026) "tunnel keeper (pid %ld) takes up to %" APR_SIZE_T_FMT
                        " tunnels on %s",
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
                 PWS_LOGNO(0031) "tunnel keeper (pid %ld) takes no new "
                                 "tunnels; it exits when its %" APR_SIZE_T_FMT
                                 " end",
                 (long)getpid(), loop->count);
    proxy_wstunnel_loop_stop(NULL);
    _exit(0);
}

static void proxy_wstunnel_keeper_maintain(int reason, void *data,
                                           apr_wait_t status);

/* Fork this generation's keeper and have the parent watch it. */
static void proxy_wstunnel_keeper_start(proxy_wstunnel_keeper *keeper)
{
    apr_status_t rv = apr_proc_fork(&keeper->proc, keeper->pool);
    if (rv == APR_INCHILD) {
        proxy_wstunnel_keeper_main(keeper);
    }
    if (rv != APR_INPARENT) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, keeper->s,
                     PWS_LOGNO(0032) "cannot start the tunnel keeper: tunnels "
                                     "stay with their processes");
        return;
    }
    keeper->alive = 1;
    keeper->started = apr_time_now();
    apr_proc_other_child_register(&keeper->proc, proxy_wstunnel_keeper_maintain,
                                  keeper, NULL, keeper->pool);
}

/* The parent's watch over its keeper: one that died is started again (unless it
 * could not start at all, or the server is stopping); on a graceful restart
 * (the config pool cleared) the old one is told to retire. */
static void proxy_wstunnel_keeper_maintain(int reason, void *data,
                                           apr_wait_t status)
{
    proxy_wstunnel_keeper *keeper = data;
    int state = AP_MPMQ_STOPPING;
    switch (reason) {
    case APR_OC_REASON_DEATH:
    case APR_OC_REASON_LOST:
        keeper->alive = 0;
        apr_proc_other_child_unregister(keeper);
        if (ap_mpm_query(AP_MPMQ_MPM_STATE, &state) != APR_SUCCESS
            || state == AP_MPMQ_STOPPING) {
            break;
        }
        if (WIFEXITED(status)
            && WEXITSTATUS(status) == PWS_KEEPER_STARTUP_ERROR) {
            ap_log_error(APLOG_MARK, APLOG_CRIT, 0, keeper->s,
                         PWS_LOGNO(0033) "the tunnel keeper could not start: "
                                         "tunnels stay with their processes");
            break;
        }
        ap_log_error(
            APLOG_MARK, APLOG_ERR, 0, keeper->s,
            PWS_LOGNO(0027) "tunnel keeper (pid %ld) died (%s %d): its tunnels "
                            "are closed; starting a new one",
            (long)keeper->proc.pid,
            WIFSIGNALED(status) ? "signal" : "exit code",
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
    case APR_OC_REASON_UNREGISTER: /* the config pool is cleared: a restart, or
                                      the end */
        if (keeper->alive && getpid() == proxy_wstunnel_parent_pid) {
            keeper->alive = 0;
            kill(keeper->proc.pid, SIGUSR1);
        }
        break;
    default:
        break;
    }
}

/* The parent's listening socket and its path are removed with the generation's
 * config pool. */
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

/* The private directory the keeper's socket lives in: made 0700 for the Apache
 * user, or, when it is there, checked to be exactly that. NULL: unusable (the
 * error log says why). */
static const char *proxy_wstunnel_keeper_dir(apr_pool_t *p, server_rec *s,
                                             uid_t owner)
{
    /* Beside the pid file, where the server's User can reach (RHEL's run/ is
     * 0710 root:apache; its logs/ 0700) */
#if AP_MODULE_MAGIC_AT_LEAST(20120211, 2)
    const char *dir = ap_runtime_dir_relative(p, "apachews-keeper");
#else
    const char *pid_file = ap_server_root_relative(
        p, ap_pid_fname ? ap_pid_fname : "logs/httpd.pid");
    const char *slash = pid_file ? strrchr(pid_file, '/') : NULL;
    const char *dir =
        slash
            ? apr_pstrcat(
                  p, apr_pstrndup(p, pid_file, (apr_size_t)(slash - pid_file)),
                  "/apachews-keeper", NULL)
            : NULL;
#endif
    struct stat info;
    if (dir == NULL) {
        return NULL;
    }
    if (mkdir(dir, 0700) == 0 && chown(dir, owner, (gid_t)-1) != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), s,
                     PWS_LOGNO(0034) "cannot give %s to the server's User",
                     dir);
        return NULL;
    }
    if (lstat(dir, &info) != 0 || !S_ISDIR(info.st_mode) || info.st_uid != owner
        || (info.st_mode & 077) != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), s,
                     PWS_LOGNO(0035) "%s must be a directory of the server's "
                                     "User (uid %ld) with mode 0700: remove it "
                                     "and restart; no tunnel keeper until then",
                     dir, (long)owner);
        return NULL;
    }
    return dir;
}

/* Post-config in the parent, under prefork: make the socket and start this
 * generation's keeper. */
void proxy_wstunnel_keeper_setup(apr_pool_t *pconf, server_rec *s,
                                 int generation)
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
    keeper->path =
        apr_psprintf(pconf, "%s/%ld.%d.sock", dir, (long)getpid(), generation);
    memset(&address, 0, sizeof(address));
    address.sun_family = AF_UNIX;
    if (strlen(keeper->path) >= sizeof(address.sun_path)) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     PWS_LOGNO(0036) "tunnel keeper socket path too long: %s; "
                                     "no tunnel keeper",
                     keeper->path);
        return;
    }
    strcpy(address.sun_path, keeper->path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    unlink(keeper->path);
    if (fd < 0 || bind(fd, (struct sockaddr *)&address, sizeof(address)) != 0
        || chown(keeper->path, owner, (gid_t)-1) != 0
        || chmod(keeper->path, 0600) != 0 || listen(fd, 511) != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, APR_FROM_OS_ERROR(errno), s,
                     PWS_LOGNO(0040) "cannot listen on %s; no tunnel keeper",
                     keeper->path);
        if (fd >= 0) {
            close(fd);
        }
        return;
    }
    keeper->listener = fd;
    proxy_wstunnel_keeper_listener = fd;
    proxy_wstunnel_keeper_path = keeper->path;
    apr_pool_cleanup_register(pconf, keeper, proxy_wstunnel_keeper_cleanup,
                              apr_pool_cleanup_null);
    proxy_wstunnel_keeper_start(keeper);
}

/* A prefork child hands the raw tunnel `prepared` (on Apache's descriptors) to
 * the keeper. 1: the keeper has it (Apache closes the child's copies without a
 * shutdown, as after a threaded handoff); 0: this process keeps it. */
int proxy_wstunnel_send_to_keeper(request_rec *r,
                                  const proxy_wstunnel_raw *prepared)
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
    strcpy(address.sun_path,
           proxy_wstunnel_keeper_path); /* its length was checked when it was
                                           bound */
    conn = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (conn < 0) {
        return 0;
    }
    patience.tv_sec = PWS_KEEPER_PATIENCE_SEC;
    patience.tv_usec = 0;
    setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &patience, sizeof(patience));
    setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof(patience));
    if (connect(conn, (struct sockaddr *)&address, sizeof(address)) != 0) {
        /* EACCES: a directory above the socket is closed to the server's User
         */
        ap_log_rerror(APLOG_MARK, errno == EACCES ? APLOG_WARNING : APLOG_INFO,
                      APR_FROM_OS_ERROR(errno), r,
                      PWS_LOGNO(0037) "tunnel keeper unreachable at %s: this "
                                      "process keeps the tunnel",
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
    proxy_wstunnel_keeper_header(&header, &part, &msg, control.space,
                                 sizeof(control.space));
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
            /* A keeper that neither took nor refused it in time (stopped?) may
             * still take it: never run one tunnel in two processes. The child
             * lets go; the keeper has it, or it ends. */
            close(conn);
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                          PWS_LOGNO(0038) "no answer from the tunnel keeper in "
                                          "%d s: the tunnel is left to it",
                          PWS_KEEPER_PATIENCE_SEC);
            return 1;
        }
    }
    close(conn);
    if (answer != 'K') { /* refused, or the keeper closed (or died) without
                            taking it: its copies are gone */
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      PWS_LOGNO(0041) "the tunnel keeper did not take the "
                                      "tunnel: this process keeps it");
        return 0;
    }
    return 1;
}
/* child_init: a child only connects to the keeper; a threaded child with
 * handoff configured gets room for its loop's descriptors, and waits for the
 * loop's tunnels when it exits. */
void proxy_wstunnel_handoff_child_init(apr_pool_t *pchild)
{
    struct rlimit files;
    if (proxy_wstunnel_keeper_listener >= 0) {
        close(proxy_wstunnel_keeper_listener); /* the keeper's */
        proxy_wstunnel_keeper_listener = -1;
    }
    if (!proxy_wstunnel_handoff_configured || !proxy_wstunnel_threaded) {
        return;
    }
    /* Two descriptors per tunnel in the loop: take what the hard limit
     * allows (at most 65536). */
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max
        && files.rlim_cur < 65536) {
        files.rlim_cur = files.rlim_max < 65536 ? files.rlim_max : 65536;
        setrlimit(RLIMIT_NOFILE, &files);
    }
    apr_pool_cleanup_register(pchild, NULL, proxy_wstunnel_loop_stop,
                              apr_pool_cleanup_null);
}
#endif /* PWS_HANDOFF */

/* Whether a plain tunnel can leave this process: to its event loop (threaded
 * MPMs) or to the keeper (prefork). */
int proxy_wstunnel_can_hand_off(void)
{
#if PWS_HANDOFF
    return proxy_wstunnel_threaded || proxy_wstunnel_keeper_path != NULL;
#else
    return 0;
#endif
}
