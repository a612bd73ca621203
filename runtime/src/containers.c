/* containers.c - placeholder: being written. */
typedef int ratchet__placeholder_containers;
