/* A deliberate heap use-after-free: the checkers must reject this program, which proves
 * the flags the sanitizer tests use make a memory error fail the run. */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
	volatile char *p = malloc(16);
	p[0] = 'x';
	free((void *)p);
	printf("%c\n", p[0]);
	return 0;
}
