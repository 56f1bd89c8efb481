/*
 * Linux file operations that Node's fs module does not expose and that the
 * NBD server needs: SEEK_DATA/SEEK_HOLE (block status), fallocate punch-hole
 * and zero-range (trim, write-zeroes), and block-device size/discard/zeroout;
 * glibc's mallopt, which the long-running services use to keep RSS bounded; and
 * sync_file_range + posix_fadvise, with which the change log keeps only its newest
 * bytes in the page cache (src/changelog/cache-window.ts).
 * Why our own: no maintained npm package offers SEEK_DATA/SEEK_HOLE (see
 * docs/architecture.md). Everything slow runs on libuv's thread pool.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <malloc.h>
#include <node_api.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define CHECK(call)                                                          \
  do {                                                                       \
    if ((call) != napi_ok) {                                                 \
      napi_throw_error(env, NULL, "rebound_fileops: N-API call failed");     \
      return NULL;                                                           \
    }                                                                        \
  } while (0)

static napi_value throw_errno(napi_env env, int err, const char *what) {
  napi_value msg, code, error;
  char text[160];
  snprintf(text, sizeof text, "%s: %s", what, strerror(err));
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
  napi_create_int32(env, err, &code);
  napi_create_error(env, NULL, msg, &error);
  napi_set_named_property(env, error, "errno", code);
  napi_throw(env, error);
  return NULL;
}

static int get_i64(napi_env env, napi_value v, int64_t *out) {
  return napi_get_value_int64(env, v, out) == napi_ok;
}

/* seek(fd, offset, whence): whence 3 = SEEK_DATA, 4 = SEEK_HOLE. Returns the
 * new offset, or -1 for ENXIO (no data/hole after offset). Synchronous: it
 * is a metadata lookup that does not touch file data. */
static napi_value js_seek(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], result;
  int64_t fd, off, whence;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3 || !get_i64(env, argv[0], &fd) || !get_i64(env, argv[1], &off) ||
      !get_i64(env, argv[2], &whence)) {
    napi_throw_type_error(env, NULL, "seek(fd, offset, whence) takes three integers");
    return NULL;
  }
  off_t r = lseek((int)fd, (off_t)off, (int)whence);
  if (r < 0) {
    if (errno == ENXIO) r = -1;
    else return throw_errno(env, errno, "lseek");
  }
  CHECK(napi_create_int64(env, (int64_t)r, &result));
  return result;
}

/* deviceSize(fd): size in bytes of a block device (BLKGETSIZE64). */
static napi_value js_device_size(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  int64_t fd;
  uint64_t size = 0;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1 || !get_i64(env, argv[0], &fd)) {
    napi_throw_type_error(env, NULL, "deviceSize(fd) takes an integer");
    return NULL;
  }
  if (ioctl((int)fd, BLKGETSIZE64, &size) < 0) return throw_errno(env, errno, "BLKGETSIZE64");
  CHECK(napi_create_int64(env, (int64_t)size, &result));
  return result;
}

/* Asynchronous space operations: fallocate modes and block-device ioctls. */
enum op_kind {
  OP_PUNCH = 1, OP_ZERO_RANGE = 2, OP_BLK_DISCARD = 3, OP_BLK_ZEROOUT = 4,
  /* Page-cache advice: start writeback of a range; write it back, wait, and drop it. */
  OP_WRITEBACK = 5, OP_DROP_CACHE = 6
};

typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  int fd, kind, err;
  int64_t off, len;
} space_op;

