// Parses "host:port" and "[v6]:port" listen addresses with a clear error.
import { BulkheadError } from '@bulkhead/shared';

export function splitHostPort(addr: string, field: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(addr.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `${field}: "${addr}" is not HOST:PORT (e.g. 127.0.0.1:8443 or [::1]:8443)`);
  }
  return { host: (m[1] ?? m[2])!, port };
}
