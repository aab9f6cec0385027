// Authorization-plugin bypasses, end to end — class 12: UNDOING an
// enforcement action with plain Docker API calls. Bulkhead paused,
// quarantined or limited a running container that breaks an enforced rule;
// a user who may use the Docker API (through the plugin) undid it and the
// container kept running as before:
//   - `docker unpause` (not judged at all), and after the enforcer's third
//     action the escalation pause — "left alone from then on" — undone for good;
//   - `docker kill -s WINCH` (any signal but SIGKILL): dockerd resumes a paused
//     container after signalling it;
//   - `docker stop -t N`: dockerd resumes a paused container for the timeout;
//   - `docker network connect` of a quarantined container (judged only by the
//     network rules, which a quarantine need not come from);
//   - `docker update` raising the limits a `limit` action applied (judged only
//     on what the resource rules find) — and, until session 12, `MemorySwap`
//     alone (-1: unlimited swap under a 64m limit) was not compared at all;
//   - `docker cp` INTO a paused or quarantined container (`PUT …/archive`, never
//     judged until session 12): a file planted in what Bulkhead holds for a look.
// Now (enforce/holds.ts) each is refused naming the rule and how to release
// through Bulkhead, and recorded; in monitor mode recorded only. Releases
// through Bulkhead (`bulkhead action … unpause|release`) pass: the agent ends
// its hold before its own engine call. Controls of the same shape on
// containers Bulkhead holds nothing of are allowed. Plus: the start of a
// container Bulkhead killed is judged on its stored config (refused; it was
// before too).
//
//   - a name swap racing the agent's inventory: a container named after the held
//     one's id prefix, renamed away, then `unpause <prefix>` (dockerd: the held
//     one; the inventory, a moment behind: the other) — now held containers win
//     any ref that may reach them, and a held container's rename is refused.
// Probed and harmless (kept as checks): exec into a paused container (dockerd
// refuses it), commit of a paused one (stays paused).
//
// Each container is made before the policy is in force (nothing refuses its
// create), so the reaction path acts on it when the policy arrives.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  API, engineVersions, expectAllowed, expectRefused, outcomeText, padded, sleep, startBypassStack, type Outcome,
} from '../helpers/authz-bypass-stack';
import { LABEL_ARGS, TEST_IMAGE } from '../helpers/engine';
import { apiRequest, waitFor } from '../helpers/processes';

const policy = (mode: 'enforce' | 'monitor'): string => {
  const rule = (id: string, action: string) =>
    `    - id: undo.${id}\n      description: undo.${id}\n      severity: high\n      mode: ${mode}\n      action: ${action}\n      scope: { containerLabels: { bkab.undo: ${id} } }\n      check: { type: no-new-privileges }\n`;
  return `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: authz-bypass }
spec:
  rules:
${rule('pause', '{ type: pause }')}${rule('quarantine', '{ type: quarantine }')}${rule('limit', '{ type: limit, limits: { memory: 64m, pids: 100 } }')}${rule('kill', '{ type: kill }')}`;
};

const MiB = 1024 * 1024;

