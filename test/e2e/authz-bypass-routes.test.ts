// Authorization-plugin bypasses, end to end — what the plugin SEES of a request
// (classes 3, 4 and 5):
//   3. exec, update and volume create whose body the plugin never receives:
//      dockerd passes a body on only when it is under 1 MiB, and dockerd 20.10
//      never passes one when the request URI ends in "/auth" (a query such as
//      `?x=/auth` will do); dockerd still acts on the body;
//   4. request targets Go routes like any other but the plugin did not
//      recognise: `foo:/v1.41/containers/create`, `http:/v1.41/...` (Go's
//      request-target parser takes `foo:` for a scheme and routes the path) —
//      for create, exec, update and start;
//   5. legacy forms dockerd still honours: host-config fields at the TOP LEVEL
//      of a create body (no `HostConfig`), and (20.10, API < 1.24) a host config
//      sent as the body of `POST /containers/{id}/start`, which replaces the
//      stored one before the container starts.
// Each attack goes as raw bytes over the engine's socket to a real dockerd
// with the real agent's plugin and host-safety rules in enforce mode
// (test/helpers/authz-bypass-stack.ts). It must be refused — by the plugin
// naming the rule, or, where no plugin can see the body, by a refusal naming
// the policy (at the request itself or at the exec start that must follow) —
// and dockerd must not have acted on it (inspect: container not created or
// never started, exec never ran, memory unchanged, volume absent). A benign
// control of the same shape must be allowed and take effect.
// Every request was first sent to a private dockerd WITHOUT the plugin, which
// did what the comments say.
import t from 'tap';
import {
  API, createBody, engineVersions, expectAllowed, expectExecNeverRan, expectNeverStarted, expectNotCreated, expectRefused, expectRuns,
  padded, QUOTA_LABEL, sleep, startBypassStack, TEST_IMAGE, type BypassStack,
} from '../helpers/authz-bypass-stack';
import type { RawResponse } from '../helpers/raw-docker';

const MiB = 1024 * 1024;
const ETC_BIND = ['/etc:/host-etc'];
/** Request-target prefixes Go routes like "/v1.41/…" (url.ParseRequestURI: a scheme, then the path). */
const FORMS = ['foo:', 'http:'] as const;

/** A running, compliant container to exec into (one per case: a root exec that gets through may get it killed). */
async function execTarget(s: BypassStack, tag: string): Promise<string> {
  const name = s.name(tag);
  const r = await s.raw('POST', `/${API}/containers/create?name=${name}`, createBody({ User: '1000' }));
  if (r.status !== 201) throw new Error(`exec target ${name}: create ${r.status} ${r.message}`);
  const st = await s.raw('POST', `/${API}/containers/${name}/start`);
  if (st.status !== 204) throw new Error(`exec target ${name}: start ${st.status} ${st.message}`);
  return name;
}

/** A running container the quota rule judges (memory 64 MiB), for updates. */
async function quotaTarget(s: BypassStack, tag: string): Promise<string> {
  const name = s.name(tag);
  const r = await s.raw('POST', `/${API}/containers/create?name=${name}`, createBody({ User: '1000', Labels: { 'bulkhead.test': '1', [QUOTA_LABEL]: '1' } }, { Memory: 64 * MiB, MemorySwap: 128 * MiB }));
  if (r.status !== 201) throw new Error(`quota target ${name}: create ${r.status} ${r.message}`);
  const st = await s.raw('POST', `/${API}/containers/${name}/start`);
  if (st.status !== 204) throw new Error(`quota target ${name}: start ${st.status} ${st.message}`);
  return name;
}

interface ExecTry {
  create: RawResponse;
  start?: RawResponse;
  id?: string;
}

