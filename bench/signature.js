#!/usr/bin/env node
// image-signature: what the rule costs a `docker create`, and what a cold
// verification against a registry costs.
//
// 1. Cached verdict (the figure the issue bounds: ≤ 0.1 ms p50 over the same
//    create without the rule): two AuthzDeciders of this build in one process,
//    the same create envelope (the docker CLI 28 body of bench/authz-decider.js,
//    its image a repo digest of the loopback registry), a policy of host-safety
//    rules in enforce mode — one decider's policy also has an enforce
//    `image-signature` rule in scope, its verdict verified once and then
//    cached. Blocks of BLOCK creates alternate between the two (order flipped
//    every block) so load drift hits both alike; per block the median decision
//    time; reported: each side's median of block medians and the paired
//    per-block difference (p50 and p90 of the differences).
// 2. Cold verification: the real SignatureVerifier against Debian's
//    docker-registry 2.8 on loopback over HTTPS (test CA), the image signed by
//    real cosign 2.5: `verify` with the verdict cache cleared (connection and
//    TLS session warm, as for a second image of a busy host), and with a new
//    verifier each time (TLS handshake, CA files read). p50 / p99 of each.
//
// Usage: npm run build && node bench/signature.js [--blocks 40] [--block 250] [--cold 200] [--fresh 50]
//        (root: starts a registry with scripts/registry.sh; tools from scripts/sign-tools.sh)
'use strict';
const { join, resolve } = require('node:path');
const { mkdtempSync, mkdirSync, copyFileSync, writeFileSync, rmSync } = require('node:fs');
const { tmpdir } = require('node:os');

const ROOT = resolve(__dirname, '..');
const args = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : dflt;
};
const BLOCKS = arg('blocks', 40);
const BLOCK = arg('block', 250);
const COLD = arg('cold', 200);
const FRESH = arg('fresh', 50);

// The test helpers are TypeScript: compile them on the fly (transpile only).
// ts-node as tap ships it (its TypeScript plugin uses the same fork).
require('@isaacs/ts-node-temp-fork-for-pr-2009').register({ transpileOnly: true, compilerOptions: { module: 'commonjs', moduleResolution: 'node' } });
const reg = require(join(ROOT, 'test/helpers/registry.ts'));
const shared = require(join(ROOT, 'packages/shared/dist/index.js'));
const { AuthzDecider } = require(join(ROOT, 'packages/agent/dist/authz/authz-decider.js'));
const { parseAuthzRequest } = require(join(ROOT, 'packages/agent/dist/authz/plugin-server.js'));
const { SignatureGate } = require(join(ROOT, 'packages/agent/dist/signatures/signature-gate.js'));
const { createSignatureVerifier } = require(join(ROOT, 'packages/agent/dist/signatures/verifier.js'));

const quantile = (xs, q) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))];
};
const median = (xs) => quantile(xs, 0.5);
const us = (ms) => Math.round(ms * 1000 * 10) / 10;
const flush = () => new Promise((r) => setImmediate(r));

function body(image) {
  return JSON.stringify({
    Hostname: '', User: '1000', Env: ['APP_MODE=x'], Cmd: ['sleep', '600'], Image: image, Labels: { 'bulkhead.project': 'bench' },
    HostConfig: { NetworkMode: 'none', CapDrop: ['ALL'], ReadonlyRootfs: true, SecurityOpt: ['no-new-privileges'], Memory: 67108864, NanoCpus: 5e8, PidsLimit: 64 },
  }) + '\n';
}

function policyYaml(addr, keyFile, withRule) {
  const rule = (id, check) => `    - id: ${id}\n      description: ${id}\n      severity: high\n      mode: enforce\n      action: { type: stop }\n      check: ${check}\n`;
  return `apiVersion: bulkhead.dev/v1
kind: Policy
metadata: { name: bench-signature }
spec:
  rules:
${rule('host.privileged', '{ type: privileged }')}${rule('host.root-user', '{ type: root-user }')}${rule('host.capabilities', '{ type: capabilities }')}${rule('host.sensitive-mounts', '{ type: sensitive-mounts }')}${rule('host.namespaces', '{ type: host-namespaces }')}${rule('quota', '{ type: resource-limits }')}${withRule ? `    - id: images.signed
      description: signed
      severity: critical
      mode: enforce
      action: { type: stop }
      scope: { images: ["${addr}/bench/*"] }
      check:
        type: image-signature
        keys: [{ name: bench, file: ${JSON.stringify(keyFile)} }]
` : ''}`;
}

