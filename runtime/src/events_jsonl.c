/* events_jsonl.c - placeholder: being written. */
typedef int ratchet__placeholder_events_jsonl;
