/* A vpoll fd created without FD_CLOEXEC survives exec, and the new program image can
 * still control it (as with libvpoll's kernel and device modes).
 * Parent: ./exec_child; child (after exec): ./exec_child FD. Prints "ok" on success. */
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

int main(int argc, char *argv[]) {
	if (argc == 2) {
		int fd = atoi(argv[1]);
		if (vpoll_ctl(fd, VPOLL_CTL_ADDEVENTS, EPOLLIN | EPOLLPRI) < 0) {
			printf("FAIL: vpoll_ctl after exec: %s\n", strerror(errno));
			return 1;
		}
		return 0;
	}
	int fd = vpoll_create(0, 0);
	if (fd < 0) {
		printf("FAIL: vpoll_create: %s\n", strerror(errno));
		return 1;
	}
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event req = {.events = EPOLLIN | EPOLLPRI | EPOLLOUT};
	epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &req);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		char num[16];
		snprintf(num, sizeof num, "%d", fd);
		execl("/proc/self/exe", argv[0], num, (char *)NULL);
		_exit(127);
	}
	int status;
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		printf("FAIL: exec'd child status %#x\n", status);
		return 1;
	}
	struct epoll_event ev;
	int n = epoll_wait(epfd, &ev, 1, 10000);
	if (n != 1 || ev.events != (EPOLLIN | EPOLLPRI)) {
		printf("FAIL: epoll after exec'd child: n=%d events=%x\n", n, n == 1 ? ev.events : 0);
		return 1;
	}
	vpoll_close(fd);
	printf("ok\n");
	return 0;
}
