/* Random calls across the vpoll C ABI, meant to run under valgrind and AddressSanitizer:
 * any memory error in libvpoll (or in how it treats the caller's arguments) shows up there.
 * It also checks the documented results: 0, or -1 with EINVAL/EBADF exactly where the
 * rules say, and the IN bit poll(2) sees matches the calls that succeeded.
 * Usage: abi_fuzz SEED CALLS. Prints "ok" and exits 0, or "FAIL ..." and exits 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <vpoll.h>

#define MAXV 16
#define SETTABLE (EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLRDHUP)
#define INPUT_FLAGS 0xf0000000u

static uint64_t state;

/* SplitMix64, as the Rust harnesses use. */
static uint64_t next(void) {
	uint64_t z = (state += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static int below(int n) { return (int)(next() % (uint64_t)n); }

static void fail(long step, const char *what, int rv, int err) {
	printf("FAIL step %ld: %s returned %d errno %d (%s)\n", step, what, rv, err, strerror(err));
	exit(1);
}

/* The IN bit poll(2) reports for fd now. */
static int has_in(int fd) {
	struct pollfd p = {.fd = fd, .events = POLLIN};
	return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: abi_fuzz SEED CALLS\n");
		return 2;
	}
	state = strtoull(argv[1], NULL, 10);
	long calls = strtol(argv[2], NULL, 10);
	int live[MAXV];
	int in_set[MAXV];
	int clean[MAXV]; /* never had a bit other than IN/OUT: the IN model holds */
	int n = 0;
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) != 0) return 2;
	/* A closed number that nothing reuses: fds are allocated lowest first. */
	int closed = dup2(pipefd[0], 1000);
	close(closed);
	for (long step = 0; step < calls; step++) {
		int what = below(10);
		if (what == 0 && n < MAXV) {
			uint32_t ev = below(2) ? 0 : (uint32_t)next();
			int flags = below(4) ? FD_CLOEXEC : (int)next();
			errno = 0;
			int fd = vpoll_create(ev & (EPOLLIN | EPOLLOUT), flags);
			int err = errno;
			int valid = (flags & ~FD_CLOEXEC) == 0;
			if (valid && fd < 0) fail(step, "vpoll_create", fd, err);
			if (!valid && (fd != -1 || err != EINVAL)) fail(step, "vpoll_create(bad flags)", fd, err);
			if (fd >= 0) {
				live[n] = fd;
				in_set[n] = (ev & EPOLLIN) != 0;
				clean[n] = 1;
				n++;
			}
		} else if (what == 1 && n > 0) {
			int i = below(n);
			errno = 0;
			int rv = vpoll_close(live[i]);
			if (rv != 0) fail(step, "vpoll_close", rv, errno);
			live[i] = live[n - 1];
			in_set[i] = in_set[n - 1];
			clean[i] = clean[n - 1];
			n--;
		} else if (what == 2) {
			/* Descriptors that are not vpoll fds: EBADF, and they stay open. */
			int targets[] = {pipefd[0], pipefd[1], closed, -1, -12345, 0, 99999};
			int fd = targets[below(7)];
			errno = 0;
			int rv = vpoll_ctl(fd, 1 + below(3), EPOLLIN);
			if (rv != -1 || errno != EBADF) fail(step, "vpoll_ctl(not vpoll)", rv, errno);
			errno = 0;
			rv = vpoll_close(fd);
			if (rv != -1 || errno != EBADF) fail(step, "vpoll_close(not vpoll)", rv, errno);
			if ((fd == pipefd[0] || fd == pipefd[1] || fd == 0) && fcntl(fd, F_GETFD) < 0)
				fail(step, "foreign fd closed", rv, errno);
		} else if (n > 0) {
			int i = below(n);
			int op = below(8) ? 1 + below(3) : (int)next();
			uint32_t ev;
			switch (below(4)) {
			case 0: ev = (uint32_t)next(); break;
			case 1: ev = (uint32_t)next() & (EPOLLIN | EPOLLOUT); break;
			default: ev = EPOLLIN; break;
			}
			errno = 0;
			int rv = vpoll_ctl(live[i], op, ev);
			int err = errno;
			int op_ok = op >= 1 && op <= 3;
			int ev_ok = !(ev & INPUT_FLAGS) && (op == 2 || !(ev & ~(uint32_t)SETTABLE));
			if (!op_ok || !ev_ok) {
				if (rv != -1 || err != EINVAL) fail(step, "vpoll_ctl(bad op/events)", rv, err);
				continue;
			}
			/* Only IN and OUT are set here, which every backend represents. */
			if (ev & ~(uint32_t)(EPOLLIN | EPOLLOUT) & (uint32_t)SETTABLE) {
				if (rv != 0 && !(rv == -1 && err == EINVAL)) fail(step, "vpoll_ctl(other bits)", rv, err);
				if (rv == 0) clean[i] = 0;
				continue;
			}
			if (rv != 0) fail(step, "vpoll_ctl", rv, err);
			if (ev & EPOLLIN) in_set[i] = op == 2 ? 0 : 1;
			else if (op == 3) in_set[i] = 0;
			if (clean[i] && has_in(live[i]) != in_set[i]) fail(step, "poll(IN) vs model", in_set[i], 0);
		}
	}
	for (int i = 0; i < n; i++)
		if (vpoll_close(live[i]) != 0) fail(-1, "final vpoll_close", -1, errno);
	close(pipefd[0]);
	close(pipefd[1]);
	printf("ok\n");
	return 0;
}
