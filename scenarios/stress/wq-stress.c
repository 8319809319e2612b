// wq-stress: race stress of the notification queue for `wqh stress` (issue 17).
//
// Seven racing pairs, two threads each, all running at once for --seconds:
//   read        posts (KEYCTL_UPDATE)       against reads of the same queue
//   set-size    posts                       against queues watched, then sized (SET_SIZE), closed
//   set-filter  posts (update, setperm)     against SET_FILTER replacing and removing the filter
//   close       posts                       against queues closed read end or write end first
//   unwatch     posts                       against watches added and removed (watch_id -1)
//   gc          posts to keys               against those keys unlinked or invalidated (key gc)
//   clear       keys added to a keyring     against KEYCTL_CLEAR of that keyring
//
// Each thread draws its operations and their arguments from its own generator, seeded from
// --seed and the thread's place: the same seed gives every thread the same sequence (the
// interleaving is the scheduler's). --plan N prints each thread's first N operations and exits
// without a system call. The program prints each pair's operation counts every PROGRESS_S
// seconds and at the end, as text and as one JSON line, so a run that did nothing shows.
//
// Exit: 0 ran for --seconds; 1 setup failed (e.g. no CONFIG_WATCH_QUEUE: ENOPKG); 2 usage.
// uapi values as in include/uapi/linux/{watch_queue,keyctl}.h (not included: clash with glibc).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define O_NOTIFICATION_PIPE O_EXCL
#define IOC_WATCH_QUEUE_SET_SIZE _IO('W', 0x60)
#define IOC_WATCH_QUEUE_SET_FILTER _IO('W', 0x61)
#define WATCH_TYPE_KEY_NOTIFY 1
#define WATCH_INFO_ID 0x0000ff00
#define KEYCTL_JOIN_SESSION_KEYRING 1
#define KEYCTL_UPDATE 2
#define KEYCTL_SETPERM 5
#define KEYCTL_CLEAR 7
#define KEYCTL_UNLINK 9
#define KEYCTL_INVALIDATE 21
#define KEYCTL_WATCH_KEY 32
#define KEY_SPEC_SESSION_KEYRING -3
#define KEY_POS_ALL 0x3f000000

#define PROGRESS_S 10
#define MAX_OPS 5
#define SLOTS 8
#define RING_KEYS 16

struct type_filter {
	uint32_t type, info_filter, info_mask, subtype_filter[8];
};

struct filter {
	uint32_t nr_filters, reserved;
	struct type_filter filters[4];
};

struct pair;
typedef int (*op_fn)(struct pair *p, uint32_t arg);

struct op {
	const char *name;
	op_fn fn;
};

struct role {
	const char *name;
	const struct op *ops;
	int nops;
};

struct pair {
	const char *name;
	struct role role[2];
	long key;                /* the watched key, or keyring (gc, clear) */
	int q[2];                /* the pair's long-lived queue, or -1 */
	_Atomic long slot[SLOTS]; /* gc: the keys in flight */
	_Atomic unsigned long ok[2][MAX_OPS], failed[2][MAX_OPS];
};

static atomic_int stop;

static long keyctl(long cmd, long a, long b, long c)
{
	return syscall(__NR_keyctl, cmd, a, b, c, 0L);
}

static long add_key(const char *type, const char *desc, const void *data, size_t len, long ring)
{
	return syscall(__NR_add_key, type, desc, data, len, ring);
}

