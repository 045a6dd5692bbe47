// vpoll.h from C++: the declarations must have C linkage to link against libvpoll.
#include <cstdio>
#include <fcntl.h>
#include <sys/epoll.h>
#include <vpoll.h>

int main() {
	int fd = vpoll_create(EPOLLIN, FD_CLOEXEC);
	if (fd < 0 || vpoll_ctl(fd, VPOLL_CTL_SETEVENTS, 0) != 0 || vpoll_close(fd) != 0) {
		std::perror("vpoll from C++");
		return 1;
	}
	std::puts("ok");
	return 0;
}
