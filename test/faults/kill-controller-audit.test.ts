// Fault: the controller is SIGKILLed the moment a mutating call's answer reaches the caller.
// The audit trail must already hold the call: an operator who got "201 Created" for a new
// API key can rely on that key's creation being on record, whatever happens to the process
// next (docs/security.md, "The audit trail": entries are written before the answer leaves).
// Real processes: the built controller (SQLite store), HTTPS on loopback.
import t from 'tap';
import { request } from 'node:https';
import { startController, tempRoot } from '../e2e/stack';

const ROUNDS = 5;

interface AuditItem {
  seq: number;
  action: string;
  status: number;
  target: Record<string, string>;
}

/** POSTs a new key and SIGKILLs the controller as soon as the answer's status line arrives. */
function createKeyThenKill(ctl: Awaited<ReturnType<typeof startController>>, name: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(new URL('/v1/keys', ctl.apiBase), {
      method: 'POST',
      ca: ctl.caPem,
      headers: { authorization: `Bearer ${ctl.adminKey}`, 'content-type': 'application/json' },
    }, (res) => {
      // Before reading a byte of the body: the caller has its outcome now.
      ctl.daemon.child.kill('SIGKILL');
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('aborted', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end(JSON.stringify({ name, role: 'viewer' }));
  });
}

t.test('a call answered just before a SIGKILL is in the audit trail after restart', async (t) => {
  const root = tempRoot();
  t.teardown(root.cleanup);
  const ctl = await startController(root.dir);
  t.teardown(() => ctl.stop());

  const answered: string[] = [];
  for (let i = 0; i < ROUNDS; i++) {
    const name = `audit-kill-${i}`;
    const r = await createKeyThenKill(ctl, name);
    t.equal(r.status, 201, `round ${i}: the key was created (status ${r.status})`);
    if (r.status === 201) answered.push(name);
    await ctl.restart();
  }

  const page = await ctl.get<{ items: AuditItem[] }>('/v1/audit-log?action=keys.create&limit=100');
  t.equal(page.status, 200);
  const created = page.body.items.filter((e) => e.status === 201);
  t.equal(created.length, answered.length, `every answered keys.create is on record (${created.length} of ${answered.length})`);
  const keys = await ctl.get<{ items: { name: string }[] }>('/v1/keys?limit=100');
  for (const name of answered) t.ok(keys.body.items.some((k) => k.name === name), `key ${name} exists after the restarts`);
  const verify = await ctl.get<{ ok: boolean; checked: number }>('/v1/audit-log/verify');
  t.equal(verify.body.ok, true, `the chain verifies after ${ROUNDS} kills (${verify.body.checked} entries)`);
});
