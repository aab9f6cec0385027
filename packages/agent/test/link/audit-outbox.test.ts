// The host audit outbox: one slot, replaced by each new report, kept on disk
// (0600) until the controller acknowledges that very report.
import t from 'tap';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLogger } from '@bulkhead/shared';
import { AuditOutbox } from '../../src/link/audit-outbox';

const rep = (takenAtMs: number) => ({ takenAtMs, cisJson: '{}', lockdownJson: '[]', score: 50, fixesJson: '[]', hygieneJson: '' });

t.test('latest report only, survives a restart, cleared by the matching ack', async (t) => {
  const lines: string[] = [];
  const logger = createLogger({ name: 't', level: 'debug', destination: { write: (s: string) => void lines.push(s) } });
  const dir = t.testdir();
  const path = join(dir, 'state', 'spool', 'audit.json');
  const a = await AuditOutbox.open({ path, logger });
  t.equal(a.pending, undefined);
  t.notOk(existsSync(path), 'nothing written until there is a report');
  await a.put(rep(1));
  await a.put(rep(2));
  t.equal(a.pending?.takenAtMs, 2, 'a newer report replaces the unsent one');
  t.equal(statSync(path).mode & 0o777, 0o600, 'private file');
  t.equal(JSON.parse(readFileSync(path, 'utf8')).takenAtMs, 2);

  // An ack for the replaced report changes nothing.
  await a.ack(1);
  t.equal(a.pending?.takenAtMs, 2);
  t.ok(existsSync(path));

  const b = await AuditOutbox.open({ path, logger });
  t.equal(b.pending?.takenAtMs, 2, 'recovered after a restart');
  t.match(lines.join(''), /recovered an unsent host audit report/);

  await b.ack(2);
  await b.flush();
  t.equal(b.pending, undefined);
  t.notOk(existsSync(path), 'acknowledged: the file is gone');
  await b.ack(2); // twice: harmless

  // An ack immediately followed by a new report leaves the new one on disk.
  await b.put(rep(3));
  void b.ack(3);
  await b.put(rep(4));
  await b.flush();
  t.equal(JSON.parse(readFileSync(path, 'utf8')).takenAtMs, 4);

  // A damaged or foreign file is ignored (and replaced by the next report).
  writeFileSync(path, '{"takenAtMs": 5');
  t.equal((await AuditOutbox.open({ path, logger })).pending, undefined);
  t.match(lines.join(''), /ignoring a damaged report file/);
  writeFileSync(path, '{"takenAtMs": 0, "cisJson": "{}"}');
  t.equal((await AuditOutbox.open({ path, logger })).pending, undefined, 'a report without a time is not one');

  // A failing write is logged, not thrown.
  const dirAsFile = join(dir, 'plain');
  writeFileSync(dirAsFile, 'x');
  const broken = await AuditOutbox.open({ path: join(dir, 'slot.json'), logger });
  (broken as unknown as { opts: { path: string } }).opts.path = join(dirAsFile, 'audit.json');
  await broken.put(rep(9));
  t.match(lines.join(''), /audit outbox: write failed/);
  t.equal(broken.pending?.takenAtMs, 9, 'still held in memory for the live stream');
  await t.rejects(AuditOutbox.open({ path: join(dirAsFile, 'x', 'audit.json'), logger }), /ENOTDIR|EEXIST/);
});

t.test('memory-only slot', async (t) => {
  const m = AuditOutbox.inMemory(createLogger({ name: 't', level: 'silent' }));
  await m.put(rep(7));
  t.equal(m.pending?.takenAtMs, 7);
  await m.ack(7);
  t.equal(m.pending, undefined);
  const opened = await AuditOutbox.open({ logger: createLogger({ name: 't', level: 'silent' }) });
  await opened.put(rep(8));
  t.equal(opened.pending?.takenAtMs, 8);
});
