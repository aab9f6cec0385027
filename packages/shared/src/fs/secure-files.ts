// Owns writing files so a crash never leaves a half-written one, and secrets
// are 0600 from the first byte (never chmod after the fact).
import { openSync, writeSync, fsyncSync, closeSync, renameSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';

/**
 * Writes `data` to a temporary file beside `path`, syncs it and renames it
 * over `path`: readers see the old content or the new, never a part.
 *
 * On a full file system write(2) first returns a short count (as much as
 * fitted) and only the next call fails with ENOSPC, so every byte is written
 * in a loop; a write that makes no progress is ENOSPC too. Without the loop
 * a truncated file would be renamed into place as if complete.
 */
export function writeFileAtomic(path: string, data: string | Buffer, mode = 0o644): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  const buf = typeof data === 'string' ? Buffer.from(data) : data;
  const fd = openSync(tmp, 'w', mode);
  try {
    writeAll(fd, buf, tmp);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    unlinkSync(tmp);
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
}

/** Every byte of `buf` at the start of `fd`, or an ENOSPC/EIO error. */
function writeAll(fd: number, buf: Buffer, path: string): void {
  let off = 0;
  while (off < buf.length) {
    const n = writeSync(fd, buf, off, buf.length - off);
    if (n <= 0) {
      throw Object.assign(new Error(`ENOSPC: no space left on device, write '${path}' (${off} of ${buf.length} bytes written)`), {
        code: 'ENOSPC', errno: -28, syscall: 'write', path,
      });
    }
    off += n;
  }
}

/** Private keys, API keys, tokens: owner read/write only. */
export function writeSecretFile(path: string, data: string | Buffer): void {
  writeFileAtomic(path, data, 0o600);
}
