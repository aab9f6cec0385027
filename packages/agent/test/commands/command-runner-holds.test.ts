// The operator's commands and Bulkhead's holds (enforce/holds.ts): a manual
// pause or quarantine is held like a policy one; unpause, release and stop
// end the hold BEFORE their own engine call, so the agent's own requests are
// ordinary ones at the door (nothing on them marks them as the agent's).
import t from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger, type Command__Output } from '@bulkhead/shared';
import { CommandRunner, type CommandDocker } from '../../src/commands/command-runner';
import { QuarantineMemory } from '../../src/commands/quarantine-memory';
import { EnforcementHolds } from '../../src/enforce/holds';

const logger = createLogger({ name: 'runner-holds-test', level: 'silent' });
const ID = 'd'.repeat(64);

t.test('manual holds are made, and ended before the agent\'s own call', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'bk-holds-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const holds = EnforcementHolds.open(dir, logger);
  let status = 'running';
  let attached = true;
  const seen: Array<[string, boolean]> = [];
  const docker: CommandDocker = {
    getContainer: () => ({
      kill: async () => undefined,
      stop: async () => { seen.push(['stop', holds.get(ID, 'pause') !== undefined]); status = 'exited'; },
      pause: async () => { status = 'paused'; },
      unpause: async () => {
        seen.push(['unpause', holds.get(ID, 'pause') !== undefined]);
        if (status !== 'paused') throw Object.assign(new Error('Container is not paused'), { statusCode: 409, json: { message: `Container ${ID} is not paused` } });
        status = 'running';
      },
      update: async () => undefined,
      inspect: async () => ({ Id: ID, Name: '/web', State: { Status: status }, HostConfig: { NetworkMode: 'appnet' }, NetworkSettings: { Networks: attached ? { appnet: { NetworkID: 'n1', Aliases: ['web'] } } : {} } }) as never,
    }),
    getNetwork: () => ({
      connect: async () => { seen.push(['connect', holds.get(ID, 'quarantine') !== undefined]); attached = true; },
      disconnect: async () => { attached = false; },
    }),
  };
  const runner = new CommandRunner({ docker, memory: QuarantineMemory.open(dir, logger), holds, logger });
  const cmd = (action: string): Command__Output => ({ id: `c-${action}`, containerId: ID, action, requestedBy: 'ak_ops', stopTimeoutSeconds: 1 } as Command__Output);

  t.ok((await runner.run(cmd('quarantine'))).ok);
  t.same(holds.get(ID, 'quarantine')?.rules, ['manual.quarantine'], 'a manual quarantine is held');
  t.equal(holds.get(ID, 'quarantine')?.by, 'ak_ops');
  const rel = await runner.run(cmd('release'));
  t.ok(rel.ok, rel.error ?? "");
  t.same(seen.at(-1), ['connect', false], 'release: the hold ended before the agent reconnected');
  t.equal(holds.get(ID, 'quarantine'), undefined);

  t.ok((await runner.run(cmd('pause'))).ok);
  t.same(holds.get(ID, 'pause')?.rules, ['manual.pause'], 'a manual pause is held');
  const un = await runner.run(cmd('unpause'));
  t.ok(un.ok, un.error ?? "");
  t.same(seen.at(-1), ['unpause', false], 'unpause: the hold ended before the agent unpaused');
  t.match(un.detail, /hold on the container released/);

  holds.add(ID, 'web', 'pause', { rules: ['live.cpu'], escalated: true, at: 'x', by: 'policy v3' });
  t.ok((await runner.run(cmd('stop'))).ok);
  t.same(seen.at(-1), ['stop', false], 'stop of a held container: the operator takes over (dockerd resumes it to stop it)');

  holds.add(ID, 'web', 'pause', { rules: ['live.cpu'], at: 'x', by: 'policy v3' });
  const again = EnforcementHolds.open(dir, logger);
  t.same(again.get(ID, 'pause')?.rules, ['live.cpu'], 'holds survive an agent restart (holds.json)');
  const exited = await runner.run(cmd('unpause'));
  t.ok(exited.ok, exited.error ?? "");
  t.match(exited.detail, /not paused; Bulkhead's hold on the container released/, 'unpause of an exited held container releases the hold (it may be started again)');
  holds.add(ID, 'web', 'quarantine', { rules: ['live.net'], at: '2026-12-07T14:00:00.000Z', by: 'policy v3' });
  t.notOk(holds.undone(ID, 'quarantine', Date.parse('2026-12-07T13:59:59.000Z')), 'an event from before the hold ends nothing');
  t.ok(holds.undone(ID, 'quarantine', Date.parse('2026-12-07T14:00:01.000Z')), 'an event after it: moot, ended');
  holds.add(ID, 'web', 'pause', { rules: ['live.cpu'], at: 'x', by: 'policy v3' });
  holds.forget(ID);
  t.equal(EnforcementHolds.open(dir, logger).size, 0);
});
