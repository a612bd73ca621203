/* A consumer of libratchet-resilience: a breaker guarding a failing call. */
#include <stdio.h>

#include <ratchet/resilience.h>

int main(void) {
  ratchet_breaker_options o = RATCHET_BREAKER_OPTIONS_INIT;
  o.window = RATCHET_BREAKER_WINDOW_CONSECUTIVE;
  o.consecutive_failures = 2;
  ratchet_breaker *b = NULL;
  if (ratchet_breaker_new(&o, 0, &b) != 0)
    return 1;
  for (int i = 0; i < 2; i++)
    if (ratchet_breaker_allow(b, 0) == 0)
      ratchet_breaker_record(b, RATCHET_BREAKER_FAILURE, 1, 0);
  int rc = ratchet_breaker_allow(b, 1);
  ratchet_breaker_free(b);
  if (rc != RATCHET_EBREAKER_OPEN)
    return 1;
  ratchet_backoff_options bo = RATCHET_BACKOFF_OPTIONS_INIT;
  printf("consumer ok: ratchet %s, %s, first delay %llu ns\n",
         ratchet_version_string(), ratchet_err_name(rc),
         (unsigned long long)ratchet_backoff_base(&bo, 1));
  return 0;
}
