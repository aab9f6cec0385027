// A damaged data directory is refused at start, naming the file: keys and
// certificates that do not parse or do not belong together, and an SQLite
// store that is missing or empty although the directory was initialized.
import t from 'tap';
import { copyFileSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { dataDirPaths, initPki, loadPki } from '../../src/pki/data-dir';
import { openStore, storeConfigFor } from '../../src/store/open-store';

t.test('damaged keys and certificates are named at load', async (t) => {
  const dir = join(t.testdir(), 'data');
  await initPki(dir, ['localhost']);
  const p = dataDirPaths(dir);
  t.ok(loadPki(dir).caFingerprint.startsWith('sha256:'));
  const save = join(dir, 'save');
  for (const [file, damage, message] of [
    [p.caKey, 'half', /ca\.key is not a readable private key/],
    [p.caCert, 'garbage', /ca\.crt is not a readable certificate/],
    [p.serverKey, 'garbage', /server\.key is not a readable private key/],
    [p.serverCert, 'half', /server\.crt is not a readable certificate/],
    [p.serverCert, 'swap', /server\.key is not the private key of .*server\.crt/],
  ] as const) {
    copyFileSync(file, save);
    if (damage === 'half') truncateSync(file, 100);
    else if (damage === 'garbage') writeFileSync(file, 'garbage\n');
    else copyFileSync(p.caCert, file);
    t.throws(() => loadPki(dir), { code: 'BK_ERR_CONFIG_INVALID', message }, `${file} ${damage}`);
    copyFileSync(save, file);
  }
  unlinkSync(save);
  t.ok(loadPki(dir));
});

t.test('an initialized data directory with a missing or empty SQLite store is refused', async (t) => {
  const dir = join(t.testdir(), 'data');
  const config = storeConfigFor(dir);
  if (config.kind !== 'sqlite') throw new Error('expected sqlite');
  await t.rejects(openStore(config, { existing: true }), { code: 'BK_ERR_CONFIG_INVALID', message: /bulkhead\.db is missing though this data directory is initialized/ });
  const fresh = await openStore(config); // what init does
  await fresh.close();
  const again = await openStore(config, { existing: true });
  await again.close();
  truncateSync(config.path, 0);
  await t.rejects(openStore(config, { existing: true }), { message: /is empty though .*Restore it from a backup/ });
});