/* splitmix64: small, and good enough to choose operations */
static uint64_t next(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static int ret(long r)
{
	return r < 0 ? -1 : 0;
}

static int new_queue(int fds[2], int size)
{
	if (pipe2(fds, O_NOTIFICATION_PIPE | O_NONBLOCK) < 0)
		return -1;
	if (size && ioctl(fds[0], IOC_WATCH_QUEUE_SET_SIZE, size) < 0) {
		close(fds[0]);
		close(fds[1]);
		return -1;
	}
	return 0;
}

static void close_both(int fds[2], int write_first)
{
	close(fds[write_first ? 1 : 0]);
	close(fds[write_first ? 0 : 1]);
}

/* --- operations: ARG is the thread's draw for this call; no other randomness --- */

static int op_update(struct pair *p, uint32_t arg)
{
	char data[32];

	memset(data, 'a' + arg % 26, sizeof(data));
	return ret(keyctl(KEYCTL_UPDATE, p->key, (long)data, 1 + arg % sizeof(data)));
}

static int op_setperm(struct pair *p, uint32_t arg)
{
	return ret(keyctl(KEYCTL_SETPERM, p->key, KEY_POS_ALL | (arg & 0x003f3f3f), 0));
}

static int op_read(struct pair *p, uint32_t arg)
{
	static const size_t sizes[] = { 4096, 128, 16, 8, 7 };
	char buf[4096];

	return ret(read(p->q[0], buf, sizes[arg % 5]));
}

static int op_poll_read(struct pair *p, uint32_t arg)
{
	struct pollfd pfd = { .fd = p->q[0], .events = POLLIN };
	char buf[4096];

	if (poll(&pfd, 1, 1 + arg % 4) <= 0)
		return -1;
	return ret(read(p->q[0], buf, sizeof(buf)));
}

static int op_fionread(struct pair *p, uint32_t arg)
{
	int n;

	(void)arg;
	return ret(ioctl(p->q[0], FIONREAD, &n));
}

static int op_drain(struct pair *p, uint32_t arg)
{
	char buf[4096];
	int n = 0;

	while (n < 1 + (int)(arg % 8) && read(p->q[0], buf, sizeof(buf)) > 0)
		n++;
	return n ? 0 : -1;
}

/* A queue watched before (mostly) or after SET_SIZE of 1..512 notes, sized twice at times
 * (EBUSY), closed either end first: posts land in a ring that SET_SIZE replaces. */
static int op_size_cycle(struct pair *p, uint32_t arg)
{
	int fds[2], watch_first = (arg & 3) != 0, r;

	if (new_queue(fds, 0) < 0)
		return -1;
	if (watch_first)
		keyctl(KEYCTL_WATCH_KEY, p->key, fds[0], 1);
	r = ioctl(fds[arg & 16 ? 1 : 0], IOC_WATCH_QUEUE_SET_SIZE, 1 + (arg >> 8) % 512);
	if (!watch_first)
		keyctl(KEYCTL_WATCH_KEY, p->key, fds[0], 1);
	if (arg & 4)
		ioctl(fds[0], IOC_WATCH_QUEUE_SET_SIZE, 1);
	close_both(fds, arg & 8);
	return ret(r);
}

static int op_set_filter(struct pair *p, uint32_t arg)
{
	struct filter f;
	uint32_t i;

	memset(&f, 0, sizeof(f));
	f.nr_filters = 1 + arg % 4;
	for (i = 0; i < f.nr_filters; i++) {
		/* now and then (never the first) a type no source posts */
		int unknown = i > 0 && ((arg >> (8 + i)) & 1);

		f.filters[i].type = unknown ? 1000 : WATCH_TYPE_KEY_NOTIFY;
		f.filters[i].subtype_filter[0] = (arg >> 12) & 0xff ? (arg >> 12) & 0xff : 0xff;
		if ((arg >> (20 + i)) & 1) { /* only watch id 1 */
			f.filters[i].info_mask = WATCH_INFO_ID;
			f.filters[i].info_filter = 1 << 8;
		}
	}
	return ret(ioctl(p->q[arg & 2 ? 1 : 0], IOC_WATCH_QUEUE_SET_FILTER, &f));
}

static int op_remove_filter(struct pair *p, uint32_t arg)
{
	return ret(ioctl(p->q[arg & 1], IOC_WATCH_QUEUE_SET_FILTER, NULL));
}

/* A sized, watched queue closed read end or write end first, read from in between at times:
 * the last close frees the pipe while posts may be on their way to it. */
static int op_close_cycle(struct pair *p, uint32_t arg)
{
	int fds[2];
	char buf[64];

	if (new_queue(fds, 1 + arg % 4) < 0)
		return -1;
	if (keyctl(KEYCTL_WATCH_KEY, p->key, fds[arg & 64 ? 1 : 0], 1) < 0) {
		close_both(fds, 0);
		return -1;
	}
	if (arg & 32)
		(void)!read(fds[0], buf, sizeof(buf));
	close_both(fds, arg & 8);
	return 0;
}

static int op_watch(struct pair *p, uint32_t arg)
{
	return ret(keyctl(KEYCTL_WATCH_KEY, p->key, p->q[0], arg % 256));
}

static int op_unwatch(struct pair *p, uint32_t arg)
{
	(void)arg;
	return ret(keyctl(KEYCTL_WATCH_KEY, p->key, p->q[0], -1));
}

/* gc: keys "wqh-gc-<slot>" in the pair's keyring, watched, then unlinked (their last link)
 * or invalidated: the key garbage collector destroys them and posts the removal records. */
static int op_gc_create(struct pair *p, uint32_t arg)
{
	char desc[32];
	long k;

	snprintf(desc, sizeof(desc), "wqh-gc-%u", arg % SLOTS);
	k = add_key("user", desc, "v", 1, p->key);
	if (k < 0)
		return -1;
	atomic_store(&p->slot[arg % SLOTS], k);
	return 0;
}

static int op_gc_watch(struct pair *p, uint32_t arg)
{
	return ret(keyctl(KEYCTL_WATCH_KEY, atomic_load(&p->slot[arg % SLOTS]), p->q[0], 2));
}

static int op_gc_unlink(struct pair *p, uint32_t arg)
{
	return ret(keyctl(KEYCTL_UNLINK, atomic_load(&p->slot[arg % SLOTS]), p->key, 0));
}

static int op_gc_invalidate(struct pair *p, uint32_t arg)
{
	return ret(keyctl(KEYCTL_INVALIDATE, atomic_load(&p->slot[arg % SLOTS]), 0, 0));
}

static int op_gc_update(struct pair *p, uint32_t arg)
{
	return ret(keyctl(KEYCTL_UPDATE, atomic_load(&p->slot[arg % SLOTS]), (long)"x", 1));
}

static int op_gc_setperm(struct pair *p, uint32_t arg)
{
	return ret(keyctl(KEYCTL_SETPERM, atomic_load(&p->slot[arg % SLOTS]),
			  KEY_POS_ALL | (arg & 0x003f3f3f), 0));
}

static int op_ring_add(struct pair *p, uint32_t arg)
{
	char desc[32];

	snprintf(desc, sizeof(desc), "wqh-clear-%u", arg % RING_KEYS);
	return ret(add_key("user", desc, "v", 1, p->key));
}

static int op_clear(struct pair *p, uint32_t arg)
{
	(void)arg;
	return ret(keyctl(KEYCTL_CLEAR, p->key, 0, 0));
}

#define OPS(...) ((const struct op[]){ __VA_ARGS__ })
#define ROLE(n, ...) { n, OPS(__VA_ARGS__), sizeof(OPS(__VA_ARGS__)) / sizeof(struct op) }

#define UPDATE { "update", op_update }
#define DRAIN { "drain", op_drain }

#define PAIR(n, a, b) { .name = n, .role = { a, b } }

static struct pair pairs[] = {
	PAIR("read", ROLE("poster", UPDATE),
	     ROLE("reader", { "read", op_read }, { "poll-read", op_poll_read },
		  { "fionread", op_fionread })),
	PAIR("set-size", ROLE("poster", UPDATE), ROLE("sizer", { "cycle", op_size_cycle })),
	PAIR("set-filter", ROLE("poster", UPDATE, { "setperm", op_setperm }),
	     ROLE("filterer", { "set", op_set_filter }, { "remove", op_remove_filter }, DRAIN)),
	PAIR("close", ROLE("poster", UPDATE), ROLE("closer", { "cycle", op_close_cycle })),
	PAIR("unwatch", ROLE("poster", UPDATE),
	     ROLE("watcher", { "watch", op_watch }, { "unwatch", op_unwatch }, DRAIN)),
	PAIR("gc", ROLE("poster", { "update", op_gc_update }, { "setperm", op_gc_setperm }),
	     ROLE("collector", { "create", op_gc_create }, { "watch", op_gc_watch },
		  { "unlink", op_gc_unlink }, { "invalidate", op_gc_invalidate }, DRAIN)),
	PAIR("clear", ROLE("poster", { "add", op_ring_add }),
	     ROLE("clearer", { "clear", op_clear }, DRAIN)),
};

#define NPAIRS (int)(sizeof(pairs) / sizeof(pairs[0]))

struct thread {
	struct pair *pair;
	int role;
	uint64_t rng;
};

static uint64_t seed_of(uint64_t seed, int pair, int role)
{
	uint64_t s = seed ^ (0x632be59bd9b4e019ULL * (uint64_t)(2 * pair + role + 1));

	return next(&s);
}

static void draw(struct thread *t, int *op, uint32_t *arg)
{
	*op = (int)(next(&t->rng) % (uint64_t)t->pair->role[t->role].nops);
	*arg = (uint32_t)next(&t->rng);
}

static void *worker(void *v)
{
	struct thread *t = v;
	const struct role *r = &t->pair->role[t->role];
	uint32_t arg;
	int op;

	while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
		draw(t, &op, &arg);
		if (r->ops[op].fn(t->pair, arg) == 0)
			atomic_fetch_add_explicit(&t->pair->ok[t->role][op], 1, memory_order_relaxed);
		else
			atomic_fetch_add_explicit(&t->pair->failed[t->role][op], 1, memory_order_relaxed);
	}
	return NULL;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void report(uint64_t seed, double seconds, int final)
{
	int i, r, o;

	for (i = 0; i < NPAIRS; i++) {
		printf("%-10s", pairs[i].name);
		for (r = 0; r < 2; r++) {
			printf(" %s:", pairs[i].role[r].name);
			for (o = 0; o < pairs[i].role[r].nops; o++)
				printf(" %s %lu (%lu failed)", pairs[i].role[r].ops[o].name,
				       atomic_load(&pairs[i].ok[r][o]), atomic_load(&pairs[i].failed[r][o]));
		}
		printf("\n");
	}
	printf("{\"wq_stress\": 1, \"seed\": %" PRIu64 ", \"seconds\": %.3f, \"final\": %s, \"pairs\": {",
	       seed, seconds, final ? "true" : "false");
	for (i = 0; i < NPAIRS; i++) {
		printf("%s\"%s\": {", i ? ", " : "", pairs[i].name);
		for (r = 0; r < 2; r++)
			for (o = 0; o < pairs[i].role[r].nops; o++)
				printf("%s\"%s.%s\": [%lu, %lu]", r || o ? ", " : "", pairs[i].role[r].name,
				       pairs[i].role[r].ops[o].name, atomic_load(&pairs[i].ok[r][o]),
				       atomic_load(&pairs[i].failed[r][o]));
		printf("}");
	}
	printf("}}\n");
	fflush(stdout);
}

static int fail(const char *what)
{
	fprintf(stderr, "wq-stress: %s: %s%s\n", what, strerror(errno),
		errno == ENOPKG ? " (the kernel has no CONFIG_WATCH_QUEUE)" : "");
	return 1;
}

static int setup(void)
{
	struct rlimit rl = { 1 << 16, 1 << 16 };
	char desc[32];
	int i;

	/* Watches count against RLIMIT_NOFILE and are released after an RCU grace period:
	 * queues made and closed at this rate need headroom (root may raise it). */
	setrlimit(RLIMIT_NOFILE, &rl);
	if (keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0, 0, 0) < 0)
		return fail("KEYCTL_JOIN_SESSION_KEYRING");
	for (i = 0; i < NPAIRS; i++) {
		struct pair *p = &pairs[i];
		int ring = !strcmp(p->name, "gc") || !strcmp(p->name, "clear");

		snprintf(desc, sizeof(desc), "wqh-stress-%s", p->name);
		p->key = ring ? add_key("keyring", desc, NULL, 0, KEY_SPEC_SESSION_KEYRING)
			      : add_key("user", desc, "v", 1, KEY_SPEC_SESSION_KEYRING);
		if (p->key < 0)
			return fail("add_key");
		p->q[0] = p->q[1] = -1;
		if (!strcmp(p->name, "set-size") || !strcmp(p->name, "close"))
			continue; /* these make their own queues */
		if (new_queue(p->q, 256) < 0)
			return fail("pipe2(O_NOTIFICATION_PIPE) + SET_SIZE");
		if (strcmp(p->name, "unwatch") && keyctl(KEYCTL_WATCH_KEY, p->key, p->q[0], 1) < 0)
			return fail("KEYCTL_WATCH_KEY");
	}
	return 0;
}

