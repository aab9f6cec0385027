#!/usr/bin/env node
// Turns the measurements of the fault tests (test/faults/) into RELIABILITY.md's "Fault suite" table.
//
//   rm -f /tmp/faults.jsonl
//   BK_FAULTS_REPORT=/tmp/faults.jsonl npx tap test/faults/ --disable-coverage
//   node scripts/fault-report.mjs /tmp/faults.jsonl                 # print the table
//   node scripts/fault-report.mjs /tmp/faults.jsonl --write RELIABILITY.md --note "2 cores, other work running"
//
// Each scenario appends one JSON line (test/helpers/fault-report.ts):
// {fault, injected, produced, delivered, lost, recoverMs, items?, duplicates?, note?, file}.
// With --write, the text between the `<!-- faults:begin -->` and `<!-- faults:end -->` markers
// of the file is replaced; the rest of the file is left alone. A scenario reported more than
// once (several runs into one file) keeps its last line.
import { readFileSync } from 'node:fs';
import { writeBetweenMarkers } from './lib/doc-markers.mjs';
import { cpus } from 'node:os';

const args = process.argv.slice(2);
const input = args.find((a, i) => !a.startsWith('--') && args[i - 1] !== '--write' && args[i - 1] !== '--note');
const opt = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
if (!input) {
  console.error('usage: node scripts/fault-report.mjs FILE.jsonl [--write RELIABILITY.md] [--note TEXT]');
  process.exit(2);
}

const all = readFileSync(input, 'utf8').split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l));
const byFault = new Map();
for (const r of all) byFault.set(`${r.file}|${r.fault}`, r);
const rows = [...byFault.values()].sort((a, b) => String(a.file).localeCompare(String(b.file)) || String(a.fault).localeCompare(String(b.fault)));
const fmt = (ms) => (ms === null || ms === undefined ? '— (not recovered)' : ms >= 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${ms} ms`);
const esc = (s) => String(s ?? '').replace(/\|/g, '\\|').replace(/\n/g, ' ');

const table = [
  '| fault | injected | items | produced | delivered | lost | duplicates | time to recover | notes | test (test/faults/) |',
  '|---|---:|---|---:|---:|---:|---:|---:|---|---|',
];
let lost = 0;
let dups = 0;
for (const r of rows) {
  lost += r.lost;
  dups += r.duplicates ?? 0;
  table.push(`| ${esc(r.fault)} | ${r.injected} | ${esc(r.items ?? '')} | ${r.produced} | ${r.delivered} | ${r.lost === 0 ? '0' : `**${r.lost}**`} | ${r.duplicates ?? 0} | ${fmt(r.recoverMs)} | ${esc(r.note ?? '')} | ${esc(String(r.file).replace(/\.test\.[tj]s$/, ''))} |`);
}
table.push(`| **all** | **${rows.reduce((s, r) => s + r.injected, 0)}** | | **${rows.reduce((s, r) => s + r.produced, 0)}** | **${rows.reduce((s, r) => s + r.delivered, 0)}** | **${lost}** | **${dups}** | | | |`);

const when = rows.length > 0 ? rows.map((r) => r.at).sort()[0].slice(0, 10) : new Date().toISOString().slice(0, 10);
const note = opt('--note') ?? `${cpus().length} cores`;
const text = [
  `Measured ${when}, Node ${process.version}, ${note}. *Time to recover*: from the end of the (last) fault — process restarted, receiver back — until everything produced was found where it belongs.`,
  '',
  ...table,
].join('\n');

const target = opt('--write');
if (target) {
  writeBetweenMarkers(target, 'faults', text);
  console.log(`${target}: ${rows.length} scenarios, ${lost} items lost, ${dups} duplicates`);
} else {
  console.log(text);
}