/** exec create, then (when created) a detached exec start, both at `prefix` + path + `suffix`. */
async function tryExec(s: BypassStack, container: string, body: string | object, o: { prefix?: string; suffix?: string } = {}): Promise<ExecTry> {
  const p = o.prefix ?? '';
  const create = await s.raw('POST', `${p}/${API}/containers/${container}/exec${o.suffix ?? ''}`, body);
  if (create.status !== 201) return { create };
  const id = create.json<{ Id: string }>().Id;
  const start = await s.raw('POST', `${p}/${API}/exec/${id}/start`, { Detach: true, Tty: false });
  return { create, start, id };
}

/** The refusal of an exec: at create, or (created) at start. */
function refusalOf(x: ExecTry): RawResponse {
  return x.start && x.create.status === 201 ? x.start : x.create;
}

/** A benign exec: created, started, and it ran to exit 0. */
async function expectExecRan(t: tap.Test, s: BypassStack, x: ExecTry, what: string): Promise<void> {
  if (!expectAllowed(t, x.create, `${what}: exec create`) || !x.start || !expectAllowed(t, x.start, `${what}: exec start`)) return;
  let e = await s.exec(x.id!);
  for (let i = 0; i < 50 && e?.Running; i++) {
    await sleep(100);
    e = await s.exec(x.id!);
  }
  t.same(e && { ran: e.Pid > 0, exitCode: e.ExitCode }, { ran: true, exitCode: 0 }, `${what}: the exec ran to exit 0 (exec inspect)`);
}

const rootExec = { User: '0', Cmd: ['sh', '-c', 'id -u > /tmp/bkab-root; sleep 300'], AttachStdout: false, AttachStderr: false };
const userExec = { User: '1000', Cmd: ['id', '-u'], AttachStdout: false, AttachStderr: false };

