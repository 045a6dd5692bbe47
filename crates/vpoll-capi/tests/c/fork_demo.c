/* libvpoll's reference program (vpoll(3) EXAMPLE) with the interval as argv[1] in ms
 * instead of 3 s (epoll_wait timeout: a third of it, as 1 s is of 3 s).
 * The child sets IN, IN, OUT, HUP one interval apart through the inherited fd; the parent
 * prints "timeout" or "GOT event %x" for each epoll_wait and DELs what it got.
 * On a kernel with vpoll support the GOT lines are 1, 1, 4, 10. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <vpoll.h>

static void sleep_ms(long ms) {
	struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

int main(int argc, char *argv[]) {
	long interval = argc > 1 ? atol(argv[1]) : 3000;
	if (interval < 3) {
		fprintf(stderr, "interval must be at least 3 ms\n");
		return 2;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	int vpollfd = vpoll_create(0, FD_CLOEXEC);
	if (vpollfd < 0) {
		perror("vpoll_create");
		return 1;
	}
	int epfd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event reqevents = {EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLOUT | EPOLLHUP | EPOLLPRI};
	if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, vpollfd, &reqevents) < 0) {
		perror("epoll");
		return 1;
	}
	pid_t pid = fork();
	switch (pid) {
	case 0:
		sleep_ms(interval);
		vpoll_ctl(vpollfd, VPOLL_CTL_ADDEVENTS, EPOLLIN);
		sleep_ms(interval);
		vpoll_ctl(vpollfd, VPOLL_CTL_ADDEVENTS, EPOLLIN);
		sleep_ms(interval);
		vpoll_ctl(vpollfd, VPOLL_CTL_ADDEVENTS, EPOLLOUT);
		sleep_ms(interval);
		vpoll_ctl(vpollfd, VPOLL_CTL_ADDEVENTS, EPOLLHUP);
		exit(0);
	case -1:
		perror("fork");
		return 1;
	default: {
		/* Safety net for the test suite: the reference loops until HUP. */
		int rounds = 0;
		while (1) {
			struct epoll_event ev;
			int n = epoll_wait(epfd, &ev, 1, interval / 3);
			if (n < 0) {
				perror("epoll_wait");
				return 1;
			}
			if (n > 0) {
				printf("GOT event %x\n", ev.events);
				if (vpoll_ctl(vpollfd, VPOLL_CTL_DELEVENTS, ev.events) < 0) {
					/* The reference ignores this result. A backend that cannot clear
					 * a hang-up (the emulated one) refuses DEL HUP; anything else is a
					 * failure, and a missed DEL would show as a repeated GOT line. */
					perror("vpoll_ctl DEL");
					if (!(ev.events & EPOLLHUP))
						return 1;
				}
				if (ev.events & EPOLLHUP)
					break;
			} else {
				printf("timeout\n");
			}
			if (++rounds > 40) {
				fprintf(stderr, "no EPOLLHUP after %d waits\n", rounds);
				kill(pid, SIGKILL);
				waitpid(pid, NULL, 0);
				return 1;
			}
		}
		int status;
		if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
			fprintf(stderr, "child failed (status %#x)\n", status);
			return 1;
		}
	}
	}
	if (vpoll_close(vpollfd) < 0) {
		perror("vpoll_close");
		return 1;
	}
	close(epfd);
	return 0;
}
