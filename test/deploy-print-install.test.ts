// `bulkhead tokens create --print-install` against a real controller: the printed line,
// run as printed (plus --root, so this machine's own system is never changed), installs the
// agent from this built checkout and enrolls it with the token and CA fingerprint it carries;
// the controller then lists the new agent. The token works once: the same line run for a
// host that has no identity yet is refused by the controller.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import t from 'tap';
import { OPS_BIN, run } from './helpers/processes';
import { startController, tempRoot } from './e2e/stack';

const REPO = resolve(__dirname, '..');
const built = existsSync(join(REPO, 'packages/agent/dist/cli/main.js')) && existsSync(OPS_BIN);

if (!built) {
  t.plan(0, 'not built (npm run build)');
} else {
  t.test('the printed line installs and enrolls an agent', async (t) => {
    const tmp = tempRoot();
    t.teardown(tmp.cleanup);
    const ctl = await startController(tmp.dir);
    t.teardown(() => ctl.stop());
    const env = { BULKHEAD_API: ctl.apiBase, BULKHEAD_API_KEY: ctl.adminKey, BULKHEAD_CA: ctl.caFile };
    const installer = join(REPO, 'deploy/install.sh');

    // Usage errors, before any token is minted.
    const bad = await run(OPS_BIN, ['tokens', 'create', '--controller', ctl.grpcAddr], env);
    t.equal(bad.code, 2, '--controller without --print-install is a usage error');
    t.match(bad.stderr, /--controller only goes with --print-install/);
    const badAddr = await run(OPS_BIN, ['tokens', 'create', '--print-install', '--controller', 'ctl.example.com'], env);
    t.equal(badAddr.code, 2);
    t.match(badAddr.stderr, /--controller must be HOST:PORT/);
    const dupAddr = await run(OPS_BIN, ['tokens', 'create', '--print-install', '--controller', 'a.example.com:7443,A.example.com:7443'], env);
    t.equal(dupAddr.code, 2, 'the same replica twice is a usage error');
    t.match(dupAddr.stderr, /several comma-separated without repeats/);

    // Default address: the API URL's host and the default agent port.
    const dflt = await run(OPS_BIN, ['--json', 'tokens', 'create', '--print-install'], env);
    t.equal(dflt.code, 0, dflt.stderr);
    const dj = JSON.parse(dflt.stdout) as { installCommand: string; token: string; caFingerprint: string };
    t.equal(dj.installCommand, `./deploy/install.sh agent --controller 127.0.0.1:7443 --token ${dj.token} --ca-fingerprint ${dj.caFingerprint}`);
    // Replicas: the list goes into the line as given (the agent saves it at enrollment).
    const list = await run(OPS_BIN, ['--json', 'tokens', 'create', '--print-install', '--controller', 'ctl-a.example.com:7443,ctl-b.example.com:7443'], env);
    t.equal(list.code, 0, list.stderr);
    const lj = JSON.parse(list.stdout) as { installCommand: string; token: string; caFingerprint: string };
    t.equal(lj.installCommand, `./deploy/install.sh agent --controller ctl-a.example.com:7443,ctl-b.example.com:7443 --token ${lj.token} --ca-fingerprint ${lj.caFingerprint}`);

    const r = await run(OPS_BIN, ['tokens', 'create', '--print-install', '--controller', ctl.grpcAddr, '--installer', installer, '--description', 'print-install test'], env);
    t.equal(r.code, 0, r.stderr);
    const line = r.stdout.trim();
    t.equal(r.stdout.split('\n').filter(Boolean).length, 1, 'stdout is one line');
    t.match(line, new RegExp(`^${installer.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} agent --controller ${ctl.grpcAddr} --token bkj_[0-9a-f]{16}_[A-Za-z0-9_-]{43} --ca-fingerprint ${ctl.caFingerprint}$`));
    t.match(r.stderr, /expires .*run the line above as root on the new host/);

    const root = mkdtempSync(join(tmpdir(), 'bk-print-install-'));
    t.teardown(() => rmSync(root, { recursive: true, force: true }));
    const inst = spawnSync('bash', ['-c', `${line} --root ${root}`], { encoding: 'utf8', timeout: 180_000 });
    t.equal(inst.status, 0, `install: ${inst.stderr}`);
    const state = join(root, 'var/lib/bulkhead-agent');
    const identity = JSON.parse(readFileSync(join(state, 'identity.json'), 'utf8')) as { agentId: string };
    t.match(identity.agentId, /^agt_[0-9a-f]+$/, 'the installed agent holds an identity');
    t.equal(statSync(join(state, 'agent.key')).mode & 0o777, 0o600, 'its key is 0600');
    t.ok(existsSync(join(root, 'etc/systemd/system/bulkhead-agent.service')), 'the unit is installed');

    const agents = await ctl.get<{ items: Array<{ id: string }> }>('/v1/agents');
    t.ok(agents.body.items.some((a) => a.id === identity.agentId), 'the controller lists the enrolled agent');

    // The same line again on a host without an identity (the code is installed, so only
    // enrolling runs): the token was used.
    rmSync(state, { recursive: true, force: true });
    const again = spawnSync('bash', ['-c', `${line} --root ${root}`], { encoding: 'utf8', timeout: 180_000 });
    t.not(again.status, 0, 'a used token does not enroll a second host');
    t.match(again.stderr, /enrolling with .* failed/);
  });
}
