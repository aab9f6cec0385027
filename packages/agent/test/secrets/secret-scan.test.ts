// The secret scan reports WHERE and WHICH detector — never the value — and
// redactCommand keeps command-line secrets from leaving the host.
import t from 'tap';
import { createLogger } from '@bulkhead/shared';
import type Dockerode from 'dockerode';
import {
  mergeHits, redactCommand, redactLabels, scanContainerSecrets, scanFactsSecrets, withSecretsAndProject,
} from '../../src/secrets/secret-scan';
import { SecretScanner } from '../../src/secrets/secret-scanner';
import type { Facts } from '../../src/docker/container-facts';

const DB_URL = 'postgres://app:s3cr3t-Passw0rd@db.internal:5432/app';
const AWS_KEY = 'AKIAIOSFODNN7EXAMPLE';
const logger = createLogger({ name: 'secret-scan-test', level: 'silent' });

const inspect = {
  Config: {
    Env: ['PATH=/usr/bin', `DB_URL=${DB_URL}`, 'DB_PASSWORD=hunter2-hunter2', 'PASSWORD_FILE=/run/secrets/db', 'EMPTY=', 'BARE'],
    Labels: { 'com.example.owner': 'team-a', 'com.example.db.password': 'letmein-123', aws: `key=${AWS_KEY}` },
    Entrypoint: ['/app/run'],
    Cmd: ['--verbose', '--password', 'sup3r-s3cret', `--db=${DB_URL}`],
  },
};
const history = [
  { CreatedBy: '/bin/sh -c #(nop)  CMD ["sh"]' },
  { CreatedBy: `/bin/sh -c #(nop)  ENV AWS_ACCESS_KEY_ID=${AWS_KEY}` },
  { CreatedBy: null },
];

