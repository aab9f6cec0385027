// Owns project scoping: which project a container belongs to, and which
// projects a request may see. A credential scoped to projects sees and acts
// on only those projects' containers, violations and alerts; the store
// filters lists in SQL (so paging stays right) and single objects out of
// scope answer 404, exactly like objects that do not exist.
import type { FastifyRequest } from 'fastify';
import type { ContainerFacts__Output } from '@bulkhead/shared';
import { DEFAULT_PROJECT_LABEL } from '@bulkhead/shared';
import type {} from './principal'; // req.auth

/**
 * The container's project: the agent's own resolution (facts.project, set
 * from the policy's project label) first, else the `bulkhead.project` label;
 * "" when it has none. Containers without a project are visible only to
 * unscoped credentials.
 */
export function containerProject(facts: Pick<ContainerFacts__Output, 'project' | 'labels'>): string {
  if (typeof facts.project === 'string' && facts.project !== '') return facts.project;
  const label = facts.labels?.[DEFAULT_PROJECT_LABEL];
  return typeof label === 'string' ? label : '';
}

/** The projects the request may see; undefined when it may see everything. */
export function visibleProjects(req: FastifyRequest): string[] | undefined {
  const p = req.auth?.projects;
  return p !== undefined && p.length > 0 ? [...p] : undefined;
}

/** Whether an object of `project` (null/"" = none) is visible to the request. */
export function canSee(req: FastifyRequest, project: string | null | undefined): boolean {
  const scope = visibleProjects(req);
  return scope === undefined || (typeof project === 'string' && project !== '' && scope.includes(project));
}

/** True when every project in `inner` is within `outer` (empty `outer` = every project; empty `inner` = every project too). */
export function projectsWithin(inner: readonly string[], outer: readonly string[]): boolean {
  if (outer.length === 0) return true;
  if (inner.length === 0) return false;
  return inner.every((p) => outer.includes(p));
}
