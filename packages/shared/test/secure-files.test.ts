import t from 'tap';
import { readFileSync, statSync } from 'node:fs';
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
