// Parses the controller address "HOST:PORT" / "[v6]:PORT".
import { BulkheadError } from '@bulkhead/shared';

export function splitController(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:/\s]+)):(\d{1,5})$/.exec(addr.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) {
    throw new BulkheadError('BK_ERR_CONFIG_INVALID', `controller address "${addr}" is not HOST:PORT (e.g. controller.example.com:7443)`);
  }
  return { host: (m[1] ?? m[2])!, port };
}