static int usage(const char *why)
{
	fprintf(stderr, "wq-stress: %s\nusage: wq-stress --seed S --seconds T [--plan N]\n", why);
	return 2;
}

static void plan(uint64_t seed, long n)
{
	struct thread t;
	uint32_t arg;
	int i, r, op;
	long k;

	for (i = 0; i < NPAIRS; i++)
		for (r = 0; r < 2; r++) {
			t = (struct thread){ &pairs[i], r, seed_of(seed, i, r) };
			printf("%s %s:", pairs[i].name, pairs[i].role[r].name);
			for (k = 0; k < n; k++) {
				draw(&t, &op, &arg);
				printf(" %s(%" PRIu32 ")", pairs[i].role[r].ops[op].name, arg);
			}
			printf("\n");
		}
}

int main(int argc, char **argv)
{
	struct thread threads[2 * NPAIRS];
	pthread_t tids[2 * NPAIRS];
	int have_seed = 0, i;
	double seconds = 0, start, end, tick;
	uint64_t seed = 0;
	long plan_n = -1;
	char *e;

	for (i = 1; i < argc; i++) {
		if (i + 1 >= argc)
			return usage("every option takes a value");
		errno = 0;
		if (!strcmp(argv[i], "--seed")) {
			seed = strtoull(argv[++i], &e, 10);
			if (errno || *e || !*argv[i] || argv[i][0] == '-')
				return usage("--seed: a whole number from 0 to 2^64-1");
			have_seed = 1;
		} else if (!strcmp(argv[i], "--seconds")) {
			seconds = strtod(argv[++i], &e);
			if (errno || *e || !(seconds > 0))
				return usage("--seconds: a number of seconds above 0");
		} else if (!strcmp(argv[i], "--plan")) {
			plan_n = strtol(argv[++i], &e, 10);
			if (errno || *e || plan_n < 1)
				return usage("--plan: a whole number of operations, at least 1");
		} else {
			return usage("unknown option");
		}
	}
	if (!have_seed)
		return usage("--seed is required");
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (plan_n > 0) {
		plan(seed, plan_n);
		return 0;
	}
	if (!(seconds > 0))
		return usage("--seconds is required");
	if (setup())
		return 1;
	printf("wq-stress: seed %" PRIu64 ", %.3f s, %d pairs, %d threads\n", seed, seconds, NPAIRS,
	       2 * NPAIRS);
	for (i = 0; i < 2 * NPAIRS; i++) {
		threads[i] = (struct thread){ &pairs[i / 2], i % 2, seed_of(seed, i / 2, i % 2) };
		if ((errno = pthread_create(&tids[i], NULL, worker, &threads[i])) != 0) {
			atomic_store(&stop, 1);
			while (i--)
				pthread_join(tids[i], NULL);
			return fail("pthread_create");
		}
	}
	start = now();
	end = start + seconds;
	tick = start + PROGRESS_S;
	while (now() < end) {
		double left = (tick < end ? tick : end) - now();
		struct timespec ts = { (time_t)left, (long)((left - (time_t)left) * 1e9) };

		if (left > 0)
			nanosleep(&ts, NULL);
		if (now() >= tick && now() < end) {
			report(seed, now() - start, 0);
			tick += PROGRESS_S;
		}
	}
	atomic_store(&stop, 1);
	for (i = 0; i < 2 * NPAIRS; i++)
		pthread_join(tids[i], NULL);
	report(seed, now() - start, 1);
	return 0;
}
