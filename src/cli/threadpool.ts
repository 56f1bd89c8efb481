// Imported first by the binary: libuv's threadpool (which runs every disk read,
// write and fsync) is sized once, on first use, from this variable. The default of
// 4 leaves the disk and log writes of several NBD connections waiting in line.
process.env.UV_THREADPOOL_SIZE ??= '16';
