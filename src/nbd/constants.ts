// Numbers from the NBD protocol specification (doc/proto.md of the reference
// implementation). Only what Rebound speaks is listed; see docs/protocol.md.

export const NBDMAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
export const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
export const OPTION_REPLY_MAGIC = 0x3e889045565a9n;
export const REQUEST_MAGIC = 0x25609513;
export const SIMPLE_REPLY_MAGIC = 0x67446698;
export const STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// Handshake flags (server) and client flags.
export const FLAG_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_NO_ZEROES = 1 << 1;
export const FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const FLAG_C_NO_ZEROES = 1 << 1;

// Options.
export const OPT = {
  EXPORT_NAME: 1,
  ABORT: 2,
  LIST: 3,
  STARTTLS: 5,
  INFO: 6,
  GO: 7,
  STRUCTURED_REPLY: 8,
  LIST_META_CONTEXT: 9,
  SET_META_CONTEXT: 10,
  EXTENDED_HEADERS: 11,
} as const;

// Option reply types.
const ERR = 2 ** 31;
export const REP = {
  ACK: 1,
  SERVER: 2,
  INFO: 3,
  META_CONTEXT: 4,
  ERR_UNSUP: ERR + 1,
  ERR_POLICY: ERR + 2,
  ERR_INVALID: ERR + 3,
  ERR_PLATFORM: ERR + 4,
  ERR_TLS_REQD: ERR + 5,
  ERR_UNKNOWN: ERR + 6,
  ERR_SHUTDOWN: ERR + 7,
  ERR_BLOCK_SIZE_REQD: ERR + 8,
  ERR_TOO_BIG: ERR + 9,
} as const;

export const INFO = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

// Transmission flags.
export const TF = {
  HAS_FLAGS: 1 << 0,
  READ_ONLY: 1 << 1,
  SEND_FLUSH: 1 << 2,
  SEND_FUA: 1 << 3,
  ROTATIONAL: 1 << 4,
  SEND_TRIM: 1 << 5,
  SEND_WRITE_ZEROES: 1 << 6,
  SEND_DF: 1 << 7,
  CAN_MULTI_CONN: 1 << 8,
  SEND_RESIZE: 1 << 9,
  SEND_CACHE: 1 << 10,
  SEND_FAST_ZERO: 1 << 11,
} as const;

// Commands and command flags.
export const CMD = {
  READ: 0,
  WRITE: 1,
  DISC: 2,
  FLUSH: 3,
  TRIM: 4,
  CACHE: 5,
  WRITE_ZEROES: 6,
  BLOCK_STATUS: 7,
} as const;

export const CMD_FLAG = {
  FUA: 1 << 0,
  NO_HOLE: 1 << 1,
  DF: 1 << 2,
  REQ_ONE: 1 << 3,
  FAST_ZERO: 1 << 4,
} as const;

// Structured reply flags and chunk types.
export const REPLY_FLAG_DONE = 1;
export const REPLY_TYPE = {
  NONE: 0,
  OFFSET_DATA: 1,
  OFFSET_HOLE: 2,
  BLOCK_STATUS: 5,
  ERROR: 2 ** 15 + 1,
  ERROR_OFFSET: 2 ** 15 + 2,
} as const;

// Error values (NBD's own numbering, which matches Linux errno).
export const NBD_ERR = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

// base:allocation states.
export const STATE_HOLE = 1;
export const STATE_ZERO = 2;

export const BASE_ALLOCATION = 'base:allocation';

/** Largest payload we accept or send in one request; advertised in NBD_INFO_BLOCK_SIZE. */
export const MAX_PAYLOAD = 32 * 1024 * 1024;
export const PREFERRED_BLOCK = 4096;
/** Option data larger than this is treated as malicious and closes the connection. */
export const MAX_OPTION_LENGTH = 64 * 1024;
/** Strings (export names, queries) longer than this are invalid per the spec. */
export const MAX_STRING = 4096;

export const REQUEST_HEADER_SIZE = 28;
