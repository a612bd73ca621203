/*
 * orch_coalesce.c - tasks that share another task's outcome instead of
 * running: followers and their leader (cache single flight, dedupe,
 * debounce), the promotion of a follower when its leader is cancelled, and
 * the dedupe/debounce system with its windows.
 *
 * A follower waits on its leader's list, in no queue. When the leader's
 * outcome is final, each follower gets a copy (its own buffers, its own
 * hard link to a spilled file) and completes as coalesced with the
 * leader's id. A dedupe window outlives its leader when the leader ends
 * early: late duplicates within the window get a copy of the outcome kept
 * in the window (in memory only), and finished windows are swept when the
 * map has doubled since the last sweep.
 */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "orch_internal.h"
#include "ratchet/alloc.h"
#include "ratchet/clock.h"

/* ------------------------------------------------------------- coalescing */

struct dedupe_entry {
  uint64_t leader_id; /* LEADING: the task that ran, for late joiners */
  task *leader;       /* LEADING: the task that runs, while it lives */
  task *pending;      /* TRAILING: the task waiting for quiet */
  uint64_t expires_at;
  bool has_final; /* LEADING: the leader ended within the window */
  final_out final;
};

void ratchet__orch_make_follower(ratchet_orch *o, task *t, task *leader) {
  task_ext *le = leader->ext, *te = t->ext;
  te->leader = leader;
  te->leader_id = leader->id;
  te->follower_next = NULL;
  /* Append, so followers complete in submission order. */
  task **p = &le->followers;
  while (*p != NULL)
    p = &(*p)->ext->follower_next;
  *p = t;
  t->state = TS_FOLLOWER;
  ratchet__acct_count(o->acct, t->kind, RATCHET_COUNT_COALESCED, 1);
  ratchet__orch_publish_task(o, RATCHET_EV_COALESCED, t, RATCHET_STATUS_NONE, 0,
                             0, NULL, NULL);
}

void ratchet__orch_detach_follower(ratchet_orch *o, task *t) {
  (void)o;
  task *leader = t->ext->leader;
  if (leader == NULL)
    return; /* already released by its leader */
  for (task **p = &leader->ext->followers; *p != NULL;
       p = &(*p)->ext->follower_next)
    if (*p == t) {
      *p = t->ext->follower_next;
      break;
    }
  t->ext->follower_next = NULL;
  t->ext->leader = NULL; /* leader_id stays: the result names it */
}

static int copy_final(final_out *dst, const final_out *src) {
  *dst = *src;
  dst->error = src->error != NULL ? ratchet__dup_str(src->error) : NULL;
  dst->output = ratchet__dup_bytes(src->output, src->output_len);
  dst->stderr_data = ratchet__dup_bytes(src->stderr_data, src->stderr_len);
  dst->stdout_path = ratchet__spill_link(src->stdout_path);
  dst->stderr_path = ratchet__spill_link(src->stderr_path);
  if ((src->error != NULL && dst->error == NULL) ||
      (src->output_len > 0 && dst->output == NULL) ||
      (src->stderr_len > 0 && dst->stderr_data == NULL)) {
    ratchet__final_clear(dst);
    dst->status = src->status;
    return -ENOMEM;
  }
  return 0;
}

/* The first follower of a cancelled leader takes its place. */
static void promote(ratchet_orch *o, task *leader) {
  task *nl = leader->ext->followers;
  leader->ext->followers = NULL;
  task_ext *ne = nl->ext;
  task *rest = ne->follower_next;
  ne->leader = NULL;
  ne->leader_id = 0;
  ne->follower_next = NULL;
  ne->followers = rest;
  for (task *f = rest; f != NULL; f = f->ext->follower_next) {
    f->ext->leader = nl;
    f->ext->leader_id = nl->id;
  }
  task_ext *le = leader->ext;
  if (le->cache_leader) {
    ne->cache_leader = true;
    ne->cache_key = le->cache_key;
    le->cache_leader = false;
    unsigned char kb[16];
    ratchet_cache_key_bytes(&ne->cache_key, kb);
    (void)ratchet__strmap_put(o->cache_inflight, kb, sizeof kb, nl);
  }
  if (le->dedupe_entry != NULL) {
    dedupe_entry *de = le->dedupe_entry;
    if (de->leader == leader) {
      de->leader = nl;
      de->leader_id = nl->id;
    }
    if (de->pending == leader)
      de->pending = nl;
    ne->dedupe_entry = de;
    le->dedupe_entry = NULL;
  }
  nl->state = TS_NEW;
  ratchet__orch_enqueue(o, nl, true);
}