for (const version of engineVersions()) {
  t.test(`dockerd ${version}: undoing what Bulkhead did`, async (t) => {
    const names: Record<string, string> = {};
    let net = '';
    let net2 = '';
    const s = await startBypassStack(t, {
      version,
      policy: () => policy('enforce'),
      beforePolicy: async (s) => {
        net = s.name('net');
        net2 = s.name('net2');
        await s.dockerOk(['network', 'create', '--internal', net]);
        await s.dockerOk(['network', 'create', '--internal', net2]);
        const run = async (tag: string, undo: string | undefined, network: string, extra: string[] = []): Promise<void> => {
          names[tag] = s.name(tag);
          await s.dockerOk(['run', '-d', '--name', names[tag]!, '--network', network, ...LABEL_ARGS, ...(undo ? ['--label', `bkab.undo=${undo}`] : []), ...extra, TEST_IMAGE, 'sleep', '600']);
        };
        for (const tag of ['p-unpause', 'p-kill', 'p-stop', 'p-release', 'p-monitor', 'p-cp']) await run(tag, 'pause', 'none');
        await run('q', 'quarantine', net);
        await run('q-release', 'quarantine', net);
        await run('l', 'limit', 'none');
        await run('k', 'kill', 'none');
        // Controls: nothing of Bulkhead's on them.
        await run('c-paused', undefined, 'none');
        await run('c-net', undefined, net2);
        await run('c-mq', undefined, net);
        await run('c-limit', undefined, 'none', ['--memory', '64m', '--memory-swap', '64m']);
        await run('c-cp', undefined, 'none');
      },
    });
    const c = async (tag: string) => (await s.container(names[tag]!))!;
    const state = async (tag: string) => (await c(tag)).State.Status;
    const networksOf = async (tag: string) => Object.keys(((await c(tag)) as unknown as { NetworkSettings: { Networks: Record<string, unknown> } }).NetworkSettings.Networks ?? {});
    const held = async (tag: string, what: string, ok: () => Promise<boolean>) => waitFor(`${names[tag]} ${what} by Bulkhead`, ok, 15_000, 100);
    const says = (t: tap.Test, o: Outcome, re: RegExp, what: string) => t.match(outcomeText(o), re, what);

    for (const tag of ['p-unpause', 'p-kill', 'p-stop', 'p-release', 'p-monitor', 'p-cp']) await held(tag, 'paused', async () => (await state(tag)) === 'paused');
    await held('q', 'quarantined', async () => (await networksOf('q')).length === 0);
    await held('q-release', 'quarantined', async () => (await networksOf('q-release')).length === 0);
    await held('l', 'limited', async () => (await c('l')).HostConfig.Memory === 64 * MiB);
    await held('k', 'killed', async () => !(await c('k')).State.Running);
    await s.dockerOk(['pause', names['c-paused']!]);
    const agentId = s.agent.agentId;
    const act = (tag: string, action: string) => apiRequest<{ ok?: boolean; detail?: string; state?: string }>(
      s.ctl.apiBase, 'POST', `/v1/containers/${agentId}/${names[tag]}/actions`, s.ctl.caPem, s.ctl.adminKey, JSON.stringify({ action }));

    await t.test('unpause of a container Bulkhead paused: refused every time, naming the rule and the release', async (t) => {
      for (let i = 1; i <= 4; i++) {
        const r = await s.docker(['unpause', names['p-unpause']!]);
        t.comment(`unpause #${i}: ${outcomeText(r)}`);
        expectRefused(t, s, r, ['undo.pause'], `unpause #${i}`);
        if (i === 1) says(t, r, new RegExp(`stays held until released: bulkhead action ${agentId} ${names['p-unpause']} unpause`), 'the denial says how to release through Bulkhead');
        await sleep(700); // before: the enforcer re-paused it; the 4th unpause undid the escalation for good
      }
      t.equal(await state('p-unpause'), 'paused', 'still paused (inspect)');
      const r = await s.docker(['unpause', names['c-paused']!]);
      expectAllowed(t, r, 'control: unpause of a container a user paused');
      t.equal(await state('c-paused'), 'running', 'control: running again');
    });

    await t.test('kill with a signal that resumes a paused container: refused; SIGKILL allowed', async (t) => {
      for (const sig of ['WINCH', 'SIGCONT', '15']) {
        const r = await s.raw('POST', `/${API}/containers/${names['p-kill']}/kill?signal=${sig}`);
        t.comment(`kill -s ${sig}: ${outcomeText(r)}`);
        expectRefused(t, s, r, ['undo.pause'], `kill -s ${sig}`);
      }
      // dockerd reads the signal with r.Form.Get: a form-encoded body's value comes first, and no plugin sees that body.
      const form = await s.raw('POST', `/${API}/containers/${names['p-kill']}/kill`, 'signal=WINCH', { contentType: 'application/x-www-form-urlencoded' });
      t.comment(`kill with signal=WINCH in a form-encoded body: ${outcomeText(form)}`);
      expectRefused(t, s, form, ['undo.pause'], 'kill with the signal in a form-encoded body');
      await sleep(300);
      t.equal(await state('p-kill'), 'paused', 'still paused (inspect)');
      const control = await s.docker(['kill', '-s', 'WINCH', names['c-paused']!]);
      expectAllowed(t, control, 'control: kill -s WINCH of a running container Bulkhead holds nothing of');
    });

    await t.test('stop of a paused container (dockerd resumes it for the timeout): refused', async (t) => {
      const r = await s.raw('POST', `/${API}/containers/${names['p-stop']}/stop?t=5`);
      t.comment(`stop -t 5: ${outcomeText(r)}`);
      expectRefused(t, s, r, ['undo.pause'], 'stop -t 5');
      says(t, r, /docker stop resumes a paused container/, 'the denial says why and what ends it instead');
      t.equal(await state('p-stop'), 'paused', 'still paused (inspect)');
      const restart = await s.raw('POST', `/${API}/containers/${names['p-stop']}/restart?t=1`);
      expectRefused(t, s, restart, ['undo.pause'], 'restart');
      const kill = await s.docker(['kill', names['p-stop']!]);
      expectAllowed(t, kill, 'docker kill (SIGKILL) of the held container: ends it');
      const start = await s.docker(['start', names['p-stop']!]);
      t.comment(`start after the kill: ${outcomeText(start)}`);
      expectRefused(t, s, start, ['undo.pause'], 'start of the held container after the kill');
      t.equal(await state('p-stop'), 'exited', 'not running (inspect)');
    });

    await t.test('network connect of a quarantined container: refused (a padded body too); controls allowed', async (t) => {
      const r = await s.docker(['network', 'connect', net, names['q']!]);
      t.comment(`network connect: ${outcomeText(r)}`);
      expectRefused(t, s, r, ['undo.quarantine'], 'network connect');
      says(t, r, new RegExp(`bulkhead action ${agentId} ${names['q']} release`), 'the denial says how to release through Bulkhead');
      const other = await s.docker(['network', 'connect', net2, names['q']!]);
      expectRefused(t, s, other, ['undo.quarantine'], 'network connect to another network');
      const pad = await s.raw('POST', `/${API}/networks/${net}/connect`, padded({ Container: names['q'] }));
      t.comment(`padded connect: ${outcomeText(pad)}`);
      expectRefused(t, s, pad, ['undo.quarantine'], 'network connect padded past 1 MiB');
      t.same(await networksOf('q'), [], 'still on no network (inspect)');
      expectAllowed(t, await s.docker(['network', 'connect', net, names['c-net']!]), 'control: connect of a container Bulkhead holds nothing of');
      expectAllowed(t, await s.docker(['network', 'disconnect', net, names['c-net']!]), 'control: disconnect');
    });

    await t.test('update loosening the limits Bulkhead applied: refused; tightening and controls allowed', async (t) => {
      const r = await s.docker(['update', '--memory', '1g', '--memory-swap', '1g', names['l']!]);
      t.comment(`update --memory 1g: ${outcomeText(r)}`);
      expectRefused(t, s, r, ['undo.limit'], 'update --memory 1g');
      says(t, r, /Bulkhead applied this rule's limits \(memory 64m, pids 100\)/, 'the denial names the limits');
      expectRefused(t, s, await s.docker(['update', '--pids-limit', '-1', names['l']!]), ['undo.limit'], 'update --pids-limit -1');
      t.equal((await c('l')).HostConfig.Memory, 64 * MiB, 'memory limit still 64 MiB (inspect)');
      // MemorySwap alone (Memory unchanged): memory+swap past the rule's memory, or -1 (unlimited swap).
      for (const swap of [-1, 1024 * MiB]) {
        const u = await s.raw('POST', `/${API}/containers/${names['l']}/update`, { MemorySwap: swap });
        t.comment(`update {"MemorySwap":${swap}}: ${outcomeText(u)}; MemorySwap after: ${(await c('l')).HostConfig['MemorySwap']}`);
        expectRefused(t, s, u, ['undo.limit'], `update MemorySwap ${swap} alone`);
      }
      expectRefused(t, s, await s.docker(['update', '--memory-swap', '-1', names['l']!]), ['undo.limit'], 'docker update --memory-swap -1');
      t.equal((await c('l')).HostConfig['MemorySwap'], 64 * MiB, 'memory+swap still 64 MiB (inspect)');
      expectAllowed(t, await s.raw('POST', `/${API}/containers/${names['l']}/update`, { MemorySwap: 64 * MiB }), 'MemorySwap equal to the rule\'s memory');
      expectAllowed(t, await s.raw('POST', `/${API}/containers/${names['c-limit']}/update`, { MemorySwap: -1 }), 'control: MemorySwap -1 on a container Bulkhead did not limit');
      expectAllowed(t, await s.docker(['update', '--memory', '32m', '--memory-swap', '32m', names['l']!]), 'tighter: allowed');
      expectAllowed(t, await s.docker(['update', '--memory', '1g', '--memory-swap', '1g', names['c-limit']!]), 'control: raising a limit Bulkhead did not apply');
    });

    await t.test('start of a container Bulkhead killed: judged on its stored config', async (t) => {
      const r = await s.docker(['start', names['k']!]);
      t.comment(`start: ${outcomeText(r)}`);
      expectRefused(t, s, r, ['undo.kill'], 'start of the killed container');
      t.notOk((await c('k')).State.Running, 'not running (inspect)');
      // A restart policy does not bring back a container killed through the API (dockerd marks it manually stopped).
      const u = await s.docker(['update', '--restart', 'always', names['k']!]);
      t.comment(`update --restart always: ${outcomeText(u)}`);
      await sleep(2000);
      t.notOk((await c('k')).State.Running, 'still not running 2 s after a restart policy of always (inspect)');
    });

    await t.test('docker cp into a held container: refused (paused, quarantined); cp out and controls allowed', async (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'bkab-cp-'));
      t.teardown(() => rmSync(dir, { recursive: true, force: true }));
      writeFileSync(join(dir, 'planted.sh'), '#!/bin/sh\necho planted\n', { mode: 0o755 });
      const tar = execFileSync('tar', ['-C', dir, '-cf', '-', 'planted.sh']);
      const planted = async (tag: string) => (await s.raw('GET', `/${API}/containers/${names[tag]}/archive?path=/planted.sh`)).status;
      for (const [tag, rule] of [['p-cp', 'undo.pause'], ['q', 'undo.quarantine']] as const) {
        const cli = await s.docker(['cp', join(dir, 'planted.sh'), `${names[tag]}:/planted.sh`]);
        t.comment(`docker cp into ${tag}: ${outcomeText(cli)}`);
        expectRefused(t, s, cli, [rule], `docker cp into ${tag}`);
        const raw = await s.raw('PUT', `/${API}/containers/${names[tag]}/archive?path=/`, tar, { contentType: 'application/x-tar' });
        t.comment(`PUT archive into ${tag}: ${outcomeText(raw)}`);
        expectRefused(t, s, raw, [rule], `PUT /containers/{id}/archive into ${tag}`);
        const chunked = await s.raw('PUT', `/${API}/containers/${names[tag]}/archive?path=/`, tar, { contentType: 'application/x-tar', chunked: true });
        expectRefused(t, s, chunked, [rule], `chunked PUT archive into ${tag}`);
        const unversioned = await s.raw('PUT', `/containers/${names[tag]}/archive?path=/`, tar, { contentType: 'application/x-tar' });
        expectRefused(t, s, unversioned, [rule], `PUT archive into ${tag}, no API version in the path`);
        t.equal(await planted(tag), 404, `nothing planted in ${tag} (GET archive)`);
        const out = await s.docker(['cp', `${names[tag]}:/bin/busybox`, join(dir, `out-${tag}`)]);
        expectAllowed(t, out, `docker cp out of ${tag} (evidence can be read)`);
      }
      t.equal(await state('p-cp'), 'paused', 'still paused (inspect)');
      expectAllowed(t, await s.docker(['cp', join(dir, 'planted.sh'), `${names['c-cp']}:/planted.sh`]), 'control: docker cp into a container Bulkhead holds nothing of');
      t.equal(await planted('c-cp'), 200, 'control: the file is there');
    });

    await t.test('around a pause: rename refused, a name swap racing the inventory refused; exec, commit harmless', async (t) => {
      const ren = await s.docker(['rename', names['p-cp']!, s.name('p-cp-renamed')]);
      t.comment(`rename of the held container: ${outcomeText(ren)}`);
      expectRefused(t, s, ren, ['undo.pause'], 'rename of the held container');
      const raw = await s.raw('POST', `/containers/${names['p-cp']}/unpause`);
      expectRefused(t, s, raw, ['undo.pause'], 'unpause with no API version in the path');
      // Before session 12: a container named after the held one's id prefix, renamed away, left the
      // agent's inventory mapping the prefix to it for a moment while dockerd resolved it to the held
      // one — an unpause through it got past the door 4 times in 15 on both engines.
      const prefix = (await c('p-cp')).Id.slice(0, 12);
      // By the control container's full id: a ref that may reach the held container (its id prefix) is judged as it.
      const cid = (await c('c-cp')).Id;
      let swapName = names['c-cp']!;
      for (let i = 0; i < 5; i++) {
        await s.dockerOk(['rename', cid, prefix]);
        await sleep(300); // the agent's inventory has the control container under that name
        swapName = `${names['c-cp']}-${i}`;
        await s.dockerOk(['rename', cid, swapName]);
        const un = await s.raw('POST', `/${API}/containers/${prefix}/unpause`);
        t.comment(`#${i}: unpause <held id prefix> right after the name swap: ${outcomeText(un).slice(0, 100)}`);
        expectRefused(t, s, un, ['undo.pause'], `unpause through a name the inventory still gives another container (#${i})`);
      }
      names['c-cp'] = swapName;
      const ex = await s.docker(['exec', names['p-cp']!, 'true']);
      t.comment(`exec into the paused container: ${outcomeText(ex)}`);
      t.not(ex.code, 0, 'exec into a paused container: dockerd refuses it itself');
      const cm = await s.docker(['commit', names['p-cp']!, `${s.name('commit')}:1`]);
      t.comment(`commit of the paused container: ${outcomeText(cm)}`);
      t.equal(await state('p-cp'), 'paused', 'still paused after all of it (inspect)');
      expectAllowed(t, await s.docker(['rename', names['c-cp']!, `${names['c-cp']}-r`]), 'control: rename of a container Bulkhead holds nothing of');
    });

    await t.test('every denial is recorded (source authz, denied)', async (t) => {
      await sleep(500);
      const v = (await s.violations()).filter((x) => x.source === 'authz' && x.denied);
      for (const [tag, rule] of [['p-unpause', 'undo.pause'], ['p-kill', 'undo.pause'], ['p-stop', 'undo.pause'], ['q', 'undo.quarantine'], ['l', 'undo.limit']] as const) {
        t.ok(v.some((x) => x.containerName === names[tag] && x.ruleId === rule), `${names[tag]}: ${rule} denial recorded`);
      }
    });

    await t.test('restart of a container an operator quarantined: dockerd puts it back on its network; refused', async (t) => {
      const q = await act('c-mq', 'quarantine');
      t.equal(q.status, 200, `bulkhead action … quarantine: ${JSON.stringify(q.body)}`);
      t.same(await networksOf('c-mq'), [], 'quarantined (inspect)');
      const r = await s.docker(['restart', '-t', '0', names['c-mq']!]);
      t.comment(`restart: ${outcomeText(r)}; networks after: ${JSON.stringify(await networksOf('c-mq'))}`);
      expectRefused(t, s, r, ['manual.quarantine'], 'restart of the quarantined container');
      t.same(await networksOf('c-mq'), [], 'still on no network (inspect)');
      const rel = await act('c-mq', 'release');
      t.equal(rel.status, 200, `bulkhead action … release: ${JSON.stringify(rel.body)}`);
      t.same(await networksOf('c-mq'), [net], 'released through Bulkhead: back on its network');
    });

    await t.test('releases through Bulkhead pass the door', async (t) => {
      const un = await act('p-release', 'unpause');
      t.equal(un.status, 200, `bulkhead action … unpause: ${JSON.stringify(un.body)}`);
      t.match(un.body.detail ?? '', /unpause done; Bulkhead's hold on the container released/);
      const rel = await act('q-release', 'release');
      t.equal(rel.status, 200, `bulkhead action … release: ${JSON.stringify(rel.body)}`);
      t.match(rel.body.detail ?? '', /reconnected to 1\/1 network\(s\)/, 'the policy quarantine\'s network was remembered and reconnected');
    });

    await t.test('monitor mode: the undo is recorded, not refused', async (t) => {
      await s.applyPolicy(policy('monitor'));
      const r = await s.docker(['unpause', names['p-monitor']!]);
      expectAllowed(t, r, 'unpause in monitor mode');
      t.equal(await state('p-monitor'), 'running', 'running (inspect)');
      const rec = await waitFor('the monitor-mode undo recorded', async () =>
        (await s.violations()).find((x) => x.containerName === names['p-monitor'] && x.source === 'authz' && x.ruleId === 'undo.pause' && !x.denied), 10_000, 200).catch(() => undefined);
      t.ok(rec, 'recorded (source authz, undo.pause, not denied)');
    });
  });
}