t.test('finds env, label, command and history secrets with locations and detectors only', async (t) => {
  const hits = scanContainerSecrets(inspect, history);
  const where = hits.map((h) => `${h.location} ${h.detector}`);
  t.ok(where.includes('env:DB_URL database-url-credentials'));
  t.ok(where.includes('env:DB_PASSWORD generic-password-assignment'));
  t.notOk(hits.some((h) => h.location === 'env:PASSWORD_FILE'), 'a file reference is not a secret');
  t.notOk(hits.some((h) => h.location === 'env:PATH'));
  t.ok(where.includes('label:com.example.db.password generic-password-assignment'), 'label key counts, like an env name');
  t.ok(where.includes('label:aws aws-access-key-id'));
  t.notOk(hits.some((h) => h.location === 'label:com.example.owner'));
  t.ok(where.includes('command[3] generic-password-assignment'), '--password VALUE split over two args: index of the value');
  t.ok(where.includes('command[4] database-url-credentials'), 'index counts Entrypoint then Cmd');
  t.ok(where.includes('history[1] aws-access-key-id'));
  // Order: env, labels, command, history.
  const kinds = hits.map((h) => h.location.split(/[:[]/)[0]);
  t.same([...new Set(kinds)], ['env', 'label', 'command', 'history']);
  const text = JSON.stringify(hits);
  for (const secret of ['s3cr3t-Passw0rd', 'hunter2', 'letmein', AWS_KEY, 'sup3r-s3cret']) t.notOk(text.includes(secret), `no ${secret} in the hits`);
});

t.test('tolerates nulls, strings and absent parts', async (t) => {
  t.same(scanContainerSecrets(undefined), []);
  t.same(scanContainerSecrets({ Config: null }), []);
  t.same(scanContainerSecrets({ Config: { Env: null, Labels: null, Cmd: null, Entrypoint: null } }, null), []);
  t.same(scanContainerSecrets({ Config: { Entrypoint: `mysql://root:Tr0ub4dor-3@db/x` } }).map((h) => h.location), ['command[0]']);
});

t.test('redactCommand replaces exactly the args that hit', async (t) => {
  const hits = scanContainerSecrets(inspect);
  const cmd = ['/app/run', '--verbose', '--password', 'sup3r-s3cret', `--db=${DB_URL}`];
  const red = redactCommand(cmd, hits);
  t.same(red, ['/app/run', '--verbose', '--password', '[redacted:generic-password-assignment]', '[redacted:database-url-credentials]']);
  t.same(cmd[3], 'sup3r-s3cret', 'input not modified');
  t.same(redactCommand(['a'], []), ['a']);
  const labels = { 'com.example.db.password': 'letmein-123', owner: 'team-a' };
  t.same(redactLabels(labels, scanContainerSecrets({ Config: { Labels: labels } })), { 'com.example.db.password': '[redacted:generic-password-assignment]', owner: 'team-a' });
  t.same(labels['com.example.db.password'], 'letmein-123', 'input not modified');
});

t.test('withSecretsAndProject attaches hits, redacts, sets the project', async (t) => {
  const facts = { id: 'c1', labels: { 'bulkhead.project': 'shop' }, command: ['run', '--token=abcdef123456'], secretHits: [], project: '' } as unknown as Facts;
  const hits = scanFactsSecrets(facts);
  const out = withSecretsAndProject(facts, hits, 'bulkhead.project');
  t.equal(out.project, 'shop');
  t.same(out.command, ['run', '[redacted:generic-password-assignment]']);
  t.same(out.secretHits, [{ location: 'command[1]', detector: 'generic-password-assignment' }]);
  t.same(facts.command, ['run', '--token=abcdef123456'], 'the shared watcher facts are not mutated');
  t.equal(withSecretsAndProject(facts, [], 'other').project, '');
  t.same(mergeHits(hits, hits), hits, 'merge dedups');
});

t.test('SecretScanner: one inspect per container, one history per image; falls back without cache on errors', async (t) => {
  const calls = { inspect: 0, history: 0 };
  let failInspect = false;
  const docker = {
    getContainer: (id: string) => ({
      inspect: async () => {
        calls.inspect++;
        if (failInspect) throw Object.assign(new Error('boom'), { statusCode: 500 });
        if (id === 'gone') throw Object.assign(new Error('no such container'), { statusCode: 404 });
        return { ...inspect, Id: id, Image: 'sha256:img' } as unknown as Dockerode.ContainerInspectInfo;
      },
    }),
    getImage: () => ({
      history: async () => {
        calls.history++;
        return history;
      },
    }),
  };
  const s = new SecretScanner({ docker, logger });
  const facts = { id: 'c1', imageId: 'sha256:img', labels: {}, command: [] } as unknown as Facts;
  t.equal(s.peek('c1'), undefined);
  const [a, b] = await Promise.all([s.scan(facts), s.scan(facts)]);
  t.same(a, b);
  t.equal(calls.inspect, 1, 'concurrent scans share one inspect');
  await s.scan({ ...facts, id: 'c2' });
  t.equal(calls.inspect, 2);
  t.equal(calls.history, 1, 'history once per image id');
  t.ok(s.peek('c1')!.some((h) => h.location === 'env:DB_URL'));
  t.ok(s.peekHistory('sha256:img'));
  const now = s.enrichNow({ ...facts, command: ['x'], secretHits: [], project: '' } as Facts, 'bulkhead.project');
  t.equal(now.complete, true);

  const gone = await s.scan({ ...facts, id: 'gone', command: ['--password', 'abcdefgh1'] });
  t.same(gone.map((h) => h.location), ['command[1]'], '404: facts-only hits');
  failInspect = true;
  const partial = s.enrichNow({ id: 'c3', imageId: 'sha256:img', labels: {}, command: [], secretHits: [], project: '' } as unknown as Facts, 'p');
  t.equal(partial.complete, false);
  t.ok(partial.facts.secretHits.some((h) => h.location === 'history[1]'), 'cached image history is used without I/O');
  await s.scan({ ...facts, id: 'c3' });
  t.equal(s.peek('c3'), undefined, 'failed scans are not cached');
  s.forget('c1');
  t.equal(s.peek('c1'), undefined);
});

t.test('SecretScanner: at most `concurrency` scans ask the engine at once (default 8); every scan completes', async (t) => {
  for (const [opt, limit] of [[undefined, 8], [3, 3]] as const) {
    let active = 0;
    let peak = 0;
    const docker = {
      getContainer: (id: string) => ({
        inspect: async () => {
          peak = Math.max(peak, ++active);
          await new Promise((r) => setTimeout(r, 2));
          active--;
          return { ...inspect, Id: id, Image: 'sha256:img' } as unknown as Dockerode.ContainerInspectInfo;
        },
      }),
      getImage: () => ({ history: async () => history }),
    };
    const s = new SecretScanner({ docker, logger, ...(opt === undefined ? {} : { concurrency: opt }) });
    const all = await Promise.all(Array.from({ length: 50 }, (_, i) => s.scan({ id: `c${i}`, imageId: 'sha256:img', labels: {}, command: [] } as unknown as Facts)));
    t.equal(all.length, 50);
    t.ok(all.every((h) => h.some((x) => x.location === 'env:DB_URL')), 'each of the 50 containers scanned in full');
    t.equal(peak, limit, `50 scans at once: ${peak} inspects in flight at most`);
  }
  t.throws(() => new SecretScanner({ docker: { getContainer: () => ({ inspect: async () => ({}) as never }), getImage: () => ({ history: async () => [] }) }, logger, concurrency: 0 }), /concurrency/);
});

t.test('SecretScanner.enrichForReport: redacted at once, complete facts once the scan is in', async (t) => {
  const docker = {
    getContainer: (id: string) => ({ inspect: async () => ({ ...inspect, Id: id, Image: 'sha256:img' }) as unknown as Dockerode.ContainerInspectInfo }),
    getImage: () => ({ history: async () => history }),
  };
  const s = new SecretScanner({ docker, logger });
  const facts = {
    id: 'c9', imageId: 'sha256:img', labels: { 'com.example.db.password': 'letmein-123', 'bulkhead.project': 'shop' },
    command: ['/app/run', '--verbose', '--password', 'sup3r-s3cret'], secretHits: [], project: '',
  } as unknown as Facts;
  const done: Facts[] = [];
  const now = s.enrichForReport(facts, () => 'bulkhead.project', () => facts, (f) => done.push(f));
  t.same(now.command, ['/app/run', '--verbose', '--password', '[redacted:generic-password-assignment]'], 'command redacted synchronously');
  t.equal(now.labels['com.example.db.password'], '[redacted:generic-password-assignment]');
  t.equal(now.project, 'shop');
  t.notOk(now.secretHits.some((h) => h.location.startsWith('env:')), 'env not known yet');
  await new Promise((r) => setTimeout(r, 10));
  t.equal(done.length, 1);
  t.ok(done[0]!.secretHits.some((h) => h.location === 'env:DB_URL'), 'complete facts after the scan');
  t.notOk(JSON.stringify(done).includes('sup3r-s3cret') || JSON.stringify(done).includes('letmein'));
  s.enrichForReport(facts, () => 'bulkhead.project', () => facts, (f) => done.push(f));
  await new Promise((r) => setTimeout(r, 10));
  t.equal(done.length, 1, 'already complete: no second callback');
});