static void space_execute(napi_env env, void *data) {
  (void)env;
  space_op *op = data;
  int r = 0;
  uint64_t range[2] = {(uint64_t)op->off, (uint64_t)op->len};
  switch (op->kind) {
    case OP_PUNCH:
      r = fallocate(op->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, op->off, op->len);
      break;
    case OP_ZERO_RANGE:
      r = fallocate(op->fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, op->off, op->len);
      break;
    case OP_BLK_DISCARD: r = ioctl(op->fd, BLKDISCARD, range); break;
    case OP_BLK_ZEROOUT: r = ioctl(op->fd, BLKZEROOUT, range); break;
    case OP_WRITEBACK: r = sync_file_range(op->fd, op->off, op->len, SYNC_FILE_RANGE_WRITE); break;
    case OP_DROP_CACHE:
      /* DONTNEED drops clean pages only: write the range back first and wait for it. */
      r = sync_file_range(op->fd, op->off, op->len,
                          SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
      if (r == 0) {
        int e = posix_fadvise(op->fd, op->off, op->len, POSIX_FADV_DONTNEED);
        if (e) { r = -1; errno = e; }
      }
      break;
    default: r = -1; errno = EINVAL;
  }
  op->err = r < 0 ? errno : 0;
}

static void space_complete(napi_env env, napi_status status, void *data) {
  space_op *op = data;
  napi_value value;
  if (status == napi_ok && op->err == 0) {
    napi_get_undefined(env, &value);
    napi_resolve_deferred(env, op->deferred, value);
  } else {
    napi_value msg, code;
    int err = op->err ? op->err : EIO;
    char text[160];
    snprintf(text, sizeof text, "space operation %d: %s", op->kind, strerror(err));
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &value);
    napi_create_int32(env, err, &code);
    napi_set_named_property(env, value, "errno", code);
    napi_reject_deferred(env, op->deferred, value);
  }
  napi_delete_async_work(env, op->work);
  free(op);
}

/* space(fd, kind, offset, length) -> Promise<void> */
static napi_value js_space(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4], promise, name;
  int64_t fd, kind, off, len;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 4 || !get_i64(env, argv[0], &fd) || !get_i64(env, argv[1], &kind) ||
      !get_i64(env, argv[2], &off) || !get_i64(env, argv[3], &len)) {
    napi_throw_type_error(env, NULL, "space(fd, kind, offset, length) takes four integers");
    return NULL;
  }
  space_op *op = calloc(1, sizeof *op);
  if (!op) return throw_errno(env, ENOMEM, "calloc");
  op->fd = (int)fd; op->kind = (int)kind; op->off = off; op->len = len;
  CHECK(napi_create_promise(env, &op->deferred, &promise));
  CHECK(napi_create_string_utf8(env, "rebound_space", NAPI_AUTO_LENGTH, &name));
  CHECK(napi_create_async_work(env, NULL, name, space_execute, space_complete, op, &op->work));
  CHECK(napi_queue_async_work(env, op->work));
  return promise;
}

/* tuneAllocator(mmapThreshold, arenaMax): glibc raises its mmap threshold after
 * the first large free, so later payload buffers come from the heap and what GC
 * frees stays in the process; a fixed threshold gives each large buffer its own
 * mapping, returned to the kernel when freed. Fewer arenas: the thread pool's
 * threads would otherwise each keep one. Returns whether glibc took both. */
static napi_value js_tune_allocator(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], result;
  int64_t threshold, arenas;
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 2 || !get_i64(env, argv[0], &threshold) || !get_i64(env, argv[1], &arenas)) {
    napi_throw_type_error(env, NULL, "tuneAllocator(mmapThreshold, arenaMax) takes two integers");
    return NULL;
  }
  int ok = mallopt(M_MMAP_THRESHOLD, (int)threshold) == 1 && mallopt(M_ARENA_MAX, (int)arenas) == 1;
  CHECK(napi_get_boolean(env, ok, &result));
  return result;
}

/* trimAllocator(): malloc_trim(0) gives back to the kernel every whole free page
 * inside the heap, not only its top. Buffers below the mmap threshold (TLS records,
 * 4 KiB frames) come from the heap; once GC frees them, the pages between live
 * chunks stay resident otherwise. Returns whether any memory was released. */
static napi_value js_trim_allocator(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result;
  CHECK(napi_get_boolean(env, malloc_trim(0) == 1, &result));
  return result;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
    {"seek", NULL, js_seek, NULL, NULL, NULL, napi_default, NULL},
    {"deviceSize", NULL, js_device_size, NULL, NULL, NULL, napi_default, NULL},
    {"space", NULL, js_space, NULL, NULL, NULL, napi_default, NULL},
    {"tuneAllocator", NULL, js_tune_allocator, NULL, NULL, NULL, napi_default, NULL},
    {"trimAllocator", NULL, js_trim_allocator, NULL, NULL, NULL, napi_default, NULL},
  };
  CHECK(napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
