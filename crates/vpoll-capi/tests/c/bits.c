/* Every event bit alone and in combination, set through libvpoll's API and checked with
 * poll(2), level-triggered epoll, edge-triggered epoll and select(2); then the checks a
 * libvpoll user makes first: create with each bit, clear a hang-up.
 * Prints "failures: N" (and one line per failure) and exits 0 only if N is 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <unistd.h>
#include <vpoll.h>

static int failures;

#define EXPECT(cond, ...)                                                            \
	do {                                                                             \
		if (!(cond)) {                                                               \
			failures++;                                                              \
			printf("FAIL line %d: ", __LINE__);                                      \
			printf(__VA_ARGS__);                                                     \
			printf("\n");                                                            \
		}                                                                            \
	} while (0)

static const unsigned int BITS[] = {EPOLLIN, EPOLLPRI, EPOLLOUT, EPOLLERR, EPOLLHUP, EPOLLRDHUP};
#define ALL (EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLERR | EPOLLHUP | EPOLLRDHUP)

static unsigned int poll_now(int fd) {
	struct pollfd p = {.fd = fd, .events = POLLIN | POLLPRI | POLLOUT | POLLRDHUP};
	if (poll(&p, 1, 0) < 0) return 0xffffffff;
	return (unsigned short)p.revents;
}

static unsigned int epoll_now(int ep, int timeout) {
	struct epoll_event ev;
	int n = epoll_wait(ep, &ev, 1, timeout);
	return n == 1 ? ev.events : 0;
}

static int watch(int fd, unsigned int flags) {
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN | EPOLLPRI | EPOLLOUT | EPOLLRDHUP | flags};
	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) return -1;
	return ep;
}

/* select's view of a mask, as fs/select.c derives it: (read, write, except). */
static void select_expect(unsigned int m, int *r, int *w, int *x) {
	*r = (m & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0;
	*w = (m & (EPOLLOUT | EPOLLERR)) != 0;
	*x = (m & EPOLLPRI) != 0;
}

int main(void) {
	for (unsigned int i = 0; i < 64; i++) {
		unsigned int m = 0;
		for (int b = 0; b < 6; b++)
			if (i & (1u << b)) m |= BITS[b];
		int fd = vpoll_create(0, FD_CLOEXEC);
		EXPECT(fd >= 0, "vpoll_create: %s", strerror(errno));
		if (fd < 0) continue;
		int lt = watch(fd, 0), et = watch(fd, EPOLLET);
		EXPECT(vpoll_ctl(fd, VPOLL_CTL_SETEVENTS, m) == 0, "SET %x: %s", m, strerror(errno));
		unsigned int got = poll_now(fd);
		EXPECT(got == m, "poll: set %x, got %x", m, got);
		got = epoll_now(lt, 0);
		EXPECT(got == m, "epoll LT: set %x, got %x", m, got);
		got = epoll_now(et, m ? 1000 : 0);
		EXPECT(got == m, "epoll ET: set %x, got %x", m, got);
		got = epoll_now(et, 0);
		EXPECT(got == 0, "epoll ET reported %x twice", got);
		fd_set r, w, x;
		FD_ZERO(&r); FD_ZERO(&w); FD_ZERO(&x);
		FD_SET(fd, &r); FD_SET(fd, &w); FD_SET(fd, &x);
		struct timeval zero = {0, 0};
		select(fd + 1, &r, &w, &x, &zero);
		int er, ew, ex;
		select_expect(m, &er, &ew, &ex);
		EXPECT(FD_ISSET(fd, &r) == er && FD_ISSET(fd, &w) == ew && FD_ISSET(fd, &x) == ex,
		       "select for %x: r%d w%d x%d", m, FD_ISSET(fd, &r), FD_ISSET(fd, &w),
		       FD_ISSET(fd, &x));
		EXPECT(vpoll_ctl(fd, VPOLL_CTL_DELEVENTS, m) == 0, "DEL %x: %s", m, strerror(errno));
		got = poll_now(fd);
		EXPECT(got == 0, "after DEL %x: %x", m, got);
		close(lt);
		close(et);
		EXPECT(vpoll_close(fd) == 0, "vpoll_close: %s", strerror(errno));
	}
	for (int b = 0; b < 6; b++) {
		int fd = vpoll_create(BITS[b], 0);
		EXPECT(fd >= 0, "vpoll_create(%x): %s", BITS[b], strerror(errno));
		if (fd < 0) continue;
		unsigned int got = poll_now(fd);
		EXPECT(got == BITS[b], "created with %x, poll %x", BITS[b], got);
		EXPECT(vpoll_ctl(fd, VPOLL_CTL_ADDEVENTS, EPOLLHUP) == 0, "ADD HUP");
		EXPECT(vpoll_ctl(fd, VPOLL_CTL_DELEVENTS, ALL) == 0, "DEL all after HUP");
		got = poll_now(fd);
		EXPECT(got == 0, "after a hang-up was cleared: %x", got);
		vpoll_close(fd);
	}
	printf("failures: %d\n", failures);
	return failures == 0 ? 0 : 1;
}
