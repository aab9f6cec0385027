// Measurements of the fault tests (test/faults/), for RELIABILITY.md's "Fault suite" section.
// When BK_FAULTS_REPORT names a file, each fault scenario appends one JSON line to it;
// scripts/fault-report.mjs turns the lines into the table. Without the variable nothing is
// written, so the tests run as usual.
//
// One line per scenario (not per injection): a scenario injects the same fault `injected`
// times while a workload produces items (containers, violations, alerts, deliveries …), then
// counts what arrived where it should.
import { appendFileSync } from 'node:fs';
import { basename } from 'node:path';

export interface FaultMeasurement {
  /** The fault, in a few words, e.g. "controller SIGKILL during container churn". */
  fault: string;
  /** How many times it was injected. */
  injected: number;
  /** Items the workload produced while faults were injected (what "items" are: see `items`). */
  produced: number;
  /** Items found where they should be afterwards (the controller's store, the webhook receiver …). */
  delivered: number;
  /** Items produced and never delivered; the target is 0. */
  lost: number;
  /**
   * Time to recover after the (last) fault, in ms: from the fault's end (process restarted,
   * receiver back up) until everything produced was delivered. The worst over all injections
   * when the test measures each one. null when not measured.
   */
  recoverMs: number | null;
  /** What an item is, e.g. "containers + violations + alert deliveries". */
  items?: string;
  /** Items delivered more than once (duplicates); 0 or absent when none. */
  duplicates?: number;
  /** Anything else worth printing in the table, in a few words. */
  note?: string;
  /** The test file (basename), filled in from the caller when absent. */
  file?: string;
}

export function recordFault(m: FaultMeasurement): void {
  const path = process.env['BK_FAULTS_REPORT'];
  if (!path) return;
  const file = m.file ?? basename(process.argv[1] ?? '');
  appendFileSync(path, `${JSON.stringify({ ...m, file, recoverMs: m.recoverMs === null ? null : Math.round(m.recoverMs), at: new Date().toISOString() })}\n`);
}
