// Owns what a delivery's body looks like. `json` is the Standard Webhooks
// envelope {type, timestamp, data}; `slack` is a Slack incoming-webhook
// message (text + blocks). Bodies are rendered at send time from the alert
// row, so a retry carries the latest grouped count.
import type { WebhookFormat } from './alert-store';
import type { AlertRecord } from './alert-types';

/** The alert as receivers see it (also the API's Alert object). */
export interface AlertPayload {
  id: string;
  type: string;
  severity: string;
  time: string;
  lastSeenAt: string;
  count: number;
  agentId: string | null;
  host: string | null;
  containerId: string | null;
  containerName: string | null;
  image: string | null;
  project: string | null;
  ruleId: string | null;
  action: string | null;
  result: string | null;
  message: string;
}

export function alertPayload(a: AlertRecord): AlertPayload {
  return {
    id: a.id,
    type: a.type,
    severity: a.severity,
    time: a.time.toISOString(),
    lastSeenAt: a.lastSeenAt.toISOString(),
    count: a.count,
    agentId: a.agentId,
    host: a.host,
    containerId: a.containerId,
    containerName: a.containerName,
    image: a.image,
    project: a.project,
    ruleId: a.ruleId,
    action: a.action,
    result: a.result,
    message: a.message,
  };
}

export function renderBody(format: WebhookFormat, a: AlertRecord, now: Date): string {
  return format === 'slack' ? JSON.stringify(slackMessage(a)) : JSON.stringify({ type: `alert.${a.type}`, timestamp: now.toISOString(), data: alertPayload(a) });
}

const SEVERITY_EMOJI: Record<string, string> = { info: ':information_source:', low: ':large_blue_circle:', medium: ':large_orange_diamond:', high: ':red_circle:', critical: ':rotating_light:' };

/** Slack treats &, < and > as control characters in mrkdwn. */
function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function slackMessage(a: AlertRecord): { text: string; blocks: unknown[] } {
  const count = a.count > 1 ? ` (×${a.count})` : '';
  const headline = `${SEVERITY_EMOJI[a.severity] ?? ''} *${a.severity.toUpperCase()}* ${a.type.replace(/_/g, ' ')}${count}: ${esc(a.message)}`.trim();
  const fields: Array<[string, string | null]> = [
    ['Host', a.host ?? a.agentId],
    ['Container', a.containerName ?? (a.containerId ? a.containerId.slice(0, 12) : null)],
    ['Image', a.image],
    ['Project', a.project],
    ['Rule', a.ruleId],
    ['Action', a.action === null ? null : `${a.action}${a.result ? ` → ${a.result}` : ''}`],
  ];
  const shown = fields.filter((f): f is [string, string] => f[1] !== null && f[1] !== '');
  const blocks: unknown[] = [{ type: 'section', text: { type: 'mrkdwn', text: headline } }];
  if (shown.length > 0) blocks.push({ type: 'section', fields: shown.slice(0, 10).map(([k, v]) => ({ type: 'mrkdwn', text: `*${k}*\n${esc(v)}` })) });
  blocks.push({ type: 'context', elements: [{ type: 'mrkdwn', text: `${a.id} · ${a.time.toISOString()}` }] });
  // `text` is the notification / fallback line; Slack shows blocks when present.
  return { text: `[${a.severity}] ${a.type}${count}: ${a.message}`, blocks };
}
