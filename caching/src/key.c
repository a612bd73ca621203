/* key.c - being written. */
typedef int ratchet__placeholder_key;
