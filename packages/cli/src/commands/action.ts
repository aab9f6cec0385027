// Owns `bulkhead action AGENT CONTAINER ACTION`: pause, unpause, kill,
// stop, quarantine or release one container through its agent, and print
// what the agent reports. Exit 0 only when the agent carried it out; 1 when
// the API or the agent refused or failed (agent offline, no answer in
// time, engine error); 3 when the controller cannot be reached.
import { Argument, InvalidArgumentError, type Command } from 'commander';
import { MANUAL_ACTIONS, MAX_STOP_TIMEOUT_SECONDS } from '@bulkhead/client';
import type { ContainerActionResult as ContainerActionResultDto } from '@bulkhead/client';
import { formatKeyValues } from '../table';
import { toJson, type CommandContext } from './context';

const PAST: Record<string, string> = {
  pause: 'paused',
  unpause: 'unpaused',
  kill: 'killed',
  stop: 'stopped',
  quarantine: 'quarantined',
  release: 'released',
};

export function registerActionCommand(program: Command, ctx: CommandContext): void {
  program
    .command('action')
    .description('pause, unpause, kill, stop, quarantine or release a container through its agent (operator role)')
    .argument('<agent>', 'agent id (agt_…)')
    .argument('<container>', 'container id, unique id prefix (12+ hex digits) or name')
    .addArgument(new Argument('<action>', 'what to do').choices([...MANUAL_ACTIONS]))
    .option('--timeout <seconds>', `stop only: seconds between SIGTERM and SIGKILL (0–${MAX_STOP_TIMEOUT_SECONDS}; default 10)`, parseStopTimeout)
    .addHelpText(
      'after',
      '\nquarantine disconnects the container from every network and the agent remembers which;\n' +
        'release reconnects exactly those (with their aliases and static addresses).\n' +
        '\nExit codes: 0 the agent carried it out, 1 refused or failed (agent offline, no answer in time,\n' +
        'engine error), 2 usage error, 3 cannot connect.\n' +
        '\nExamples:\n  bulkhead action agt_3f9c2a7b1d0e4f5a6b7c web pause\n  bulkhead action agt_3f9c2a7b1d0e4f5a6b7c 3f2a9c1b7d4e stop --timeout 5\n' +
        '  bulkhead action agt_3f9c2a7b1d0e4f5a6b7c web quarantine && bulkhead action agt_3f9c2a7b1d0e4f5a6b7c web release\n' +
        '  bulkhead --json action agt_3f9c2a7b1d0e4f5a6b7c web kill\n',
    )
    .action(async (agent: string, container: string, action: (typeof MANUAL_ACTIONS)[number], o: { timeout?: number }, cmd: Command) => {
      if (o.timeout !== undefined && action !== 'stop') throw ctx.usageError('--timeout applies only to the stop action');
      const { api, json } = ctx.client(cmd);
      const result = await api.containerAction(agent, container, { action, ...(o.timeout !== undefined ? { stopTimeoutSeconds: o.timeout } : {}) });
      ctx.out(json ? toJson(result) : renderResult(result));
    });
}

function renderResult(r: ContainerActionResultDto): string {
  const name = r.containerName.replace(/^\//, '') || r.containerId.slice(0, 12);
  return formatKeyValues([
    ['Container', `${name} (${r.containerId.slice(0, 12)}) on ${r.agentId}`],
    ['Action', `${r.action}: ${PAST[r.action] ?? 'done'}`],
    ['Detail', r.detail || '-'],
    ['State', r.state || 'unknown'],
    ['Took', `${Math.round(r.durationMs)} ms`],
    ['Command', r.id],
  ]);
}

function parseStopTimeout(v: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n > MAX_STOP_TIMEOUT_SECONDS) {
    throw new InvalidArgumentError(`expected whole seconds from 0 to ${MAX_STOP_TIMEOUT_SECONDS}.`);
  }
  return n;
}
