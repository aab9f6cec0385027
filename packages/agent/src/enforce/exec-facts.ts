// Owns what a `docker exec` changes in the reaction door's view of a
// container: the container's facts as the exec's process has them, which
// findings the exec adds to those the container already has, and how such
// a finding names the exec (id, user, command with secrets redacted).
//
// Pure: the enforcer inspects the exec (dockerd's own record of it, not a
// request body we parsed) and evaluates; this file only maps.
//
// Whether a user is root is the evaluator's root-user check (isRootUser in
// @bulkhead/shared): an exec's user goes into `user` unchanged, so execs and
// containers are judged by the same reading of a user string.
import type Dockerode from 'dockerode';
import type { Finding } from '@bulkhead/shared';
import type { Facts } from '../docker/container-facts';
import type { ExecStartEvent } from '../docker/event-stream';
import { redactCommand, scanCommand } from '../secrets/secret-scan';

/** What the reaction door knows of one exec. */
export interface ExecRecord {
  id: string;
  /** The exec's own --user; "" = it runs as the container's user. */
  user: string;
  privileged: boolean;
  /** Entrypoint and arguments, secrets redacted. */
  command: string[];
}

/** The most an exec can ask for: a privileged process running as root. */
export const WORST_EXEC: Pick<ExecRecord, 'user' | 'privileged'> = { user: 'root', privileged: true };

/** Longest command text put into a report or a log line. */
const MAX_COMMAND_CHARS = 300;

/** The exec as dockerd recorded it (`GET /exec/{id}/json`), command redacted. */
export function execRecordOf(info: Dockerode.ExecInspectInfo): ExecRecord {
  const pc = (info.ProcessConfig ?? {}) as Partial<Dockerode.ExecInspectInfo['ProcessConfig']>;
  const argv = [typeof pc.entrypoint === 'string' ? pc.entrypoint : '', ...(Array.isArray(pc.arguments) ? pc.arguments.filter((a): a is string => typeof a === 'string') : [])];
  return {
    id: typeof info.ID === 'string' ? info.ID : '',
    // dockerd leaves `user` out when the exec did not set one.
    user: typeof pc.user === 'string' ? pc.user : '',
    privileged: pc.privileged === true,
    command: redactedArgv(argv.filter((a, i) => i > 0 || a !== '')),
  };
}

/**
 * The command of an exec_start event, secrets redacted. dockerd joined the
 * arguments with spaces, so this splits on whitespace: good enough to find
 * `--password x` style secrets, not a faithful argv.
 */
export function eventCommand(x: ExecStartEvent): string {
  return commandText(redactedArgv(x.command.split(/\s+/).filter((a) => a !== '')));
}

/**
 * The container's facts as the exec's process has them: privileged if the
 * exec is (or the container was), running as the exec's user when it set
 * one, else as the container's. Nothing else an exec can choose (env,
 * working directory) is something a rule judges.
 */
export function execFacts(container: Facts, exec: Pick<ExecRecord, 'user' | 'privileged'>): Facts {
  return {
    ...container,
    privileged: container.privileged || exec.privileged,
    user: exec.user !== '' ? exec.user : container.user,
  };
}

/**
 * Findings of rules the container does not already break. By rule, not by
 * evidence: a container already breaking a rule is already judged for it by
 * the reaction path (acted on, reported, or exempted), and a root exec in a
 * container that runs as root anyway gives nobody anything new.
 */
export function addedByExec(container: readonly Finding[], exec: readonly Finding[]): Finding[] {
  const had = new Set(container.map((f) => f.ruleId));
  return exec.filter((f) => !had.has(f.ruleId));
}

/** One line naming the exec, e.g. `docker exec 4f1c… as user "0" (privileged): sh -c id`. */
export function describeExec(exec: ExecRecord, container: Pick<Facts, 'user'>): string {
  const user = exec.user !== '' ? `as user "${exec.user}"` : container.user !== '' ? `as the container's user "${container.user}"` : "as the container's (image's) user";
  return `docker exec ${exec.id} ${user}${exec.privileged ? ' (privileged)' : ''}: ${commandText(exec.command)}`;
}

/**
 * The finding as caused by the exec: its message says so first, and the
 * exec is the first piece of evidence (the evaluator's evidence speaks of
 * "the container", which here is the container as the exec sees it).
 */
export function asExecFinding(f: Finding, exec: ExecRecord, container: Pick<Facts, 'user'>): Finding {
  const what = describeExec(exec, container);
  const prefix = `${f.ruleId}: `;
  const message = f.message.startsWith(prefix) ? `${prefix}${what}: ${f.message.slice(prefix.length)}` : `${what}: ${f.message}`;
  return { ...f, message, evidence: [{ location: 'exec', detail: what }, ...f.evidence] };
}

function redactedArgv(argv: readonly string[]): string[] {
  return redactCommand(argv, scanCommand(argv));
}

function commandText(argv: readonly string[]): string {
  const s = argv.join(' ');
  return s.length > MAX_COMMAND_CHARS ? `${s.slice(0, MAX_COMMAND_CHARS - 3)}...` : s;
}
