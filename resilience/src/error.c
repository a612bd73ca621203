/*
 * error.c - messages and names for ratchet's error codes and for the errno
 * values that pass through ratchet unchanged.
 *
 * Our own codes come from RATCHET_ERRNO_MAP in ratchet/error.h. errno names
 * are not in standard C, so a short table of the ones ratchet returns or
 * passes through is kept here, each entry guarded so the file builds where a
 * name is missing.
 */
#include <errno.h>
#include <string.h>

#include "ratchet/error.h"

/* clang-format off */
#define ERRNO_NAME(e) {e, #e},
static const struct {
  int code;
  const char *name;
} errno_names[] = {
#ifdef EPERM
  ERRNO_NAME(EPERM)
#endif
#ifdef ENOENT
  ERRNO_NAME(ENOENT)
#endif
#ifdef ESRCH
  ERRNO_NAME(ESRCH)
#endif
#ifdef EINTR
  ERRNO_NAME(EINTR)
#endif
#ifdef EIO
  ERRNO_NAME(EIO)
#endif
#ifdef E2BIG
  ERRNO_NAME(E2BIG)
#endif
#ifdef EBADF
  ERRNO_NAME(EBADF)
#endif
#ifdef ECHILD
  ERRNO_NAME(ECHILD)
#endif
#ifdef EAGAIN
  ERRNO_NAME(EAGAIN)
#endif
#ifdef ENOMEM
  ERRNO_NAME(ENOMEM)
#endif
#ifdef EACCES
  ERRNO_NAME(EACCES)
#endif
#ifdef EBUSY
  ERRNO_NAME(EBUSY)
#endif
#ifdef EEXIST
  ERRNO_NAME(EEXIST)
#endif
#ifdef ENOTDIR
  ERRNO_NAME(ENOTDIR)
#endif
#ifdef EISDIR
  ERRNO_NAME(EISDIR)
#endif
#ifdef EINVAL
  ERRNO_NAME(EINVAL)
#endif
#ifdef EMFILE
  ERRNO_NAME(EMFILE)
#endif
#ifdef ENOSPC
  ERRNO_NAME(ENOSPC)
#endif
#ifdef EPIPE
  ERRNO_NAME(EPIPE)
#endif
#ifdef EDOM
  ERRNO_NAME(EDOM)
#endif
#ifdef ERANGE
  ERRNO_NAME(ERANGE)
#endif
#ifdef ENOSYS
  ERRNO_NAME(ENOSYS)
#endif
#ifdef ENOTSUP
  ERRNO_NAME(ENOTSUP)
#endif
#ifdef EPROTO
  ERRNO_NAME(EPROTO)
#endif
#ifdef EMSGSIZE
  ERRNO_NAME(EMSGSIZE)
#endif
#ifdef EOVERFLOW
  ERRNO_NAME(EOVERFLOW)
#endif
#ifdef ECONNRESET
  ERRNO_NAME(ECONNRESET)
#endif
#ifdef ECONNREFUSED
  ERRNO_NAME(ECONNREFUSED)
#endif
#ifdef ETIMEDOUT
  ERRNO_NAME(ETIMEDOUT)
#endif
#ifdef EALREADY
  ERRNO_NAME(EALREADY)
#endif
#ifdef ECANCELED
  ERRNO_NAME(ECANCELED)
#endif
#ifdef ENOBUFS
  ERRNO_NAME(ENOBUFS)
#endif
#ifdef ESHUTDOWN
  ERRNO_NAME(ESHUTDOWN)
#endif
};
#undef ERRNO_NAME
/* clang-format on */

const char *ratchet_strerror(int err) {
  if (err == 0)
    return "success";
  switch (err) {
#define RATCHET__ERR_MSG(name, value, msg)                                     \
  case value:                                                                  \
    return msg;
    RATCHET_ERRNO_MAP(RATCHET__ERR_MSG)
#undef RATCHET__ERR_MSG
  default:
    break;
  }
  /* glibc's and musl's strerror return static text for every valid errno,
   * which is what we pass through; anything else is not ours to name. */
  if (err < 0 && err > -4096)
    return strerror(-err);
  return "unknown error";
}

const char *ratchet_err_name(int err) {
  if (err == 0)
    return "OK";
  switch (err) {
#define RATCHET__ERR_NAME(name, value, msg)                                    \
  case value:                                                                  \
    return "RATCHET_" #name;
    RATCHET_ERRNO_MAP(RATCHET__ERR_NAME)
#undef RATCHET__ERR_NAME
  default:
    break;
  }
  for (size_t i = 0; i < sizeof errno_names / sizeof errno_names[0]; i++)
    if (-err == errno_names[i].code)
      return errno_names[i].name;
  return "UNKNOWN";
}