void ratchet__orch_release_followers(ratchet_orch *o, task *leader,
                                     const final_out *f) {
  if (leader->cancel_requested && f->status == RATCHET_STATUS_CANCELLED &&
      !o->closing) {
    promote(o, leader);
    return;
  }
  /* One at a time from the head: a follower's callback may cancel
   * another follower, which then leaves this list (detach). */
  task *x;
  while ((x = leader->ext->followers) != NULL) {
    leader->ext->followers = x->ext->follower_next;
    x->ext->follower_next = NULL;
    x->ext->leader = NULL; /* leader_id stays, for the result */
    final_out c;
    if (copy_final(&c, f) != 0) {
      ratchet__final_clear(&c);
      c.status = f->status;
    }
    if (leader->cancel_requested && c.status == RATCHET_STATUS_CANCELLED)
      c.status = RATCHET_STATUS_SHUTDOWN; /* closing: no one to promote */
    ratchet__orch_finish(o, x, &c);
  }
}

static void drop_spill(char **path) {
  if (*path != NULL) {
    (void)unlink(*path);
    ratchet_free(*path);
    *path = NULL;
  }
}

static void dedupe_entry_free(dedupe_entry *de) {
  ratchet__final_clear(&de->final);
  ratchet_free(de);
}

void ratchet__orch_forget_keys(ratchet_orch *o, task *t, const final_out *f) {
  task_ext *e = t->ext;
  if (e == NULL)
    return;
  if (e->cache_leader) {
    unsigned char kb[16];
    ratchet_cache_key_bytes(&e->cache_key, kb);
    if (ratchet__strmap_get(o->cache_inflight, kb, sizeof kb) == t)
      ratchet__strmap_del(o->cache_inflight, kb, sizeof kb);
    e->cache_leader = false;
  }
  dedupe_entry *de = e->dedupe_entry;
  if (de == NULL)
    return;
  e->dedupe_entry = NULL;
  uint64_t now = ratchet_now_ns();
  if (de->pending == t)
    de->pending = NULL;
  if (de->leader == t) {
    de->leader = NULL;
    /* Late duplicates within the window get this outcome; a cancelled
     * leader leaves nothing to share. */
    if (now < de->expires_at && f != NULL &&
        f->status != RATCHET_STATUS_CANCELLED &&
        f->status != RATCHET_STATUS_SHUTDOWN &&
        copy_final(&de->final, f) == 0) {
      /* Late joiners get the output in memory, never spilled files. */
      drop_spill(&de->final.stdout_path);
      drop_spill(&de->final.stderr_path);
      de->has_final = true;
    }
  }
  if (de->leader == NULL && de->pending == NULL && !de->has_final) {
    if (ratchet__strmap_get(o->dedupe, e->dedupe.key, e->dedupe.key_len) == de)
      ratchet__strmap_del(o->dedupe, e->dedupe.key, e->dedupe.key_len);
    dedupe_entry_free(de);
  }
}

static void free_entry_cb(void *ctx, const void *key, size_t len, void *val) {
  (void)ctx, (void)key, (void)len;
  dedupe_entry_free(val);
}

void ratchet__orch_dedupe_free_all(ratchet_orch *o) {
  ratchet__strmap_foreach(o->dedupe, free_entry_cb, NULL);
}

/* --------------------------------------------------------------- dedupe */

/* A finished window (no task left in it, past its end): freed here. */
static bool window_over(void *ctx, const void *key, size_t len, void *val) {
  (void)key, (void)len;
  dedupe_entry *de = val;
  if (de->leader != NULL || de->pending != NULL ||
      *(const uint64_t *)ctx < de->expires_at)
    return false;
  dedupe_entry_free(de);
  return true;
}

/* Keeps the dedupe map from growing with keys seen once: when it has
 * doubled since the last sweep, the finished windows go. */
