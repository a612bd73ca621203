/* histogram.c - placeholder: being written. */
typedef int ratchet__placeholder_histogram;
