import t, { type Test } from 'tap';
import { readFileSync, readdirSync, statSync, mkdtempSync, rmSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSecretFile, writeFileAtomic } from '../src/fs/secure-files';

t.test('secret files are 0600 and atomic writes replace content', async (t) => {
  const dir = t.testdir();
  const p = join(dir, 'sub', 'key.pem');
  writeSecretFile(p, 'secret');
  t.equal(statSync(p).mode & 0o777, 0o600);
  t.equal(statSync(join(dir, 'sub')).mode & 0o777, 0o700);
  writeFileAtomic(join(dir, 'a.txt'), 'one');
  writeFileAtomic(join(dir, 'a.txt'), Buffer.from('two'));
  t.equal(readFileSync(join(dir, 'a.txt'), 'utf8'), 'two');
  t.equal(statSync(join(dir, 'a.txt')).mode & 0o777, 0o644);
});

t.test('a full disk: writeFileAtomic fails and leaves the old file, never a truncated one', { skip: process.getuid?.() !== 0 ? 'needs root to mount a small tmpfs' : false }, async (t) => {
  const dir = smallTmpfs(t);
  const p = join(dir, 'state.json');
  writeFileAtomic(p, 'old');
  // write(2) on a full tmpfs first returns a short count, then ENOSPC.
  t.throws(() => writeFileAtomic(p, Buffer.alloc(100_000, 'x')), { code: 'ENOSPC' });
  t.equal(readFileSync(p, 'utf8'), 'old', 'the old content stays');
  t.same(readdirSync(dir), ['state.json'], 'no temporary file left behind');
  writeFileAtomic(p, Buffer.alloc(30_000, 'y'));
  t.equal(statSync(p).size, 30_000, 'a write that fits is whole');
});

/** A 64 KiB tmpfs for the test, unmounted and removed at its end. */
function smallTmpfs(t: Test): string {
  const dir = mkdtempSync(join(tmpdir(), 'bk-full-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]);
  t.teardown(() => {
    execFileSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}
