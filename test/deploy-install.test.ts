// deploy/install.sh in a throw-away root: installs both roles from this (built) checkout,
// changes nothing on a second run, upgrades beside the old version keeping state and env,
// removes keeping state, purges. The installed CLIs must run, and the installed units must
// pass `systemd-analyze verify`. It never runs systemctl: the root is not /.
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, resolve } from 'node:path';
import t from 'tap';

const REPO = resolve(__dirname, '..');
const SCRIPT = join(REPO, 'deploy/install.sh');
const VERSION = (JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

function install(args: string[], env: Record<string, string> = {}): { status: number | null; out: string; err: string } {
  const r = spawnSync('bash', [SCRIPT, ...args], { encoding: 'utf8', timeout: 120_000, env: { ...process.env, ...env } });
  return { status: r.status, out: r.stdout, err: r.stderr };
}

/** Every path under dir with its type, mode, size and mtime (symlinks: their target), sorted. */
function listing(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const s = lstatSync(p);
      const rel = relative(dir, p);
      if (s.isSymbolicLink()) out.push(`${rel} -> ${readlinkSync(p)} ${s.mtimeMs}`);
      else out.push(`${rel} ${s.mode.toString(8)} ${s.isDirectory() ? '-' : s.size} ${s.mtimeMs}`);
      if (s.isDirectory()) walk(p);
    }
  };
  walk(dir);
  return out.sort();
}

const mode = (p: string): string => (statSync(p).mode & 0o777).toString(8);

