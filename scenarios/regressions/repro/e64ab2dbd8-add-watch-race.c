// Fixed by e64ab2dbd882 ("watch_queue: Fix missing locking in add_watch_to_object()"), syzbot
// 03d7b43290037d1f87ca: watches were added to a key's list without the list lock, racing with
// another queue's teardown removing its watches from the same list; a watch of a freed queue
// could stay on the key. Expected with KASAN: "use-after-free Read in __post_watch_notification".
// Racy: two threads create, watch and close queues on one key while a third updates it.
// Runs RUN_SECONDS. uapi values as in include/uapi/linux/{watch_queue,keyctl}.h.
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
static volatile int stop;

static void *updater(void *arg)
{
	(void)arg;
	while (!stop)
		syscall(__NR_keyctl, KEYCTL_UPDATE, key, "x", 1);
	return NULL;
}

static void *watcher(void *arg)
{
	time_t end = *(time_t *)arg;
	int fds[2];

	while (time(NULL) < end) {
		if (pipe2(fds, O_NOTIFICATION_PIPE) < 0)
			break;
		ioctl(fds[0], IOC_WATCH_QUEUE_SET_SIZE, 1);
		syscall(__NR_keyctl, KEYCTL_WATCH_KEY, key, fds[0], 2);
		close(fds[1]);
		close(fds[0]);
	}
	return NULL;
}

int main(void)
{
	pthread_t t, t2;
	time_t end = time(NULL) + RUN_SECONDS;
	long rounds = 0;
	int fds[2];

	syscall(__NR_keyctl, KEYCTL_JOIN_SESSION_KEYRING, 0);
	key = syscall(__NR_add_key, "user", "wqh-race", "v", 1, KEY_SPEC_SESSION_KEYRING);
	if (key < 0) {
		perror("add_key");
		return 1;
	}
	pthread_create(&t, NULL, updater, NULL);
	pthread_create(&t2, NULL, watcher, &end);
	while (time(NULL) < end) {
		if (pipe2(fds, O_NOTIFICATION_PIPE) < 0) {
			perror("pipe2(O_NOTIFICATION_PIPE)");
			return 1;
		}
		ioctl(fds[0], IOC_WATCH_QUEUE_SET_SIZE, 1);
		syscall(__NR_keyctl, KEYCTL_WATCH_KEY, key, fds[0], 1);
		close(fds[1]);
		close(fds[0]);
		rounds++;
	}
	stop = 1;
	pthread_join(t, NULL);
	pthread_join(t2, NULL);
	printf("%ld rounds\n", rounds);
	return 0;
}
