/* frame.c - being written. */
typedef int ratchet__placeholder_frame;
