// Owns writing the CLI's token cache: 0600 from the first byte (never chmod
// after the fact), via a temporary file renamed over the old one so a crash
// leaves the old cache or the new, never part of one. The same contract as
// @bulkhead/shared's writeSecretFile, written again here because the CLI must
// not depend on @bulkhead/shared (it pulls in gRPC; docs/cli.md "Installing the CLI").
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';

export function writeSecretFile(path: string, data: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const tmp = `${path}.tmp-${process.pid}`;
  const buf = Buffer.from(data);
  const fd = openSync(tmp, 'w', 0o600);
  try {
    let off = 0;
    while (off < buf.length) {
      const n = writeSync(fd, buf, off, buf.length - off);
      // A write that makes no progress is a full disk: never rename a truncated file into place.
      if (n <= 0) throw Object.assign(new Error(`ENOSPC: no space left on device, write '${tmp}'`), { code: 'ENOSPC' });
      off += n;
    }
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    unlinkSync(tmp);
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, path);
}
