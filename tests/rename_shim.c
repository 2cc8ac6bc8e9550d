/* tests/rename_shim.c - LD_PRELOAD'ed into ./raktn by tests/test_robust.c.
 * Built by make as tests/rename_shim.so.
 *   RAKTN_SHIM_SIGINT=1    right after the first successful rename(), SIGINT
 *                          is sent to the whole process (as Ctrl-C would), so
 *                          that it arrives between two of raktn's renames
 *   RAKTN_SHIM_NO_FSYNC=1  fsync() does nothing (a test that writes
 *                          thousands of files, about their count, not the
 *                          disk) */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

int rename(const char *from, const char *to) {
    static int renamed;
    int (*real)(const char *, const char *) = (int (*)(const char *, const char *))dlsym(RTLD_NEXT, "rename");
    int r = real(from, to);
    if (r == 0 && ++renamed == 1 && getenv("RAKTN_SHIM_SIGINT")) kill(getpid(), SIGINT);
    return r;
}

int fsync(int fd) {
    int (*real)(int) = (int (*)(int))dlsym(RTLD_NEXT, "fsync");
    return getenv("RAKTN_SHIM_NO_FSYNC") ? 0 : real(fd);
}
