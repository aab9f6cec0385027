#!/usr/bin/env node
// Turns the measurements of the bad-input tests into RELIABILITY.md's figures table.
//
//   rm -f /tmp/bi.jsonl
//   BK_BADINPUT_REPORT=/tmp/bi.jsonl npx tap test/bad-input/ --disable-coverage
//   node scripts/bad-input-report.mjs /tmp/bi.jsonl                 # print the tables
//   node scripts/bad-input-report.mjs /tmp/bi.jsonl --write RELIABILITY.md --note "2 cores, other work running"
//
// Each test appends one JSON line per hostile input (test/helpers/bad-input-report.ts). With
// --write, the text between the `<!-- bad-input:begin -->` and `<!-- bad-input:end -->` markers
// of the file is replaced; the rest of the file is left alone.
import { readFileSync } from 'node:fs';
import { writeBetweenMarkers } from './lib/doc-markers.mjs';
import { cpus } from 'node:os';

const CATEGORIES = ['documents', 'globs', 'reports', 'webhooks', 'API values', 'auth headers', 'HTTP framing', 'gRPC framing', 'plugin socket'];
const SOURCES = {
  documents: 'policy-documents',
  globs: 'globs',
  reports: 'policy-documents',
  webhooks: 'controller-webhook-delivery, controller-api',
  'API values': 'controller-api',
  'auth headers': 'api-framing',
  'HTTP framing': 'api-framing',
  'gRPC framing': 'controller-grpc',
  'plugin socket': 'plugin-socket',
};

const args = process.argv.slice(2);
const input = args.find((a) => !a.startsWith('--') && args[args.indexOf(a) - 1] !== '--write' && args[args.indexOf(a) - 1] !== '--note');
const opt = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
if (!input) {
  console.error('usage: node scripts/bad-input-report.mjs FILE.jsonl [--write RELIABILITY.md] [--note TEXT]');
  process.exit(2);
}

const rows = readFileSync(input, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l));
const max = (xs) => (xs.length === 0 ? null : Math.max(...xs));
const fmt = (ms) => (ms === null ? '—' : ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${ms} ms`);
const esc = (s) => String(s).replace(/\|/g, '\\|').replace(/\n/g, ' ');

const summary = [
  '| category | inputs tried | refused / answered as documented | stalls | worst canary latency | slowest answer | test file (test/bad-input/) |',
  '|---|---:|---:|---:|---:|---:|---|',
];
let total = 0;
let totalOk = 0;
let totalStalls = 0;
for (const c of CATEGORIES) {
  const rs = rows.filter((r) => r.category === c);
  const ok = rs.filter((r) => r.refusedAsDocumented).length;
  const stalls = rs.filter((r) => r.stalled).length;
  total += rs.length;
  totalOk += ok;
  totalStalls += stalls;
  const canary = max(rs.map((r) => r.canaryMs).filter((x) => x !== null));
  const slowest = max(rs.map((r) => r.ms).filter((x) => x !== null));
  summary.push(`| ${c} | ${rs.length} | ${ok} | ${stalls} | ${fmt(canary)} | ${fmt(slowest)} | ${SOURCES[c]} |`);
}
summary.push(`| **all** | **${total}** | **${totalOk}** | **${totalStalls}** | ${fmt(max(rows.map((r) => r.canaryMs).filter((x) => x !== null)))} | | |`);

const details = ['| category | input | expected | got | answer | worst canary | stall |', '|---|---|---|---|---:|---:|---|'];
for (const c of CATEGORIES) {
  for (const r of rows.filter((x) => x.category === c)) {
    details.push(`| ${c} | ${esc(r.input)} | ${esc(r.expected)} | ${esc(String(r.got).slice(0, 90))}${r.refusedAsDocumented ? '' : ' **(not as documented)**'} | ${fmt(r.ms)} | ${fmt(r.canaryMs)} | ${r.stalled ? '**yes**' : ''} |`);
  }
}

const when = rows.length > 0 ? rows.map((r) => r.at).sort()[0].slice(0, 10) : new Date().toISOString().slice(0, 10);
const note = opt('--note') ?? `${cpus().length} cores`;
const text = [
  `Measured ${when}, Node ${process.version}, ${note}. \`stalls\`: inputs during which the canary missed its bound (1 s; 250 ms for gRPC, 1.5 s for webhook delivery) or the server stopped answering.`,
  '',
  ...summary,
  '',
  '<details><summary>Every input</summary>',
  '',
  ...details,
  '',
  '</details>',
].join('\n');

const target = opt('--write');
if (target) {
  writeBetweenMarkers(target, 'bad-input', text);
  console.log(`${target}: ${rows.length} measurements, ${totalStalls} stalls`);
} else {
  console.log(text);
}
