// Owns turning what the agent link hears into alert inputs: a violation
// report becomes exactly one alert — a denial at the Docker API
// (authz_denied), a failed enforcement action (action_failed), a carried-out
// action (action), or a plain finding (violation). Findings covered by an
// exemption raise nothing: someone already accepted them.
import type { ViolationReport__Output } from '@bulkhead/shared';
import { isSeverity, type AlertInput } from './alert-types';

const ENFORCING = new Set(['kill', 'stop', 'pause', 'quarantine', 'limit']);

export function alertFromViolation(agentId: string, host: string | undefined, r: ViolationReport__Output): AlertInput | undefined {
  if (r.exemptedBy) return undefined;
  const severity = isSeverity(r.severity) ? r.severity : undefined;
  const base: AlertInput = {
    type: 'violation',
    message: r.message || `rule ${r.ruleId} matched`,
    agentId,
    host,
    containerId: r.containerId,
    containerName: r.containerName,
    image: r.imageRef,
    project: r.project,
    ruleId: r.ruleId,
    ...(severity !== undefined ? { severity } : {}),
    ...(r.atMs ? { time: new Date(Number(r.atMs)) } : {}),
  };
  if (r.denied) return { ...base, type: 'authz_denied', action: 'deny', result: 'ok' };
  const a = r.action;
  if (a && ENFORCING.has(a.type)) {
    if (a.result === 'failed') {
      // A failed response leaves the violation running: at least high.
      const sev = severity === 'critical' ? 'critical' : 'high';
      return { ...base, type: 'action_failed', severity: sev, action: a.type, result: 'failed', message: `${a.type} failed${a.error ? `: ${a.error}` : ''} — ${base.message}` };
    }
    if (a.result === 'ok') return { ...base, type: 'action', action: a.type, result: 'ok' };
  }
  return base;
}
