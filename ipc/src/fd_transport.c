/* fd_transport.c - being written. */
typedef int ratchet__placeholder_fd_transport;
