/* A small fork-join pool for the native host stage: rh_parallel(fn, arg, n) runs fn(arg, 0..n-1) on the calling
 * thread and the pool's workers, and returns when all n tasks are done. Several callers (serving threads, each
 * with its own context) may run jobs at once; workers take tasks from any of them. A worker has a fixed id
 * (1..workers) and callers are 0, so a context can keep one arena per id without locks. Workers never touch
 * Python. After fork() the child has no workers (pthread_atfork resets the pool). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "rh.h"

/* Bind the pthread symbols glibc 2.34 re-versioned to their original versions, so that a library built on a
 * recent build host loads on a serving host with an older glibc (the symbols exist under both versions). */
#if defined(__GLIBC__) && defined(__x86_64__)
__asm__(".symver pthread_create,pthread_create@GLIBC_2.2.5");
__asm__(".symver pthread_once,pthread_once@GLIBC_2.2.5");
#endif

typedef struct job {
  rh_task_fn fn;
  void *arg;
  int64_t ntasks, chunk;      /* tasks claimed per atomic step */
  atomic_llong next, done;
  int users;                  /* workers inside this job (under mu) */
  struct job *link;
} job;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_cv = PTHREAD_COND_INITIALIZER, done_cv = PTHREAD_COND_INITIALIZER;
static job *jobs;             /* jobs with tasks left to claim */
static int workers;           /* started */
static int sleepers;          /* workers waiting on work_cv (under mu) */
static atomic_uint posted;    /* jobs posted so far: a worker that finds none spins on it before it sleeps */
/* A request runs its stages (feed checks, op levels, id checks, the write) as back-to-back jobs some
 * microseconds apart: a worker that slept between them costs a futex wake and a context switch per stage (at
 * mixed-100's B = 2,048 a tenth of the host stage's CPU time was the kernel's scheduler). Workers spin this long
 * after their last task (a pause per poll) before they sleep (config.native_spin_us; 0: sleep at once). */
static atomic_llong spin_ns = 50000;  /* set from any thread while workers read it */
void rh_set_spin_ns(int64_t ns) { atomic_store_explicit(&spin_ns, ns < 0 ? 0 : ns, memory_order_relaxed); }
static inline int64_t spin_limit(void) { return atomic_load_explicit(&spin_ns, memory_order_relaxed); }

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}
static int wanted = 1;        /* threads per job, the caller included */
static _Thread_local int my_id;
/* Small requests run on their caller alone: waking workers for each of a request's stages costs more than it
 * saves below some tens of thousands of elements (model E, 1,000 columns, B = 32: 0.99 ms with 2 threads, 0.72 ms
 * with 1 on the build host), and serving threads then keep the cores for other requests. */
static int64_t parallel_min = 0;
static _Thread_local int64_t request_work = -1;

void rh_set_parallel_min(int64_t n) { parallel_min = n < 0 ? 0 : n; }
void rh_set_request_work(int64_t n) { request_work = n; }
static pthread_once_t once = PTHREAD_ONCE_INIT;

int rh_worker(void) { return my_id; }

/* Tasks are claimed `chunk` at a time: E's stages are ~1,000 tasks of under a microsecond each, and one contended
 * atomic add per task (the counters' cache line moving between the cores) was 8% of its host stage's CPU. */
static void run_tasks(job *j, int id) {
  for (;;) {
    int64_t t = atomic_fetch_add(&j->next, j->chunk);
    if (t >= j->ntasks) return;
    int64_t e = t + j->chunk < j->ntasks ? t + j->chunk : j->ntasks;
    for (int64_t k = t; k < e; k++) j->fn(j->arg, k, id);
    if (atomic_fetch_add(&j->done, e - t) + (e - t) == j->ntasks) {
      pthread_mutex_lock(&mu);
      pthread_cond_broadcast(&done_cv);
      pthread_mutex_unlock(&mu);
    }
  }
}

