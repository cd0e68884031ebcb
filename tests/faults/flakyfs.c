/* A flaky filesystem for tests, loaded with LD_PRELOAD: the first FLAKYFS_FAILURES opens for
 * writing of a path under FLAKYFS_PREFIX fail with EIO, then every open works.
 *
 * It sits where every library of the process meets the kernel (libc's open family), so Python's
 * own file objects and pyarrow's C++ writers see the same failing disk, the way a flaky NFS mount
 * or a network block device fails a write and then recovers. Each failed open is appended, one
 * path per line, to FLAKYFS_LOG so a test can tell that the faults really happened.
 *
 * Build: gcc -shared -fPIC -O2 -o libflakyfs.so flakyfs.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static int failures_left = -1; /* -1: not read from the environment yet */

static int write_flags(int flags) {
    return (flags & (O_WRONLY | O_RDWR | O_CREAT | O_TRUNC)) != 0;
}

static void log_failure(const char *path) {
    const char *log_path = getenv("FLAKYFS_LOG");
    if (!log_path) return;
    int (*real_open)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open");
    int fd = real_open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) return;
    ssize_t ignored = write(fd, path, strlen(path));
    ignored = write(fd, "\n", 1);
    (void)ignored;
    close(fd);
}

/* Return 1 (and set errno) when this open must fail. */
static int fail_this_open(const char *path, int flags) {
    const char *prefix = getenv("FLAKYFS_PREFIX");
    if (!prefix || !path || !write_flags(flags)) return 0;
    if (strncmp(path, prefix, strlen(prefix)) != 0) return 0;
    if (__atomic_load_n(&failures_left, __ATOMIC_SEQ_CST) < 0) {
        const char *n = getenv("FLAKYFS_FAILURES");
        int expected = -1;
        __atomic_compare_exchange_n(&failures_left, &expected, n ? atoi(n) : 0, 0, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST);
    }
    int left = __atomic_load_n(&failures_left, __ATOMIC_SEQ_CST);
    while (left > 0) {
        if (__atomic_compare_exchange_n(&failures_left, &left, left - 1, 0, __ATOMIC_SEQ_CST,
                                        __ATOMIC_SEQ_CST)) {
            log_failure(path);
            errno = EIO;
            return 1;
        }
    }
    return 0;
}

static mode_t mode_arg(int flags, va_list args) {
    return (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(args, int) : 0;
}

#define FORWARD_OPEN(name)                                                                   \
    int name(const char *path, int flags, ...) {                                            \
        va_list args;                                                                        \
        va_start(args, flags);                                                               \
        mode_t mode = mode_arg(flags, args);                                                 \
        va_end(args);                                                                        \
        if (fail_this_open(path, flags)) return -1;                                          \
        int (*real)(const char *, int, ...) = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, #name); \
        return real(path, flags, mode);                                                      \
    }

#define FORWARD_OPENAT(name)                                                                 \
    int name(int dirfd, const char *path, int flags, ...) {                                 \
        va_list args;                                                                        \
        va_start(args, flags);                                                               \
        mode_t mode = mode_arg(flags, args);                                                 \
        va_end(args);                                                                        \
        if (fail_this_open(path, flags)) return -1;                                          \
        int (*real)(int, const char *, int, ...) = (int (*)(int, const char *, int, ...))dlsym(RTLD_NEXT, #name); \
        return real(dirfd, path, flags, mode);                                               \
    }

FORWARD_OPEN(open)
FORWARD_OPEN(open64)
FORWARD_OPENAT(openat)
FORWARD_OPENAT(openat64)
