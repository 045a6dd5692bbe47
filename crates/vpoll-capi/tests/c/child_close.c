/* A forked child that sets events and then vpoll_closes its inherited copy leaves the
 * parent's vpoll fd working. Prints "ok" and exits 0, or "FAIL ..." and exits 1. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
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

int main(void) {
	int fd = vpoll_create(0, FD_CLOEXEC);
	CHECK(fd >= 0);
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	CHECK(epfd >= 0);
	struct epoll_event req = {.events = EPOLLIN | EPOLLOUT};
	CHECK(epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &req) == 0);
	fflush(stdout);
	pid_t pid = fork();
	CHECK(pid >= 0);
	if (pid == 0) {
		int ok = vpoll_ctl(fd, VPOLL_CTL_ADDEVENTS, EPOLLIN) == 0 && vpoll_close(fd) == 0;
		_exit(ok ? 0 : 1);
	}
	int status;
	CHECK(waitpid(pid, &status, 0) == pid);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	struct epoll_event ev;
	CHECK(epoll_wait(epfd, &ev, 1, 10000) == 1 && ev.events == EPOLLIN);
	CHECK(vpoll_ctl(fd, VPOLL_CTL_SETEVENTS, EPOLLOUT) == 0);
	CHECK(epoll_wait(epfd, &ev, 1, 10000) == 1 && ev.events == EPOLLOUT);
	CHECK(vpoll_close(fd) == 0);
	close(epfd);
	printf("ok\n");
	return 0;
}
