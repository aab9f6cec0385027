// Owns logging: pino JSON to stdout (journald picks it up under systemd).
// Secrets never reach a log line: the redact list covers every field name we
// use for key material, tokens and API keys.
import pino, { type Logger, type DestinationStream } from 'pino';

export type { Logger } from 'pino';

export const REDACT_PATHS = [
  'token', '*.token', 'apiKey', '*.apiKey', 'api_key', '*.api_key', 'privateKey', '*.privateKey',
  'key', '*.key', 'secret', '*.secret', 'password', '*.password', 'authorization', '*.authorization',
  'headers.authorization', 'req.headers.authorization', 'csrPem', '*.csrPem',
  // The browser session cookie (src/auth/sessions.ts) is a credential too.
  'cookie', '*.cookie', 'headers.cookie', 'req.headers.cookie', 'res.headers["set-cookie"]',
];

export interface LoggerOptions {
  name: string;
  level?: string;
  /** Where lines go; defaults to stdout. Tests pass a stream they can read. */
  destination?: DestinationStream;
}

export function createLogger(opts: LoggerOptions): Logger {
  const level = opts.level ?? process.env['BULKHEAD_LOG_LEVEL'] ?? 'info';
  return pino(
    { name: opts.name, level, redact: { paths: REDACT_PATHS, censor: '[redacted]' }, base: { pid: process.pid } },
    opts.destination ?? pino.destination({ dest: 1, sync: false }),
  );
}
