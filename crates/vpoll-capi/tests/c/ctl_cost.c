/* The cost of vpoll_ctl in system calls: ARGV[1] ADD IN -> epoll_wait -> DEL IN cycles
 * between two marker writes (write(2) of "MARK" to fd 2), for a tracer to count.
 * Prints "ok" and exits 0 if every call succeeded. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>
#include <vpoll.h>

int main(int argc, char **argv) {
	int n = argc > 1 ? atoi(argv[1]) : 100;
	int fd = vpoll_create(0, FD_CLOEXEC);
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN};
	if (fd < 0 || ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) return 1;
	/* One cycle before the marker: first-use work (lazy state) is not counted. */
	if (vpoll_ctl(fd, VPOLL_CTL_ADDEVENTS, EPOLLIN) || epoll_wait(ep, &ev, 1, 10000) != 1 ||
	    vpoll_ctl(fd, VPOLL_CTL_DELEVENTS, EPOLLIN))
		return 1;
	if (write(2, "MARK\n", 5) != 5) return 1;
	for (int i = 0; i < n; i++) {
		if (vpoll_ctl(fd, VPOLL_CTL_ADDEVENTS, EPOLLIN) != 0) return 1;
		if (epoll_wait(ep, &ev, 1, 10000) != 1) return 1;
		if (vpoll_ctl(fd, VPOLL_CTL_DELEVENTS, EPOLLIN) != 0) return 1;
	}
	if (write(2, "MARK\n", 5) != 5) return 1;
	if (vpoll_close(fd) != 0) return 1;
	printf("ok\n");
	return 0;
}
