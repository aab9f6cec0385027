#!/usr/bin/env node
// A BENCH_AGENT_SCRIPT for bench/agent-idle.js: the built agent with its image-signature
// verifier FULLY loaded from the start. As shipped, the agent builds its verifier (registry
// client, verdict cache) at start but loads the Sigstore part (packages/agent/src/signatures/
// bundles.ts: @sigstore/bundle, @sigstore/verify, @sigstore/protobuf-specs) only when an image
// first has a Sigstore bundle or a keyless signature to check. This entry point loads it
// first, then runs the agent's own CLI, so agent-idle measures the agent as it is after that
// first verification (BENCHMARKS.md, "agent-idle with the signature verifier loaded").
'use strict';
const { join } = require('node:path');
const dist = join(__dirname, '../../packages/agent/dist');
require(join(dist, 'signatures/bundles.js'));
require(join(dist, 'signatures/verifier.js'));
const { main } = require(join(dist, 'cli/main.js'));
main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
  if (code !== 0) process.exit(code);
});
