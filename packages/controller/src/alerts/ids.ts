// Owns alert and delivery identifiers: a prefix plus a ULID (48-bit ms time +
// 80 random bits, Crockford base32), so ids sort by creation time and a
// `webhook-id` is unique without coordination.
import { randomBytes } from 'node:crypto';

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

// randomBytes per id is a syscall-sized cost at thousands of ids per second; draw from a pool.
let pool = Buffer.alloc(0);
let poolAt = 0;
function random16(): Buffer {
  if (poolAt + 16 > pool.length) {
    pool = randomBytes(4096);
    poolAt = 0;
  }
  poolAt += 16;
  return pool.subarray(poolAt - 16, poolAt);
}

export function ulid(now = Date.now()): string {
  let time = '';
  let t = now;
  for (let i = 0; i < 10; i++) {
    time = CROCKFORD[t % 32]! + time;
    t = Math.floor(t / 32);
  }
  const rnd = random16();
  let rand = '';
  for (let i = 0; i < 16; i++) rand += CROCKFORD[rnd[i]! & 31];
  return time + rand;
}

export const newAlertId = (now?: number): string => 'alr_' + ulid(now);
export const newDeliveryId = (now?: number): string => 'msg_' + ulid(now);
export const newEndpointId = (): string => 'wh_' + randomBytes(8).toString('hex');
