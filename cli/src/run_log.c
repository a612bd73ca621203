/*
 * run_log.c - turns orchestrator events into log lines (run_log.h).
 *
 * One switch decides each event's level and sentence. A sentence names
 * what it is about the way the rest of the command line does ("task 7
 * (gzip big.log)", "worker 2"), so that the text format reads on its own;
 * the JSON format carries the same as fields (task, worker, attempt,
 * kind, event) for machines. Levels are chosen so that the default, warn,
 * shows only what a user should act on: a worker that crashed or hung, a
 * breaker that opened, what a worker wrote to its own stderr.
 */
#include "run_log.h"

#include <stdio.h>

#include "ratchet/breaker.h"
#include "ratchet/status.h"

uint64_t cli_run_log_types(void) {
  return RATCHET_EV_BIT(RATCHET_EV_DISPATCHED) |
         RATCHET_EV_BIT(RATCHET_EV_SUCCEEDED) |
         RATCHET_EV_BIT(RATCHET_EV_FAILED) | RATCHET_EV_BIT(RATCHET_EV_LOST) |
         RATCHET_EV_BIT(RATCHET_EV_RETRY) |
         RATCHET_EV_BIT(RATCHET_EV_TASK_LOG) |
         (RATCHET_EV_WORKER_ALL & ~RATCHET_EV_BIT(RATCHET_EV_WORKER_STDERR)) |
         RATCHET_EV_BIT(RATCHET_EV_BREAKER);
}

static const char *ms(uint64_t ns, char *buf, size_t n) {
  if (ns < UINT64_C(10000000))
    snprintf(buf, n, "%.2f ms", (double)ns / 1e6);
  else if (ns < UINT64_C(10000000000))
    snprintf(buf, n, "%llu ms", (unsigned long long)(ns / 1000000u));
  else
    snprintf(buf, n, "%.1f s", (double)ns / 1e9);
  return buf;
}

void cli_run_log_event(cli_log *l, const ratchet_event *ev, uint64_t seq,
                       const char *label, bool ending) {
  /* The busiest events are debug: skip them before formatting anything. */
  if (!cli_log_on(l, CLI_LOG_DEBUG) &&
      (ev->type == RATCHET_EV_DISPATCHED || ev->type == RATCHET_EV_SUCCEEDED ||
       ev->type == RATCHET_EV_FAILED))
    return;
  cli_log_fields f = CLI_LOG_FIELDS_INIT;
  f.task = seq;
  f.worker = ev->worker;
  f.attempt = ev->attempt;
  f.kind = ev->kind[0] != '\0' ? ev->kind : NULL;
  f.event = ratchet_event_type_name(ev->type);
  char task[320], d[32];
  if (seq != 0)
    snprintf(task, sizeof task, "task %llu (%s)", (unsigned long long)seq,
             label != NULL ? label : ev->kind);
  else
    snprintf(task, sizeof task, "task id %llu",
             (unsigned long long)ev->task_id);
  const char *status = ratchet_status_name((ratchet_status)ev->status);
  cli_log_level lv;
  switch (ev->type) {
  case RATCHET_EV_DISPATCHED:
    cli_log_msg(l, CLI_LOG_DEBUG, &f, "%s: attempt %u on worker %d", task,
                ev->attempt, (int)ev->worker);
    break;
  case RATCHET_EV_SUCCEEDED:
    cli_log_msg(l, CLI_LOG_DEBUG, &f, "%s: attempt %u succeeded in %s", task,
                ev->attempt, ms(ev->duration_ns, d, sizeof d));
    break;
  case RATCHET_EV_FAILED:
    cli_log_msg(l, CLI_LOG_DEBUG, &f, "%s: attempt %u %s after %s%s%s", task,
                ev->attempt, status, ms(ev->duration_ns, d, sizeof d),
                ev->message[0] != '\0' ? ": " : "", ev->message);
    break;
  case RATCHET_EV_LOST:
    cli_log_msg(l, CLI_LOG_INFO, &f,
                "%s: attempt %u lost with worker %d (%s)%s", task, ev->attempt,
                (int)ev->worker, ev->message, ending ? "" : "; it runs again");
    break;
  case RATCHET_EV_RETRY:
    cli_log_msg(l, CLI_LOG_INFO, &f, "%s: attempt %u %s%s%s; retry in %s", task,
                ev->attempt, status, ev->message[0] != '\0' ? ": " : "",
                ev->message, ms(ev->delay_ns, d, sizeof d));
    break;
  case RATCHET_EV_TASK_LOG:
    lv = ev->level <= 1   ? CLI_LOG_DEBUG
         : ev->level == 2 ? CLI_LOG_INFO
         : ev->level == 3 ? CLI_LOG_WARN
                          : CLI_LOG_ERROR;
    cli_log_msg(l, lv, &f, "%s: %s", task, ev->message);
    break;
  case RATCHET_EV_WORKER_STARTING:
    cli_log_msg(l, CLI_LOG_DEBUG, &f, "worker %d: starting (pid %d)",
                (int)ev->worker, ev->pid);
    break;
  case RATCHET_EV_WORKER_READY:
    cli_log_msg(l, CLI_LOG_DEBUG, &f, "worker %d: ready (pid %d)",
                (int)ev->worker, ev->pid);
    break;
  case RATCHET_EV_WORKER_EXITED:
    if (ev->status == -1)
      cli_log_msg(l, ending ? CLI_LOG_DEBUG : CLI_LOG_WARN, &f,
                  "worker %d (pid %d) was killed by signal %d", (int)ev->worker,
                  ev->pid, ev->signal);
    else
      cli_log_msg(l,
                  ending            ? CLI_LOG_DEBUG
                  : ev->status != 0 ? CLI_LOG_WARN
                                    : CLI_LOG_INFO,
                  &f, "worker %d (pid %d) exited with status %d",
                  (int)ev->worker, ev->pid, ev->status);
    break;
  case RATCHET_EV_WORKER_RESTARTING:
    cli_log_msg(l, ending ? CLI_LOG_DEBUG : CLI_LOG_INFO, &f,
                "worker %d: restarting in %s", (int)ev->worker,
                ms(ev->delay_ns, d, sizeof d));
    break;
  case RATCHET_EV_WORKER_RECYCLED:
    cli_log_msg(l, CLI_LOG_INFO, &f, "worker %d (pid %d): recycled",
                (int)ev->worker, ev->pid);
    break;
  case RATCHET_EV_WORKER_HUNG:
    cli_log_msg(l, CLI_LOG_WARN, &f,
                "worker %d (pid %d) is hung: stopping it%s%s", (int)ev->worker,
                ev->pid, ev->message[0] != '\0' ? ": " : "", ev->message);
    break;
  case RATCHET_EV_BREAKER:
    lv = ev->to_state == RATCHET_BREAKER_OPEN ||
                 ev->to_state == RATCHET_BREAKER_FORCED_OPEN
             ? CLI_LOG_WARN
             : CLI_LOG_INFO;
    cli_log_msg(
        l, lv, &f, "breaker %s: %s -> %s", ev->group,
        ratchet_breaker_state_name((ratchet_breaker_state)ev->from_state),
        ratchet_breaker_state_name((ratchet_breaker_state)ev->to_state));
    break;
  default:
    break;
  }
}