static void dedupe_sweep(ratchet_orch *o, uint64_t now) {
  if (ratchet__strmap_len(o->dedupe) < o->dedupe_sweep_at)
    return;
  (void)ratchet__strmap_remove_if(o->dedupe, window_over, &now);
  o->dedupe_sweep_at = 2 * ratchet__strmap_len(o->dedupe) + 1024;
}

void ratchet__sys_dedupe(RATCHET__RUN_ARGS) {
  (void)ctx, (void)a;
  task_ext *e = t->ext;
  if (e == NULL || !e->has_dedupe)
    return;
  const void *k = e->dedupe.key;
  size_t kl = e->dedupe.key_len;
  if (at == RATCHET_AT_SUBMIT)
    dedupe_sweep(o, now);
  dedupe_entry *de = ratchet__strmap_get(o->dedupe, k, kl);
  if (at == RATCHET_AT_DISPATCH) {
    if (de != NULL && de->pending == t) {
      /* Quiet came: the window closes; the next task starts a new one. */
      de->pending = NULL;
      if (de->leader == NULL && !de->has_final) {
        ratchet__strmap_del(o->dedupe, k, kl);
        dedupe_entry_free(de);
      }
      e->dedupe_entry = NULL;
    }
    return;
  }
  if (de != NULL && e->dedupe.mode == RATCHET_DEDUPE_LEADING &&
      de->leader == NULL && de->pending == NULL && now >= de->expires_at) {
    /* A finished window: forget it. */
    ratchet__strmap_del(o->dedupe, k, kl);
    dedupe_entry_free(de);
    de = NULL;
  }
  if (e->dedupe.mode == RATCHET_DEDUPE_LEADING) {
    if (de != NULL && now < de->expires_at && de->leader != NULL) {
      ratchet__orch_make_follower(o, t, de->leader);
      return;
    }
    if (de != NULL && now < de->expires_at && de->has_final) {
      final_out c;
      if (copy_final(&c, &de->final) == 0) {
        ratchet__final_clear(&e->last);
        e->last = c;
        e->has_last = true;
        e->leader_id = de->leader_id; /* coalesced with the one that ran */
        ratchet__acct_count(o->acct, t->kind, RATCHET_COUNT_COALESCED, 1);
        ratchet__orch_publish_task(o, RATCHET_EV_COALESCED, t,
                                   RATCHET_STATUS_NONE, 0, 0, NULL,
                                   "joined a finished task within the "
                                   "dedupe window");
        d->verdict = RATCHET_FINISH;
        d->status = c.status;
        return;
      }
    }
    if (de == NULL) {
      de = ratchet_calloc(1, sizeof *de);
      if (de == NULL)
        return; /* no dedupe rather than no task */
      if (ratchet__strmap_put(o->dedupe, k, kl, de) != 0) {
        ratchet_free(de);
        return;
      }
    } else if (de->leader != NULL && de->leader->ext != NULL) {
      de->leader->ext->dedupe_entry = NULL;
    }
    ratchet__final_clear(&de->final);
    de->has_final = false;
    de->leader = t;
    de->leader_id = t->id;
    de->expires_at = now + e->dedupe.window_ns;
    e->dedupe_entry = de;
    return;
  }
  /* Trailing: the newest task waits for window_ns of quiet. */
  if (de != NULL && de->pending != NULL && de->pending != t) {
    task *old = de->pending;
    ratchet__orch_unwait(o, old);
    old->ext->dedupe_entry = NULL;
    /* The old one and its followers follow the new one. */
    task *fl = old->ext->followers;
    old->ext->followers = NULL;
    ratchet__orch_make_follower(o, old, t);
    while (fl != NULL) {
      task *nx = fl->ext->follower_next;
      fl->ext->follower_next = NULL;
      fl->ext->leader = t;
      fl->ext->leader_id = t->id;
      task **p = &e->followers;
      while (*p != NULL)
        p = &(*p)->ext->follower_next;
      *p = fl;
      fl = nx;
    }
  } else if (de == NULL) {
    de = ratchet_calloc(1, sizeof *de);
    if (de == NULL)
      return;
    if (ratchet__strmap_put(o->dedupe, k, kl, de) != 0) {
      ratchet_free(de);
      return;
    }
  }
  de->pending = t;
  de->expires_at = now + e->dedupe.window_ns;
  e->dedupe_entry = de;
  d->verdict = RATCHET_DEFER;
  d->until_ns = de->expires_at;
}
