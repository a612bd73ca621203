/* uv_transport.c - being written. */
typedef int ratchet__placeholder_uv_transport;
