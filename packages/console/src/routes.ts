// THE table of the console's views: path pattern, title, whether it is in the navigation,
// and the least role that sees it. Adding a view = one file under views/ + one line here.
import type { FunctionComponent } from 'preact';
import type { Role, Session } from './api';
import { Overview } from './views/overview';
import { Containers } from './views/containers';
import { ContainerDetail } from './views/container-detail';
import { Violations } from './views/violations';
import { PolicyView } from './views/policy';
import { HostAuditView } from './views/host-audit';
import { AuditTrail } from './views/audit-trail';
import { KeysAndTokens } from './views/keys';
import { Webhooks } from './views/webhooks';

export interface ViewProps {
  session: Session;
  params: Record<string, string>;
  query: URLSearchParams;
}

export interface RouteDef {
  /** Hash path pattern; `:name` segments become params. */
  path: string;
  title: string;
  /** Shown in the navigation bar when set (its label). */
  nav?: string;
  /** Least role that sees the view (and its nav entry). Default viewer. */
  minRole?: Role;
  view: FunctionComponent<ViewProps>;
}

export const routes: RouteDef[] = [
  { path: '/', title: 'Fleet overview', nav: 'Overview', view: Overview },
  { path: '/containers', title: 'Containers', nav: 'Containers', view: Containers },
  { path: '/containers/:agent/:id', title: 'Container', view: ContainerDetail },
  { path: '/violations', title: 'Violations', nav: 'Violations', view: Violations },
  { path: '/policy', title: 'Policy', nav: 'Policy', view: PolicyView },
  { path: '/hosts', title: 'Host audit', nav: 'Host audit', view: HostAuditView },
  { path: '/hosts/:agent', title: 'Host audit', view: HostAuditView },
  { path: '/webhooks', title: 'Alerts and webhooks', nav: 'Webhooks', view: Webhooks },
  { path: '/audit', title: 'Audit trail', nav: 'Audit trail', minRole: 'admin', view: AuditTrail },
  { path: '/keys', title: 'Keys and tokens', nav: 'Keys', minRole: 'admin', view: KeysAndTokens },
];

const RANK: Record<Role, number> = { viewer: 0, operator: 1, admin: 2 };

export function allows(role: Role, min: Role = 'viewer'): boolean {
  return RANK[role] >= RANK[min];
}

/**
 * Whether the session may perform an action ("containers.pause", "violations.acknowledge", …):
 * the controller's own answer (GET /v1/session's allowedActions, after the role, the key's
 * action limits and its project scope), so a button shows only where the request would be
 * allowed. Convenience only: the server checks every request.
 */
export function can(session: Session, action: string): boolean {
  return session.allowedActions.includes(action);
}
