// The authorization plugin of bench/authz-overhead.js as a process of its own,
// started (fork) with the agent's production node flags and environment
// (bench/lib/agent-runtime.js), as in production, where the plugin lives in the
// agent process. The parent drives it over the IPC channel:
//   {type:'start', socketPath, policyPath, stateDir, dockerSock} → {type:'started'}
//   {type:'mode', mode}  → {type:'mode'}   (bare | allow | bulkhead; set between creates)
//   {type:'stats', reset} → {type:'stats', plugin, decisions}  (reset: decisions start again)
//   {type:'stop'}        → {type:'stopped'}, then exits
// Modes: `bare` answers from AuthzPlugin's `preempt` hook before the request
// is parsed; `allow` parses it and allows; `bulkhead` asks the AuthzDecider.
'use strict';
const { createWriteStream } = require('node:fs');
const { join, resolve } = require('node:path');
const Docker = require('dockerode');

const ROOT = resolve(__dirname, '../..');
const { createLogger } = require(join(ROOT, 'packages/shared/dist/index.js'));
const { AuthzPlugin } = require(join(ROOT, 'packages/agent/dist/authz/plugin-server.js'));
const { AuthzDecider } = require(join(ROOT, 'packages/agent/dist/authz/authz-decider.js'));
const { PolicyHolder } = require(join(ROOT, 'packages/agent/dist/policy/policy-holder.js'));

const ALLOW = { allow: true };
let mode = 'allow';
let plugin;
const decisions = { reports: 0, denied: 0, decisionMs: [] };

async function start(m) {
  const logger = createLogger({ name: 'bench-authz-plugin', level: process.env.BENCH_LOG_LEVEL ?? 'info', destination: createWriteStream('/dev/null') });
  const holder = PolicyHolder.open({ stateDir: m.stateDir, logger, localPolicyPath: m.policyPath });
  const decider = new AuthzDecider({
    policy: () => holder.state, containers: { get: () => undefined, inventory: () => [] }, docker: new Docker({ socketPath: m.dockerSock }), logger,
    onDecision: (d) => { decisions.reports++; if (d.denied) decisions.denied++; if (d.route === 'create') decisions.decisionMs.push(d.decisionMs); },
  });
  plugin = await AuthzPlugin.start({
    socketPath: m.socketPath,
    logger,
    preempt: () => (mode === 'bare' ? ALLOW : undefined),
    evaluate: (req) => (mode === 'bulkhead' ? decider.decide(req) : ALLOW),
  });
}

process.on('message', (m) => {
  const reply = (msg) => process.send(msg);
  const fail = (err) => reply({ type: 'error', message: err.stack ?? String(err) });
  if (m.type === 'start') start(m).then(() => reply({ type: 'started' }), fail);
  else if (m.type === 'mode') { mode = m.mode; reply({ type: 'mode' }); }
  else if (m.type === 'stats') {
    reply({ type: 'stats', plugin: { ...plugin.stats }, decisions });
    if (m.reset) Object.assign(decisions, { reports: 0, denied: 0, decisionMs: [] });
  }
  else if (m.type === 'stop') (plugin ? plugin.stop() : Promise.resolve()).then(() => { plugin = undefined; reply({ type: 'stopped' }); process.disconnect(); }, fail);
});
// The parent gone (killed, crashed): do not linger holding the socket.
process.on('disconnect', () => { if (plugin) plugin.stop().finally(() => process.exit(0)); else process.exit(0); });
