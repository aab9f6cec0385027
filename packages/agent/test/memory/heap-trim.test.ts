import t from 'tap';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { getHeapStatistics } from 'node:v8';
import { HeapTrimmer, collectFully, v8GcFunction, v8ReducesMemoryItself } from '../../src/memory/heap-trim';

/** Allocates objects nothing keeps (a function of its own: no reference stays on the test's frame). */
function makeGarbage(n: number): number {
  const junk = Array.from({ length: n }, (_, i) => ({ i, s: `x${i}` }));
  return junk.length;
}

t.test('v8GcFunction gives a working collector without leaving a gc global', (t) => {
  const hadGlobal = typeof (globalThis as { gc?: unknown }).gc === 'function';
  const gc = v8GcFunction();
  t.type(gc, 'function');
  if (!hadGlobal) t.equal(typeof (globalThis as { gc?: unknown }).gc, 'undefined', 'no gc global in this context');
  // Garbage V8 still counts as used until a collection.
  t.ok(makeGarbage(200_000) > 0);
  const before = getHeapStatistics().used_heap_size;
  gc!();
  const after = getHeapStatistics().used_heap_size;
  t.ok(after < before - 5 * 1024 * 1024, `a major collection freed the garbage (${before} -> ${after})`);
  t.end();
});

t.test('collects on a real heap with garbage when idle, and reports what it gave back', (t) => {
  const trim = new HeapTrimmer({ intervalMs: 0, minSlackBytes: 1024 * 1024, maxHeapBytes: 1e12, utilization: () => ({ idle: 1, active: 0, utilization: 0 }) });
  t.ok(makeGarbage(300_000) > 0);
  const usedBefore = getHeapStatistics().used_heap_size;
  const r = trim.check();
  t.equal(r.ran, true);
  t.ok(r.durationMs >= 0);
  const usedAfter = getHeapStatistics().used_heap_size;
  t.ok(usedAfter < usedBefore - 5 * 1024 * 1024, `the garbage was collected (${usedBefore} -> ${usedAfter})`);
  t.equal(trim.stats.runs, 1);
  t.end();
});

t.test('decides from idleness and slack', (t) => {
  let busy = 0;
  let heap = { total: 40, used: 30 };
  const calls: string[] = [];
  const trim = new HeapTrimmer({
    intervalMs: 0,
    minSlackBytes: 4,
    gc: () => { calls.push('gc'); heap = { total: 20, used: 14 }; },
    heap: () => heap,
    utilization: () => ({ idle: 1 - busy, active: busy, utilization: busy }),
  });
  busy = 0.5;
  t.equal(trim.check().reason, 'busy', 'a busy event loop is left alone');
  busy = 0.01;
  const r = trim.check();
  t.same([r.ran, r.before, r.after], [true, 40, 20]);
  t.equal(trim.stats.releasedBytes, 20);
  heap = { total: 19, used: 16 };
  t.equal(trim.check().reason, 'tight', 'little allocated since, little slack: skipped');
  heap = { total: 24, used: 19 };
  t.equal(trim.check().ran, true, '≥ minSlack allocated since the last collection: collected');
  heap = { total: 30, used: 19 };
  t.equal(trim.check().ran, true, '≥ minSlack committed beyond use: collected');
  t.same(calls, ['gc', 'gc', 'gc']);
  t.end();
});

t.test('a large heap and a busy last second are left alone', (t) => {
  let n = 0;
  const trim = new HeapTrimmer({ intervalMs: 0, minSlackBytes: 4, maxHeapBytes: 100, gc: () => void n++, heap: () => ({ total: 300, used: 200 }), utilization: () => ({ idle: 1, active: 0, utilization: 0 }) });
  t.equal(trim.check().reason, 'large');
  const small = new HeapTrimmer({ intervalMs: 0, minSlackBytes: 4, gc: () => void n++, heap: () => ({ total: 30, used: 20 }), utilization: () => ({ idle: 1, active: 0, utilization: 0 }) });
  t.equal(small.check(0.5).reason, 'busy', 'busy over the interval');
  t.equal(small.check(0).ran, true);
  t.equal(n, 1);
  t.end();
});

t.test('the threshold grows with the heap (10 % of it in use)', (t) => {
  let heap = { total: 110, used: 100 };
  const trim = new HeapTrimmer({ intervalMs: 0, minSlackBytes: 4, maxHeapBytes: 1e9, gc: () => { heap = { total: 100, used: 90 }; }, heap: () => heap, utilization: () => ({ idle: 1, active: 0, utilization: 0 }) });
  t.equal(trim.check().ran, true, 'first look: everything since start');
  heap = { total: 100, used: 97 };
  t.equal(trim.check().reason, 'tight', '7 grown, 3 slack: under 10 % of 97');
  heap = { total: 120, used: 100 };
  t.equal(trim.check().ran, true, '20 slack: over 10 %');
  t.end();
});

t.test('start/stop: the timer looks on its interval and stops', async (t) => {
  let looks = 0;
  const trim = new HeapTrimmer({ intervalMs: 20, recentMs: 5, gc: () => undefined, heap: () => { looks++; return { total: 1, used: 1 }; }, utilization: () => ({ idle: 1, active: 0, utilization: 0 }) });
  trim.start();
  await new Promise((r) => setTimeout(r, 130));
  trim.stop();
  const seen = looks;
  t.ok(seen >= 2, `looked ${seen} times`);
  await new Promise((r) => setTimeout(r, 60));
  t.equal(looks, seen, 'no looks after stop');
});

t.test('with --expose-gc (the systemd unit\'s flag) the global gc is used, and the agent module loads and trims', (t) => {
  const mod = join(__dirname, '..', '..', 'dist', 'memory', 'heap-trim.js');
  const out = execFileSync(process.execPath, ['--expose-gc', '-e', `
    'use strict';
    const g = globalThis.gc;
    const { v8GcFunction, HeapTrimmer } = require(${JSON.stringify(mod)});
    const fn = v8GcFunction();
    const r = new HeapTrimmer({ intervalMs: 0, minSlackBytes: 1, maxHeapBytes: 1e12, utilization: () => ({ idle: 1, active: 0, utilization: 0 }) }).check();
    process.stdout.write(JSON.stringify({ same: fn === g, ran: r.ran }));
  `], { encoding: 'utf8' });
  t.same(JSON.parse(out), { same: true, ran: true });
  t.end();
});

t.test('collectFully: last-resort on V8 12+, the plain call before', (t) => {
  const calls: unknown[] = [];
  const fake = (o?: unknown): void => void calls.push(o ?? 'plain');
  collectFully(fake, 13);
  collectFully(fake, 11);
  t.same(calls, [{ type: 'major', flavor: 'last-resort' }, 'plain']);
  t.end();
});

t.test('v8ReducesMemoryItself: --optimize-for-size on the command line or in NODE_OPTIONS', (t) => {
  t.equal(v8ReducesMemoryItself(['--max-semi-space-size=1', '--optimize-for-size'], undefined), true);
  t.equal(v8ReducesMemoryItself(['--optimize_for_size'], ''), true);
  t.equal(v8ReducesMemoryItself([], '--max-old-space-size=64 --optimize-for-size'), true);
  t.equal(v8ReducesMemoryItself(['--max-semi-space-size=1', '--expose-gc'], '--no-maglev'), false);
  t.equal(v8ReducesMemoryItself([], undefined), false);
  t.end();
});
