/* errno parity with libvpoll (and greenfd's documented choices where libvpoll is silent).
 * Prints "ok" and exits 0, or prints "FAIL ..." and exits 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <vpoll.h>

/* Expect `call` to return -1 with errno `err`. */
#define FAILS_WITH(call, err)                                                        \
	do {                                                                             \
		errno = 0;                                                                   \
		int rv_ = (call);                                                            \
		if (rv_ != -1 || errno != (err)) {                                           \
			printf("FAIL line %d: %s returned %d errno %d (%s), expected -1 %s\n",   \
			       __LINE__, #call, rv_, errno, strerror(errno), #err);              \
			exit(1);                                                                 \
		}                                                                            \
	} while (0)

#define CHECK(cond)                                                                  \
	do {                                                                             \
		if (!(cond)) {                                                               \
			printf("FAIL line %d: %s (errno %d: %s)\n", __LINE__, #cond, errno,      \
			       strerror(errno));                                                 \
			exit(1);                                                                 \
		}                                                                            \
	} while (0)

int main(void) {
	/* Bad flags: only FD_CLOEXEC is a vpoll_create flag. */
	FAILS_WITH(vpoll_create(0, 2), EINVAL);
	FAILS_WITH(vpoll_create(0, O_CLOEXEC), EINVAL);
	FAILS_WITH(vpoll_create(0, FD_CLOEXEC | O_NONBLOCK), EINVAL);
	/* epoll_ctl input flags are not events. */
	FAILS_WITH(vpoll_create(EPOLLIN | EPOLLET, FD_CLOEXEC), EINVAL);

	int fd = vpoll_create(0, FD_CLOEXEC);
	CHECK(fd >= 0);
	/* Unknown ops. */
	FAILS_WITH(vpoll_ctl(fd, 0, EPOLLIN), EINVAL);
	FAILS_WITH(vpoll_ctl(fd, 4, EPOLLIN), EINVAL);
	FAILS_WITH(vpoll_ctl(fd, -1, EPOLLIN), EINVAL);
	/* An invalid op left the state alone. */
	struct pollfd p = {.fd = fd, .events = POLLIN | POLLOUT};
	CHECK(poll(&p, 1, 0) == 0);
	/* Event bits: input flags are EINVAL for every op; bits no backend can deliver
	 * are EINVAL for ADD/SET and ignored by DEL. */
	FAILS_WITH(vpoll_ctl(fd, VPOLL_CTL_ADDEVENTS, EPOLLIN | EPOLLONESHOT), EINVAL);
	FAILS_WITH(vpoll_ctl(fd, VPOLL_CTL_DELEVENTS, EPOLLIN | EPOLLET), EINVAL);
	FAILS_WITH(vpoll_ctl(fd, VPOLL_CTL_SETEVENTS, EPOLLRDNORM), EINVAL);
	FAILS_WITH(vpoll_ctl(fd, VPOLL_CTL_ADDEVENTS, EPOLLMSG), EINVAL);
	CHECK(vpoll_ctl(fd, VPOLL_CTL_DELEVENTS, EPOLLIN | EPOLLRDNORM) == 0);

	/* Descriptors that are not vpoll fds. */
	int pipefd[2];
	CHECK(pipe2(pipefd, O_CLOEXEC) == 0);
	FAILS_WITH(vpoll_ctl(pipefd[0], VPOLL_CTL_ADDEVENTS, EPOLLIN), EBADF);
	FAILS_WITH(vpoll_ctl(pipefd[1], VPOLL_CTL_SETEVENTS, EPOLLOUT), EBADF);
	FAILS_WITH(vpoll_ctl(-1, VPOLL_CTL_ADDEVENTS, EPOLLIN), EBADF);
	FAILS_WITH(vpoll_ctl(123456, VPOLL_CTL_ADDEVENTS, EPOLLIN), EBADF);
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	CHECK(epfd >= 0);
	FAILS_WITH(vpoll_ctl(epfd, VPOLL_CTL_ADDEVENTS, EPOLLIN), EBADF);
	/* vpoll_close refuses them and leaves them open. */
	FAILS_WITH(vpoll_close(pipefd[0]), EBADF);
	CHECK(fcntl(pipefd[0], F_GETFD) >= 0);
	FAILS_WITH(vpoll_close(-1), EBADF);
	/* The pipe did not get written to by a misrouted control word. */
	CHECK(poll(&(struct pollfd){.fd = pipefd[0], .events = POLLIN}, 1, 0) == 0);

	/* A closed vpoll fd is EBADF. */
	CHECK(vpoll_close(fd) == 0);
	FAILS_WITH(vpoll_ctl(fd, VPOLL_CTL_ADDEVENTS, EPOLLIN), EBADF);
	FAILS_WITH(vpoll_close(fd), EBADF);

	/* greenfd's backend switch naming no backend: ENODEV, and nothing is created. */
	setenv("GREENFD_VPOLL_BACKEND", "no-such-backend", 1);
	FAILS_WITH(vpoll_create(0, FD_CLOEXEC), ENODEV);

	close(pipefd[0]);
	close(pipefd[1]);
	close(epfd);
	printf("ok\n");
	return 0;
}