for (const version of engineVersions()) {
  t.test(`dockerd ${version}: requests the plugin cannot read, targets it did not recognise, legacy forms`, async (t) => {
    // Created before any enforce rule is in force (as on a host where Bulkhead
    // is installed after the fact): only a start can still be judged.
    const preExisting: Record<string, string> = {};
    const s = await startBypassStack(t, {
      version,
      beforePolicy: async (s) => {
        for (const f of FORMS) {
          for (const [kind, hc] of [['etc', { Binds: ETC_BIND }], ['ok', {}]] as const) {
            const name = s.name(`pre-${kind}-${f.slice(0, -1)}`);
            const r = await s.raw('POST', `/${API}/containers/create?name=${name}`, createBody({ User: '1000' }, hc));
            if (r.status !== 201) throw new Error(`pre-existing ${name}: ${r.status} ${r.message}`);
            preExisting[`${kind}-${f}`] = name;
          }
        }
      },
    });

    await t.test('class 3: exec, update and volume create whose body the plugin never receives', async (t) => {
      // Padded past 1 MiB with a key dockerd ignores: dockerd runs the exec as root all the
      // same, and 20.10 passes no body to the plugin. (Debian's 26.1 passes bodies up to
      // 4 MiB and refuses larger ones itself, so there the plugin sees this one.)
      const big = await tryExec(s, await execTarget(s, 'x3-big'), padded(rootExec));
      expectRefused(t, s, refusalOf(big), 'policy', 'attack: a root exec with a body over 1 MiB');
      await expectExecNeverRan(t, s, big.id, 'attack: a root exec with a body over 1 MiB');

      // Upstream 20.10 passes no body when the URI ends in "/auth", the query included.
      // (Debian's 20.10.24+deb12u1 carries the CVE-2024-41110 fix, which looks at the
      // path only, and 26.1 too: there the plugin sees this body, and judges it.)
      const auth = await tryExec(s, await execTarget(s, 'x3-auth'), rootExec, { suffix: '?x=/auth' });
      expectRefused(t, s, refusalOf(auth), 'policy', 'attack: a root exec at …/exec?x=/auth');
      await expectExecNeverRan(t, s, auth.id, 'attack: a root exec at …/exec?x=/auth');

      // An exec create whose body no plugin can read is refused while a rule an exec can
      // break is enforced, whatever it asks for: the plugin cannot know it is harmless.
      // (Where dockerd passes the body — 26.1 up to 4 MiB — it is judged and allowed.)
      const bigOk = await tryExec(s, await execTarget(s, 'x3-big-ok'), padded(userExec));
      if (version === '20.10') {
        expectRefused(t, s, refusalOf(bigOk), 'policy', 'a user-1000 exec with a body over 1 MiB: refused, unreadable');
        t.match(refusalOf(bigOk).text, /dockerd passes no body of \d+ bytes/, 'the refusal says why');
      } else {
        await expectExecRan(t, s, bigOk, 'control: a user-1000 exec with a body over 1 MiB');
      }
      const authOk = await tryExec(s, await execTarget(s, 'x3-auth-ok'), userExec, { suffix: '?x=/auth' });
      await expectExecRan(t, s, authOk, 'control: a user-1000 exec at …/exec?x=/auth');

      // Update: memory 1 GiB on a container whose rule allows at most 256 MiB.
      const up = await quotaTarget(s, 'u3');
      const upBig = await s.raw('POST', `/${API}/containers/${up}/update`, padded({ Memory: 1024 * MiB, MemorySwap: 2048 * MiB }));
      expectRefused(t, s, upBig, 'policy', 'attack: an update to 1 GiB with a body over 1 MiB');
      const upAuth = await s.raw('POST', `/${API}/containers/${up}/update?x=/auth`, { Memory: 1024 * MiB, MemorySwap: 2048 * MiB });
      expectRefused(t, s, upAuth, 'policy', 'attack: an update to 1 GiB at …/update?x=/auth');
      t.equal((await s.container(up))?.HostConfig.Memory, 64 * MiB, 'attack: dockerd did not raise the memory limit (inspect: still 64 MiB)');
      const upOk = await s.raw('POST', `/${API}/containers/${up}/update`, { Memory: 128 * MiB, MemorySwap: 256 * MiB });
      expectAllowed(t, upOk, 'control: an update to 128 MiB');
      t.equal((await s.container(up))?.HostConfig.Memory, 128 * MiB, 'control: dockerd applied it (inspect)');

      // Volume create: a local volume bound to the host's /etc.
      const vBig = s.name('v3-big');
      const vb = await s.raw('POST', `/${API}/volumes/create`, padded({ Name: vBig, Driver: 'local', DriverOpts: { type: 'none', o: 'bind', device: '/etc' } }));
      expectRefused(t, s, vb, 'policy', 'attack: a volume bound to /etc, body over 1 MiB');
      t.equal(await s.volumeExists(vBig), false, 'attack: dockerd did not create the volume (inspect)');
      const vAuth = s.name('v3-auth');
      const va = await s.raw('POST', `/${API}/volumes/create?x=/auth`, { Name: vAuth, Driver: 'local', DriverOpts: { type: 'none', o: 'bind', device: '/etc' } });
      expectRefused(t, s, va, 'policy', 'attack: a volume bound to /etc at …/volumes/create?x=/auth');
      t.equal(await s.volumeExists(vAuth), false, 'attack: dockerd did not create the volume (inspect)');
      const vOk = s.name('v3-ok');
      const vo = await s.raw('POST', `/${API}/volumes/create`, { Name: vOk, Driver: 'local', DriverOpts: { type: 'none', o: 'bind', device: s.safeDir } });
      expectAllowed(t, vo, 'control: a volume bound to an application directory');
      t.equal(await s.volumeExists(vOk), true, 'control: dockerd created it (inspect)');
    });

    for (const f of FORMS) {
      await t.test(`class 4: request target "${f}/${API}/…" (Go routes it by its path)`, async (t) => {
        const tag = f.slice(0, -1);
        // create
        const bad = s.name(`c4-${tag}-etc`);
        const c = await s.raw('POST', `${f}/${API}/containers/create?name=${bad}`, createBody({ User: '1000' }, { Binds: ETC_BIND }));
        expectRefused(t, s, c, ['hs.sensitive-mounts'], `attack: create with a /etc bind mount at ${f}/…`);
        await expectNotCreated(t, s, bad, `attack: create at ${f}/…`);
        const good = s.name(`c4-${tag}-ok`);
        const g = await s.raw('POST', `${f}/${API}/containers/create?name=${good}`, createBody({ User: '1000' }));
        if (expectAllowed(t, g, `control: a compliant create at ${f}/…`)) await expectRuns(t, s, good, `control: a compliant create at ${f}/…`);

        // exec (create and start both at the odd target)
        const ex = await tryExec(s, await execTarget(s, `x4-${tag}`), rootExec, { prefix: f });
        expectRefused(t, s, refusalOf(ex), ['hs.root-user'], `attack: a root exec at ${f}/…`);
        await expectExecNeverRan(t, s, ex.id, `attack: a root exec at ${f}/…`);
        const exOk = await tryExec(s, await execTarget(s, `x4-${tag}-ok`), userExec, { prefix: f });
        await expectExecRan(t, s, exOk, `control: a user-1000 exec at ${f}/…`);

        // update
        const up = await quotaTarget(s, `u4-${tag}`);
        const u = await s.raw('POST', `${f}/${API}/containers/${up}/update`, { Memory: 1024 * MiB, MemorySwap: 2048 * MiB });
        expectRefused(t, s, u, ['quota.memory'], `attack: an update to 1 GiB at ${f}/…`);
        t.equal((await s.container(up))?.HostConfig.Memory, 64 * MiB, `attack: an update at ${f}/…: memory unchanged (inspect)`);
        const uOk = await s.raw('POST', `${f}/${API}/containers/${up}/update`, { Memory: 128 * MiB, MemorySwap: 256 * MiB });
        expectAllowed(t, uOk, `control: an update to 128 MiB at ${f}/…`);
        t.equal((await s.container(up))?.HostConfig.Memory, 128 * MiB, `control: an update at ${f}/…: applied (inspect)`);

        // start of a container created before the policy
        const st = await s.raw('POST', `${f}/${API}/containers/${preExisting[`etc-${f}`]}/start`);
        expectRefused(t, s, st, ['hs.sensitive-mounts'], `attack: start, at ${f}/…, of a container created before the policy with a /etc bind mount`);
        await expectNeverStarted(t, s, preExisting[`etc-${f}`]!, `attack: start at ${f}/…`);
        const stOk = await s.raw('POST', `${f}/${API}/containers/${preExisting[`ok-${f}`]}/start`);
        if (expectAllowed(t, stOk, `control: start, at ${f}/…, of a compliant container created before the policy`)) {
          await expectRuns(t, s, preExisting[`ok-${f}`]!, `control: start at ${f}/…`, { start: false });
        }
      });
    }

    await t.test('class 5a: host-config fields at the top level of a create body (no HostConfig)', async (t) => {
      // dockerd reads a deprecated copy of HostConfig from the top level when the body has no (or a null) HostConfig.
      const top = (extra: Record<string, unknown>) => ({ Image: TEST_IMAGE, User: '1000', Cmd: ['sleep', '300'], Labels: { 'bulkhead.test': '1' }, NetworkMode: 'none', ...extra });
      const attacks: Array<[string, Record<string, unknown>, string[]]> = [
        ['Binds: /etc', { Binds: ETC_BIND }, ['hs.sensitive-mounts']],
        ['Binds: /etc, with "HostConfig": null', { Binds: ETC_BIND, HostConfig: null }, ['hs.sensitive-mounts']],
        ['Privileged: true', { Privileged: true }, ['hs.privileged']],
        ['CapAdd: SYS_ADMIN', { CapAdd: ['SYS_ADMIN'] }, ['hs.capabilities']],
        ['PidMode: host', { PidMode: 'host' }, ['hs.host-namespaces']],
      ];
      for (const [i, [why, extra, rules]] of attacks.entries()) {
        const name = s.name(`c5-a${i}`);
        const r = await s.raw('POST', `/${API}/containers/create?name=${name}`, top(extra));
        expectRefused(t, s, r, rules, `attack: top-level ${why}`);
        await expectNotCreated(t, s, name, `attack: top-level ${why}`);
      }
      const ok = s.name('c5-ok');
      const r = await s.raw('POST', `/${API}/containers/create?name=${ok}`, top({ Memory: 64 * MiB, Binds: [`${s.safeDir}:/data`] }));
      if (expectAllowed(t, r, 'control: top-level NetworkMode, Memory and an application-dir bind')) {
        const c = await expectRuns(t, s, ok, 'control: top-level host config');
        t.same(c && [c.HostConfig.Memory, c.HostConfig.Binds, c.HostConfig['NetworkMode']], [64 * MiB, [`${s.safeDir}:/data`], 'none'], 'control: dockerd took the top-level fields (inspect)');
      }
    });

    await t.test('class 5b: a host config as the body of POST /v1.23/containers/{id}/start', async (t) => {
      const legacy = async (tag: string, hc: Record<string, unknown>): Promise<{ name: string; r: RawResponse }> => {
        const name = s.name(tag);
        const c = await s.raw('POST', `/${API}/containers/create?name=${name}`, createBody({ User: '1000' }));
        if (c.status !== 201) throw new Error(`create ${name}: ${c.status} ${c.message}`);
        return { name, r: await s.raw('POST', `/v1.23/containers/${name}/start`, hc) };
      };
      const attacks: Array<[string, Record<string, unknown>, string[]]> = [
        ['Binds: /etc', { NetworkMode: 'none', Binds: ETC_BIND }, ['hs.sensitive-mounts']],
        ['PidMode: host', { NetworkMode: 'none', PidMode: 'host' }, ['hs.host-namespaces']],
        ['binds: /etc (lower case)', { networkmode: 'none', binds: ETC_BIND }, ['hs.sensitive-mounts']],
      ];
      const ok = { NetworkMode: 'none', Binds: [`${s.safeDir}:/data`] };
      if (s.version !== '20.10') {
        // dockerd >= 25 serves API 1.24 and later only ("client version 1.23 is too old", 400);
        // the plugin is asked first and may refuse it itself (403). Either way nothing starts.
        for (const [i, [why, hc]] of attacks.entries()) {
          const { name, r } = await legacy(`c5b-a${i}`, hc);
          t.ok(r.status === 400 || r.status === 403, `attack: start body with ${why}: refused (${r.status} ${r.message.slice(0, 120)})`);
          await expectNeverStarted(t, s, name, `attack: start body with ${why}`);
        }
        const { name, r } = await legacy('c5b-ok', ok);
        t.equal(r.status, 400, `control: dockerd ${s.version} itself refuses API 1.23 (${r.message.slice(0, 120)})`);
        await expectNeverStarted(t, s, name, 'control: a /v1.23 start');
        return;
      }
      for (const [i, [why, hc, rules]] of attacks.entries()) {
        const { name, r } = await legacy(`c5b-a${i}`, hc);
        expectRefused(t, s, r, rules, `attack: start body with ${why}`);
        await expectNeverStarted(t, s, name, `attack: start body with ${why}`);
        t.same((await s.container(name))?.HostConfig.Binds ?? null, null, `attack: start body with ${why}: the stored host config is unchanged (inspect)`);
      }
      const { name, r } = await legacy('c5b-ok', ok);
      if (expectAllowed(t, r, 'control: start body with NetworkMode none and an application-dir bind')) {
        const c = await expectRuns(t, s, name, 'control: a /v1.23 start with a harmless host config', { start: false });
        t.same(c?.HostConfig.Binds, [`${s.safeDir}:/data`], 'control: dockerd applied the start body (inspect)');
      }
    });

    await t.test('the plugin never answered "allow" because it could not decide (fail-open)', async (t) => {
      const failOpen = s.agentLog().filter((l) => /fail-open/.test(String(l['msg'])));
      t.same(failOpen.map((l) => `${String(l['method'])} ${String(l['path'])}: ${JSON.stringify(l['err'])}`), [], 'no fail-open decisions in the agent log');
    });
  });
}
