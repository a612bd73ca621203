/*
 * metrics_http.c - /metrics over HTTP (ratchet_metrics_listen), served by
 * GNU libmicrohttpd: no HTTP parsing of our own.
 *
 * We open, bind and listen on the socket ourselves and hand it to the
 * daemon (MHD_OPTION_LISTEN_SOCKET): that way a failure to bind reports its
 * own errno (EADDRINUSE, EACCES) instead of libmicrohttpd's bare NULL, and
 * the port that 0 chose is read with getsockname. The daemon runs one
 * internal polling thread (MHD_USE_INTERNAL_POLLING_THREAD) that accepts,
 * parses and answers; each GET /metrics renders afresh on that thread
 * (ratchet_metrics_render is safe from any thread) and hands the text to
 * the response, which frees it once sent. Connections are limited and time
 * out, so a stuck scraper cannot pile up sockets.
 */
#define _GNU_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics_internal.h"
#include "ratchet/alloc.h"

#define CONNECTION_LIMIT   32
#define CONNECTION_TIMEOUT 30 /* seconds */

static const char not_found[] = "Not found: the metrics are at /metrics\n";
static const char not_allowed[] = "Method not allowed: use GET or HEAD\n";

/* Parses "0".."65535" (digits only). */
static int parse_port(const char *s, uint16_t *port) {
  unsigned long v = 0;
  if (*s == '\0' || strlen(s) > 5)
    return -EINVAL;
  for (const char *p = s; *p != '\0'; p++) {
    if (*p < '0' || *p > '9')
      return -EINVAL;
    v = v * 10 + (unsigned long)(*p - '0');
  }
  if (v > 65535)
    return -EINVAL;
  *port = (uint16_t)v;
  return 0;
}

int ratchet_metrics_parse_listen(const char *s, char *host, size_t host_size,
                                 uint16_t *port) {
  if (s == NULL || host == NULL || port == NULL ||
      host_size < RATCHET_METRICS_HOST_MAX)
    return -EINVAL;
  const char *colon = strrchr(s, ':');
  const char *p = colon != NULL ? colon + 1 : s;
  if (parse_port(p, port) != 0)
    return -EINVAL;
  size_t hlen = colon != NULL ? (size_t)(colon - s) : 0;
  char h[RATCHET_METRICS_HOST_MAX];
  if (hlen == 0 || (hlen == 9 && strncmp(s, "localhost", 9) == 0)) {
    snprintf(host, host_size, "127.0.0.1");
    return 0;
  }
  unsigned char addr[sizeof(struct in6_addr)];
  if (s[0] == '[') {
    if (hlen < 3 || s[hlen - 1] != ']' || hlen - 2 >= sizeof h)
      return -EINVAL;
    memcpy(h, s + 1, hlen - 2);
    h[hlen - 2] = '\0';
    if (inet_pton(AF_INET6, h, addr) != 1)
      return -EINVAL;
  } else {
    if (hlen >= sizeof h)
      return -EINVAL;
    memcpy(h, s, hlen);
    h[hlen] = '\0';
    if (inet_pton(AF_INET, h, addr) != 1)
      return -EINVAL;
  }
  snprintf(host, host_size, "%s", h);
  return 0;
}

/* A response from a static text. */
static enum MHD_Result answer_static(struct MHD_Connection *c, unsigned status,
                                     const char *text) {
  struct MHD_Response *r = MHD_create_response_from_buffer(
      strlen(text), (void *)(uintptr_t)text, MHD_RESPMEM_PERSISTENT);
  if (r == NULL)
    return MHD_NO;
  (void)MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                "text/plain; charset=utf-8");
  if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
    (void)MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
  enum MHD_Result ret = MHD_queue_response(c, status, r);
  MHD_destroy_response(r);
  return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls) {
  ratchet_metrics *m = cls;
  (void)version;
  (void)upload_data;
  (void)upload_data_size;
  (void)req_cls;
  if (strcmp(url, "/metrics") != 0)
    return answer_static(c, MHD_HTTP_NOT_FOUND, not_found);
  if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
      strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
    return answer_static(c, MHD_HTTP_METHOD_NOT_ALLOWED, not_allowed);
  char *text;
  size_t len;
  if (ratchet_metrics_render(m, &text, &len) != 0)
    return answer_static(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                         "Out of memory rendering the metrics\n");
  /* The response owns text from here (freed by ratchet_free once sent),
   * or we free it if no response could be made. */
  struct MHD_Response *r = MHD_create_response_from_buffer_with_free_callback(
      len, text, ratchet_free);
  if (r == NULL) {
    ratchet_free(text);
    return MHD_NO;
  }
  (void)MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                RATCHET_METRICS_CONTENT_TYPE);
  (void)MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
  MHD_destroy_response(r);
  return ret;
}

/* A listening socket on host:port: its descriptor, or a negated errno. */
static int open_listener(const char *host, uint16_t port, bool *v6,
                         uint16_t *bound) {
  struct sockaddr_storage ss;
  socklen_t sl;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons(port);
    sl = sizeof *in4;
    *v6 = false;
  } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons(port);
    sl = sizeof *in6;
    *v6 = true;
  } else {
    return -EINVAL;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return -errno;
  int one = 1;
  (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (*v6)
    (void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&ss, sl) != 0 || listen(fd, 64) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  sl = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  *bound = ntohs(*v6 ? in6->sin6_port : in4->sin_port);
  return fd;
}

int ratchet_metrics_listen(ratchet_metrics *m, const char *addr_port,
                           uint16_t *port) {
  char host[RATCHET_METRICS_HOST_MAX];
  uint16_t want, bound = 0;
  bool v6 = false;
  if (m == NULL ||
      ratchet_metrics_parse_listen(addr_port, host, sizeof host, &want) != 0)
    return -EINVAL;
  if (m->httpd != NULL)
    return -EALREADY;
  int fd = open_listener(host, want, &v6, &bound);
  if (fd < 0)
    return fd;
  unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO;
  if (v6)
    flags |= MHD_USE_IPv6;
  struct MHD_Daemon *d = MHD_start_daemon(
      flags, 0, NULL, NULL, on_request, m, MHD_OPTION_LISTEN_SOCKET, fd,
      MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT,
      MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)CONNECTION_TIMEOUT,
      MHD_OPTION_END);
  if (d == NULL) {
    close(fd);
    return -EIO;
  }
  m->httpd = d;
  atomic_store(&m->port, bound);
  if (port != NULL)
    *port = bound;
  return 0;
}

uint16_t ratchet_metrics_port(const ratchet_metrics *m) {
  return m != NULL ? atomic_load(&m->port) : 0;
}

void ratchet__metrics_http_stop(ratchet_metrics *m) {
  if (m->httpd == NULL)
    return;
  /* Joins the polling thread and closes every socket, the listening one
   * included (libmicrohttpd closes a socket given by LISTEN_SOCKET too). */
  MHD_stop_daemon(m->httpd);
  m->httpd = NULL;
  atomic_store(&m->port, 0);
}

void ratchet_metrics_stop(ratchet_metrics *m) {
  if (m != NULL)
    ratchet__metrics_http_stop(m);
}