const built = existsSync(join(REPO, 'packages/agent/dist/cli/main.js')) && existsSync(join(REPO, 'packages/controller/dist/cli/main.js'));
if (!built) {
  t.plan(0, 'not built (npm run build)');
} else {
  const root = mkdtempSync(join(tmpdir(), 'bk-install-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const opt = join(root, 'opt/bulkhead');

  t.test('wrong usage fails clearly', async (t) => {
    const cases: Array<[string[], RegExp]> = [
      [[], /Usage:/],
      [['both', '--root', root], /'agent' or 'controller'/],
      [['agent', '--root', root, '--bogus'], /unknown option '--bogus'/],
      [['agent', '--root'], /--root needs a value/],
      [['agent', '--root', join(root, 'nope')], /is not a directory/],
      [['controller', '--root', root, '--token', 'x'], /do not apply to the controller/],
      [['agent', '--root', root, '--token', 'x'], /needs all of --controller, --token and --ca-fingerprint/],
      [['agent', '--root', root, '--purge'], /--purge only goes with --remove/],
      [['agent', '--root', root, '--from', root], /not a built checkout: package\.json is missing/],
    ];
    for (const [args, re] of cases) {
      const r = install(args);
      t.not(r.status, 0, `${args.join(' ')} exits non-zero`);
      t.match(r.err, re, `${args.join(' ')}: ${re.source}`);
    }
    t.same(readdirSync(root), [], 'nothing was written');
  });

  t.test('install agent and controller', async (t) => {
    for (const role of ['agent', 'controller']) {
      const r = install([role, '--root', root]);
      t.equal(r.status, 0, `install ${role}\n${r.err}`);
      t.match(r.out, /would run: systemctl enable/, 'prints, not runs, systemctl outside /');
      const env = join(root, `etc/bulkhead/${role}.env`);
      t.equal(mode(env), '600', `${role}.env is 0600`);
      t.equal(mode(join(root, `var/lib/bulkhead-${role}`)), '700', 'state dir is 0700');
      const unit = readFileSync(join(root, `etc/systemd/system/bulkhead-${role}.service`), 'utf8');
      t.match(unit, new RegExp(`^ExecStart=/usr/bin/node .*/opt/bulkhead/current/packages/${role}/dist/cli/main\\.js `, 'm'), 'unit runs the current version');
      t.notMatch(unit, /\/opt\/bulkhead\/packages\//, 'no path outside current');
    }
    t.equal(readlinkSync(join(opt, 'current')), VERSION, 'current -> version');
    const cur = join(opt, 'current');
    t.notOk(existsSync(join(cur, 'node_modules/typescript')), 'dev dependencies pruned');
    t.notOk(existsSync(join(cur, 'node_modules/tap')), 'dev dependencies pruned (tap)');
    t.ok(existsSync(join(cur, 'node_modules/better-sqlite3')), 'production dependencies kept');
    for (const [main, name] of [['packages/agent/dist/cli/main.js', 'bulkhead-agent'], ['packages/controller/dist/cli/main.js', 'bulkhead-controller'], ['packages/cli/dist/main.js', 'bulkhead']]) {
      // Run from a directory outside the checkout so nothing resolves from this repository.
      const h = spawnSync(process.execPath, [join(cur, main!), '--help'], { encoding: 'utf8', cwd: root, timeout: 30_000 });
      t.equal(h.status, 0, `${name} --help runs from the install\n${h.stderr}`);
      t.match(h.stdout, new RegExp(`Usage: ${name} `));
    }
    // The installed controller loads its native SQLite build and the proto files.
    const sq = spawnSync(process.execPath, ['-e', "new (require('better-sqlite3'))(':memory:').close()"], { cwd: join(cur, 'packages/controller'), encoding: 'utf8' });
    t.equal(sq.status, 0, `better-sqlite3 loads from the install\n${sq.stderr}`);
    const proto = spawnSync(process.execPath, ['-e', "const s = require('@bulkhead/shared'); s.loadProto(); console.log(s.protoRoot())"], { cwd: join(cur, 'packages/agent'), encoding: 'utf8', env: { ...process.env, BULKHEAD_PROTO_DIR: '' } });
    t.equal(proto.status, 0, `proto files load from the install\n${proto.stderr}`);
    t.equal(proto.stdout.trim(), join(opt, VERSION, 'proto'), 'from the installed copy of proto/');
  });

  const analyze = spawnSync('sh', ['-c', 'command -v systemd-analyze'], { encoding: 'utf8' }).stdout.trim();
  t.test('installed units pass systemd-analyze verify', { skip: analyze ? false : 'systemd-analyze is not installed' }, async (t) => {
    for (const role of ['agent', 'controller']) {
      const unit = join(root, `etc/systemd/system/bulkhead-${role}.service`);
      let path = unit;
      if (!existsSync('/usr/bin/node')) {
        // As in deploy-systemd.test.ts: only the executable is rewritten, for this check only.
        const dir = mkdtempSync(join(tmpdir(), 'bk-install-units-'));
        t.teardown(() => rmSync(dir, { recursive: true, force: true }));
        path = join(dir, `bulkhead-${role}.service`);
        writeFileSync(path, readFileSync(unit, 'utf8').replace(/^ExecStart=\/usr\/bin\/node /m, `ExecStart=${process.execPath} `));
      }
      const v = spawnSync(analyze, ['verify', '--man=no', '--recursive-errors=no', path], { encoding: 'utf8', cwd: root });
      t.equal(v.status, 0, `verify ${role}\n${v.stderr}`);
      t.same((v.stderr + v.stdout).split('\n').filter((l) => l.includes(`bulkhead-${role}`)), [], 'no warnings about the unit');
    }
  });

  t.test('a second run changes nothing', async (t) => {
    const before = listing(root);
    for (const role of ['agent', 'controller']) {
      const r = install([role, '--root', root]);
      t.equal(r.status, 0, r.err);
      t.match(r.out, /nothing to change/);
      t.notMatch(r.out, /would run: systemctl/, 'no restart');
    }
    t.same(listing(root), before, 'same tree, modes, sizes and mtimes');
  });

  t.test('upgrade installs beside, switches current, keeps state and env', async (t) => {
    const env = join(root, 'etc/bulkhead/agent.env');
    writeFileSync(env, 'BULKHEAD_LOG_LEVEL=debug\n');
    const marker = join(root, 'var/lib/bulkhead-agent/identity.json');
    writeFileSync(marker, '{}\n', { mode: 0o600 });

    const refused = install(['agent', '--root', root], { BULKHEAD_INSTALL_VERSION: '9.9.9' });
    t.not(refused.status, 0, 'a different version without --upgrade is refused');
    t.match(refused.err, /pass --upgrade/);

    const r = install(['agent', '--root', root, '--upgrade'], { BULKHEAD_INSTALL_VERSION: '9.9.9' });
    t.equal(r.status, 0, r.err);
    t.match(r.out, /would run: systemctl restart bulkhead-agent\.service/);
    t.equal(readlinkSync(join(opt, 'current')), '9.9.9');
    t.ok(existsSync(join(opt, VERSION)), 'the old version stays beside');
    t.equal(JSON.parse(readFileSync(join(opt, '9.9.9/package.json'), 'utf8')).version, '9.9.9');
    t.equal(readFileSync(env, 'utf8'), 'BULKHEAD_LOG_LEVEL=debug\n', 'env kept');
    t.equal(mode(env), '600');
    t.ok(existsSync(marker), 'state kept');
    const h = spawnSync(process.execPath, [join(opt, 'current/packages/agent/dist/cli/main.js'), '--help'], { encoding: 'utf8', cwd: root });
    t.equal(h.status, 0, 'the upgraded agent runs');

    // Enrolling is skipped once the state directory holds an identity (no controller needed).
    const e = install(['agent', '--root', root, '--upgrade', '--controller', '127.0.0.1:1', '--token', 'bkj_x', '--ca-fingerprint', 'sha256:00'], { BULKHEAD_INSTALL_VERSION: '9.9.9' });
    t.equal(e.status, 0, e.err);
    t.match(e.out, /already holds an agent identity: not enrolling again/);
  });

  t.test('remove keeps state and env; --purge deletes them', async (t) => {
    let r = install(['agent', '--root', root, '--remove']);
    t.equal(r.status, 0, r.err);
    t.notOk(existsSync(join(root, 'etc/systemd/system/bulkhead-agent.service')), 'unit removed');
    t.ok(existsSync(opt), '/opt/bulkhead kept while the controller unit uses it');
    t.ok(existsSync(join(root, 'var/lib/bulkhead-agent/identity.json')), 'state kept');
    t.ok(existsSync(join(root, 'etc/bulkhead/agent.env')), 'env kept');

    r = install(['controller', '--root', root, '--remove']);
    t.equal(r.status, 0, r.err);
    t.notOk(existsSync(opt), '/opt/bulkhead removed with the last unit');
    t.ok(existsSync(join(root, 'var/lib/bulkhead-controller')), 'controller state kept');

    for (const role of ['agent', 'controller']) {
      r = install([role, '--root', root, '--remove', '--purge']);
      t.equal(r.status, 0, r.err);
      t.notOk(existsSync(join(root, `var/lib/bulkhead-${role}`)), `${role} state purged`);
      t.notOk(existsSync(join(root, `etc/bulkhead/${role}.env`)), `${role} env purged`);
    }
    t.notOk(existsSync(join(root, 'etc/bulkhead')), 'empty /etc/bulkhead removed');
  });
}
