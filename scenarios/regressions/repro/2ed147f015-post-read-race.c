// Fixed by 2ed147f015af ("watch_queue: Fix lack of barrier/sync/lock between post and read"):
// a post published the ring head with a plain store and pipe_read() read it plainly. x86 does
// not reorder those stores, so the only symptom here is KCSAN's: "data-race in pipe_read /
// post_one_notification". Racy: a reader blocks in read() on a queue while another thread
// updates the watched key as fast as it can. Runs RUN_SECONDS.
// uapi values as in include/uapi/linux/{watch_queue,keyctl}.h (not included: clash with glibc).
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define RUN_SECONDS 5
#define O_NOTIFICATION_PIPE O_EXCL
#define IOC_WATCH_QUEUE_SET_SIZE _IO('W', 0x60)
#define KEYCTL_JOIN_SESSION_KEYRING 1
#define KEYCTL_UPDATE 2
#define KEYCTL_WATCH_KEY 32
#define KEY_SPEC_SESSION_KEYRING -3

static long key;
static int fds[2];

static void *reader(void *arg)
{
	char buf[4096];
	long *got = arg;
	ssize_t n;

	while ((n = read(fds[0], buf, sizeof(buf))) > 0)
		*got += n;
	return NULL;
}

int main(void)
{
	pthread_t t;
	time_t end = time(NULL) + RUN_SECONDS;
	long posts = 0, got = 0;

	syscall(__NR_keyctl, KEYCTL_JOIN_SESSION_KEYRING, 0);
	key = syscall(__NR_add_key, "user", "wqh-race", "v", 1, KEY_SPEC_SESSION_KEYRING);
	if (key < 0 || pipe2(fds, O_NOTIFICATION_PIPE) < 0) {
		perror("add_key/pipe2(O_NOTIFICATION_PIPE)");
		return 1;
	}
	if (ioctl(fds[0], IOC_WATCH_QUEUE_SET_SIZE, 256) < 0 ||
	    syscall(__NR_keyctl, KEYCTL_WATCH_KEY, key, fds[0], 1) < 0) {
		perror("SET_SIZE/KEYCTL_WATCH_KEY");
		return 1;
	}
	pthread_create(&t, NULL, reader, &got);
	while (time(NULL) < end) {
		syscall(__NR_keyctl, KEYCTL_UPDATE, key, "x", 1);
		posts++;
	}
	close(fds[1]);  // EOF ends the reader once the queue is empty
	syscall(__NR_keyctl, KEYCTL_WATCH_KEY, key, fds[0], -1);
	pthread_join(t, NULL);
	printf("%ld posts, %ld bytes read\n", posts, got);
	return 0;
}
