/* create/ctl/close through libvpoll's API, with epoll, poll(2) and select(2) watching.
 * Uses only EPOLLIN and EPOLLOUT, which every backend reports exactly.
 * Prints "ok" and exits 0, or prints "FAIL ..." and exits 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <unistd.h>
#include <vpoll.h>

#define CHECK(cond)                                                                  \
	do {                                                                             \
		if (!(cond)) {                                                               \
			printf("FAIL line %d: %s (errno %d: %s)\n", __LINE__, #cond, errno,      \
			       strerror(errno));                                                 \
			exit(1);                                                                 \
		}                                                                            \
	} while (0)

/* What epoll reports for the single registered fd now (0 if nothing within 10 s). */
static unsigned int epoll_now(int epfd, int timeout_ms) {
	struct epoll_event ev;
	int n = epoll_wait(epfd, &ev, 1, timeout_ms);
	CHECK(n >= 0);
	return n == 0 ? 0 : ev.events;
}

/* Whether select(2) reports fd readable and writable now, as bits 1 and 2. */
static int select_now(int fd) {
	fd_set r, w;
	FD_ZERO(&r);
	FD_ZERO(&w);
	FD_SET(fd, &r);
	FD_SET(fd, &w);
	struct timeval zero = {0, 0};
	CHECK(select(fd + 1, &r, &w, NULL, &zero) >= 0);
	return (FD_ISSET(fd, &r) ? 1 : 0) | (FD_ISSET(fd, &w) ? 2 : 0);
}

/* What poll(2) reports for fd now. */
static short poll_now(int fd) {
	struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT};
	CHECK(poll(&p, 1, 0) >= 0);
	return p.revents;
}

int main(void) {
	/* init_events is honoured. */
	int fd = vpoll_create(EPOLLOUT, FD_CLOEXEC);
	CHECK(fd >= 0);
	CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	CHECK(epfd >= 0);
	struct epoll_event req = {.events = EPOLLIN | EPOLLOUT, .data.fd = fd};
	CHECK(epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &req) == 0);
	CHECK(epoll_now(epfd, 10000) == EPOLLOUT);
	CHECK(poll_now(fd) == POLLOUT);

	CHECK(vpoll_ctl(fd, VPOLL_CTL_ADDEVENTS, EPOLLIN) == 0);
	CHECK(epoll_now(epfd, 10000) == (EPOLLIN | EPOLLOUT));
	/* ADD is idempotent. */
	CHECK(vpoll_ctl(fd, VPOLL_CTL_ADDEVENTS, EPOLLIN) == 0);
	CHECK(poll_now(fd) == (POLLIN | POLLOUT));
	CHECK(select_now(fd) == 3);

	CHECK(vpoll_ctl(fd, VPOLL_CTL_DELEVENTS, EPOLLOUT) == 0);
	CHECK(epoll_now(epfd, 10000) == EPOLLIN);
	CHECK(vpoll_ctl(fd, VPOLL_CTL_DELEVENTS, EPOLLIN) == 0);
	CHECK(epoll_now(epfd, 0) == 0);
	CHECK(poll_now(fd) == 0);
	/* DEL is idempotent. */
	CHECK(vpoll_ctl(fd, VPOLL_CTL_DELEVENTS, EPOLLIN) == 0);
	CHECK(poll_now(fd) == 0);

	CHECK(vpoll_ctl(fd, VPOLL_CTL_SETEVENTS, EPOLLOUT) == 0);
	CHECK(epoll_now(epfd, 10000) == EPOLLOUT);
	CHECK(select_now(fd) == 2);
	CHECK(vpoll_ctl(fd, VPOLL_CTL_SETEVENTS, EPOLLIN) == 0);
	CHECK(epoll_now(epfd, 10000) == EPOLLIN);
	CHECK(select_now(fd) == 1);
	CHECK(vpoll_ctl(fd, VPOLL_CTL_SETEVENTS, 0) == 0);
	CHECK(epoll_now(epfd, 0) == 0);
	CHECK(select_now(fd) == 0);

	/* Without FD_CLOEXEC the fd survives exec, as with libvpoll. */
	int inherit = vpoll_create(EPOLLIN, 0);
	CHECK(inherit >= 0);
	CHECK((fcntl(inherit, F_GETFD) & FD_CLOEXEC) == 0);
	CHECK(poll_now(inherit) == POLLIN);
	CHECK(vpoll_close(inherit) == 0);
	CHECK(fcntl(inherit, F_GETFD) == -1 && errno == EBADF);

	CHECK(close(epfd) == 0);
	CHECK(vpoll_close(fd) == 0);
	CHECK(fcntl(fd, F_GETFD) == -1 && errno == EBADF);
	printf("ok\n");
	return 0;
}