async function main() {
  const dir = mkdtempSync(join(tmpdir(), 'bk-bench-sig-'));
  const registry = await reg.startRegistry({});
  try {
    const key = await reg.generateCosignKeyPair(dir);
    const signed = await reg.pushSignedImage(registry, dir, 'bench/web:1', key, { signer: 'cosign' });
    const certsDir = join(dir, 'certs.d');
    mkdirSync(join(certsDir, registry.addr), { recursive: true });
    copyFileSync(registry.caFile, join(certsDir, registry.addr, 'ca.crt'));
    const keyFile = join(dir, 'bench.pub');
    writeFileSync(keyFile, key.publicKeyPem);
    const repoDigest = `${registry.addr}/bench/web@${signed.digest}`;

    const logger = shared.createLogger({ name: 'bench-signature', level: 'silent' });
    const image = { Id: `sha256:${'a1'.repeat(32)}`, RepoTags: [signed.ref], RepoDigests: [repoDigest], Config: { User: '1000', Env: [], Cmd: ['sh'] } };
    const docker = {
      getImage: () => ({ inspect: async () => image }),
      getContainer: () => ({ inspect: async () => { throw Object.assign(new Error('no such container'), { statusCode: 404 }); } }),
    };
    const containers = { get: () => undefined, inventory: () => [] };
    const verifier = await createSignatureVerifier({ registryCertsDir: certsDir, registryAuthFile: undefined, timeoutMs: 5000, cacheTtlMs: 600_000 });
    const gate = new SignatureGate({ verifier, logger });
    const state = (withRule) => ({ policy: shared.parsePolicy(policyYaml(registry.addr, keyFile, withRule)), scans: new Map(), version: 1, source: 'local', sha256: 'x', projectLabel: 'bulkhead.project' });
    const variants = [
      { name: 'without the rule', decider: new AuthzDecider({ policy: ((s) => () => s)(state(false)), containers, docker, logger, signatures: gate }), lat: [] },
      { name: 'with the rule (verdict cached)', decider: new AuthzDecider({ policy: ((s) => () => s)(state(true)), containers, docker, logger, signatures: gate }), lat: [] },
    ];
    const envelope = Buffer.from(JSON.stringify({
      RequestMethod: 'POST', RequestUri: '/v1.41/containers/create?name=bench', RequestBody: Buffer.from(body(signed.ref)).toString('base64'),
      RequestHeaders: { 'Content-Type': 'application/json' },
    }));
    const once = async (v) => {
      const d = v.decider.decide(parseAuthzRequest(envelope));
      const r = typeof d.then === 'function' ? await d : d;
      if (!r.allow) throw new Error(`${v.name}: denied: ${r.msg}`);
      return typeof d.then === 'function';
    };
    // First decision with the rule: verified against the registry, then cached.
    const t0 = performance.now();
    await once(variants[1]);
    const firstMs = performance.now() - t0;
    for (const v of variants) for (let i = 0; i < 2000; i++) await once(v);
    let asyncAnswers = 0;
    const diffs = [];
    for (let b = 0; b < BLOCKS; b++) {
      const meds = {};
      for (const v of b % 2 ? [...variants].reverse() : variants) {
        const lat = [];
        for (let i = 0; i < BLOCK; i++) {
          const s = performance.now();
          if (await once(v)) asyncAnswers++;
          lat.push(performance.now() - s);
        }
        await flush();
        meds[v.name] = median(lat);
        v.lat.push(meds[v.name]);
      }
      diffs.push(meds[variants[1].name] - meds[variants[0].name]);
    }

    // Cold verifications.
    const requirement = shared.signatureRequirement({ keys: [{ name: 'bench', file: keyFile }], minSignatures: 1 }, { keyFiles: new Map([[keyFile, key.publicKeyPem]]) });
    const cold = [];
    for (let i = 0; i < COLD; i++) {
      verifier.clear();
      const s = performance.now();
      const v = await verifier.verify(repoDigest, requirement);
      cold.push(performance.now() - s);
      if (v.status !== 'verified') throw new Error(`cold verification: ${v.status} ${v.message}`);
    }
    const fresh = [];
    for (let i = 0; i < FRESH; i++) {
      const fv = await createSignatureVerifier({ registryCertsDir: certsDir, registryAuthFile: undefined, timeoutMs: 5000, cacheTtlMs: 600_000 });
      const s = performance.now();
      const v = await fv.verify(repoDigest, requirement);
      fresh.push(performance.now() - s);
      fv.close();
      if (v.status !== 'verified') throw new Error(`fresh verification: ${v.status} ${v.message}`);
    }
    verifier.close();
    const out = {
      node: process.version,
      blocks: BLOCKS, block: BLOCK,
      decideP50us: Object.fromEntries(variants.map((v) => [v.name, us(median(v.lat))])),
      pairedDiffP50us: us(median(diffs)),
      pairedDiffP90us: us(quantile(diffs, 0.9)),
      answeredAsynchronouslyWithCachedVerdict: asyncAnswers,
      firstCreateWithVerificationMs: Math.round(firstMs * 10) / 10,
      coldVerifyMs: { n: COLD, p50: Math.round(median(cold) * 10) / 10, p99: Math.round(quantile(cold, 0.99) * 10) / 10 },
      freshVerifierVerifyMs: { n: FRESH, p50: Math.round(median(fresh) * 10) / 10, p99: Math.round(quantile(fresh, 0.99) * 10) / 10 },
    };
    console.log(JSON.stringify(out, null, 2));
  } finally {
    await registry.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
