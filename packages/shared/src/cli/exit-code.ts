// The exit-code rule both daemon CLIs (bulkhead-agent, bulkhead-controller)
// share: 0 ok or help, 1 a Bulkhead error (2 when it is BK_ERR_CONFIG_INVALID),
// 2 a usage error from commander, 1 anything else. The error is printed here.
import { isBulkheadError } from '../errors/registry';

export function cliExitCode(err: unknown, printErr: (s: string) => void): number {
  if (isBulkheadError(err)) {
    printErr(`error: ${err.toString()}\n`);
    return err.code === 'BK_ERR_CONFIG_INVALID' ? 2 : 1;
  }
  const code = (err as { code?: string }).code;
  if (typeof code === 'string' && code.startsWith('commander.')) {
    return (err as { exitCode?: number }).exitCode === 0 ? 0 : 2;
  }
  printErr(`error: ${(err as Error).message}\n`);
  return 1;
}

/** `… --help | head` closes stdout early: exit quietly instead of an EPIPE stack trace. */
export function exitQuietlyOnEpipe(): void {
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EPIPE') process.exit(0);
  });
}