static void *worker_main(void *p) {
  my_id = (int)(intptr_t)p;
  pthread_mutex_lock(&mu);
  for (;;) {
    job *j = jobs;
    while (j && atomic_load(&j->next) >= j->ntasks) j = j->link;
    if (!j || my_id >= wanted) {
      unsigned seen = atomic_load(&posted);
      if (my_id < wanted) {
        pthread_mutex_unlock(&mu);
        int64_t t0 = rh_now_ns();
        int fresh;
        while (!(fresh = atomic_load(&posted) != seen) && rh_now_ns() - t0 < spin_limit()) cpu_relax();
        pthread_mutex_lock(&mu);
        /* jobs are posted under mu: unchanged here means none came since the scan, and the wait below
         * releases mu atomically, so the next post's broadcast reaches this worker */
        if (fresh || atomic_load(&posted) != seen) continue;
      }
      sleepers++;
      pthread_cond_wait(&work_cv, &mu);
      sleepers--;
      continue;
    }
    j->users++;
    pthread_mutex_unlock(&mu);
    run_tasks(j, my_id);
    pthread_mutex_lock(&mu);
    if (--j->users == 0) pthread_cond_broadcast(&done_cv);
  }
  return NULL;
}

static void after_fork_child(void) {
  pthread_mutex_init(&mu, NULL);
  pthread_cond_init(&work_cv, NULL);
  pthread_cond_init(&done_cv, NULL);
  jobs = NULL;
  workers = 0;  /* the threads did not survive the fork: start again on demand */
  sleepers = 0;
}

static void init_once(void) { pthread_atfork(NULL, NULL, after_fork_child); }

void rh_set_threads(int n) {
  pthread_once(&once, init_once);
  if (n < 1) n = 1;
  if (n > RH_MAXTHREADS) n = RH_MAXTHREADS;
  pthread_mutex_lock(&mu);
  wanted = n;
  while (workers < n - 1) {
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &attr, worker_main, (void *)(intptr_t)(workers + 1));
    pthread_attr_destroy(&attr);
    if (rc) break;
    workers++;
  }
  pthread_mutex_unlock(&mu);
}

int rh_parallel_active(void) {
  return wanted > 1 && workers > 0 && my_id == 0 && !(request_work >= 0 && request_work < parallel_min);
}

void rh_parallel(rh_task_fn fn, void *arg, int64_t ntasks) {
  if (ntasks <= 0) return;
  if (ntasks == 1 || !rh_parallel_active()) {
    for (int64_t t = 0; t < ntasks; t++) fn(arg, t, my_id);
    return;
  }
  job j;
  j.fn = fn;
  j.arg = arg;
  j.ntasks = ntasks;
  j.chunk = ntasks / (16 * (int64_t)wanted);  /* ~16 claims per thread: balance stays, contention goes */
  if (j.chunk < 1) j.chunk = 1;
  if (j.chunk > 32) j.chunk = 32;
  atomic_init(&j.next, 0);
  atomic_init(&j.done, 0);
  j.users = 0;
  pthread_mutex_lock(&mu);
  j.link = jobs;
  jobs = &j;
  atomic_fetch_add(&posted, 1);
  if (sleepers) pthread_cond_broadcast(&work_cv);
  pthread_mutex_unlock(&mu);
  run_tasks(&j, 0);
  /* the workers' last tasks: usually microseconds, so poll before sleeping on done_cv */
  for (int64_t t0 = rh_now_ns(); atomic_load(&j.done) < ntasks && rh_now_ns() - t0 < spin_limit();) cpu_relax();
  pthread_mutex_lock(&mu);
  job **pp = &jobs;  /* no new worker may enter it now */
  while (*pp && *pp != &j) pp = &(*pp)->link;
  if (*pp) *pp = j.link;
  while (atomic_load(&j.done) < ntasks || j.users > 0) pthread_cond_wait(&done_cv, &mu);
  pthread_mutex_unlock(&mu);
}
