// How the agent process runs in production, for benchmarks that start it (or
// its authorization plugin) as a process of its own: the node flags of the
// systemd unit's ExecStart and the unit's Environment= lines
// (deploy/systemd/bulkhead-agent.service), so a benchmark measures what is
// deployed. BENCH_AGENT_NODE_FLAGS (space-separated) overrides the flags;
// variables already set in the benchmark's environment win over the unit's.
// BENCH_AGENT_NODE names another node binary for the agent (e.g. a Node 24
// build) while the benchmark, the controller and the CLI stay on this one.
'use strict';
const { readFileSync } = require('node:fs');
const { join } = require('node:path');

const UNIT = readFileSync(join(__dirname, '..', '..', 'deploy/systemd/bulkhead-agent.service'), 'utf8');
const UNIT_FLAGS = (/^ExecStart=\S+((?: --\S+)*) /m.exec(UNIT)?.[1] ?? '').trim();

/** The node flags the agent runs with. */
const AGENT_NODE_FLAGS = (process.env.BENCH_AGENT_NODE_FLAGS ?? UNIT_FLAGS).split(' ').filter(Boolean);

/** The node binary the agent runs on (default: the benchmark's own). */
const AGENT_NODE = process.env.BENCH_AGENT_NODE || process.execPath;

/** The unit's Environment= variables (NAME=value, unquoted). */
const UNIT_ENV = Object.fromEntries([...UNIT.matchAll(/^Environment=([A-Za-z_][A-Za-z0-9_]*)=(\S*)$/gm)].map((m) => [m[1], m[2]]));

/** The environment for an agent process: the unit's variables under the benchmark's own. */
function agentEnv() {
  return { ...UNIT_ENV, ...process.env };
}

module.exports = { AGENT_NODE, AGENT_NODE_FLAGS, UNIT_ENV, agentEnv };
