// Severity and state badges: a shape AND a word AND a colour, so meaning never rests on
// colour alone (WCAG 1.4.1).
import type { Severity } from '../api';
import { relative } from '../format';

const SEV_ICON: Record<string, string> = { critical: '◆', high: '▲', medium: '●', low: '○', info: 'ℹ' };

export function SeverityBadge({ severity }: { severity: Severity | string }) {
  return (
    <span class={`badge sev sev-${severity}`}>
      <span aria-hidden="true">{SEV_ICON[severity] ?? '•'}</span> {severity}
    </span>
  );
}

const STATE_ICON: Record<string, string> = { running: '▶', paused: '⏸', exited: '■', created: '○', restarting: '↻', dead: '✖', removing: '…' };

export function StateBadge({ state }: { state: string }) {
  return (
    <span class={`badge state state-${state}`}>
      <span aria-hidden="true">{STATE_ICON[state] ?? '•'}</span> {state}
    </span>
  );
}

export function AgentStatusBadge({ status }: { status: string }) {
  const icon = status === 'online' ? '●' : status === 'offline' ? '○' : '✖';
  return (
    <span class={`badge agent-${status}`}>
      <span aria-hidden="true">{icon}</span> {status}
    </span>
  );
}

export function Time({ iso }: { iso: string | null | undefined }) {
  return iso ? <time dateTime={iso} title={iso}>{relative(iso)}</time> : <span>never</span>;
}

