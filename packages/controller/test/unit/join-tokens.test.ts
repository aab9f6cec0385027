// Runs on SQLite here and on PostgreSQL in join-tokens.postgres.test.ts.
import t from 'tap';
import { createJoinToken, redeemJoinToken } from '../../src/enrollment/join-tokens';
import { openTestStore } from '../store/fixtures/backend';

t.test('join tokens are one-time, expire, and are stored hashed', async (t) => {
  const store = await openTestStore(t);
  const now = new Date('2026-01-01T00:00:00Z');
  const { token, record } = await createJoinToken(store, 60_000, now, 'rack 4');
  t.match(token, /^bkj_[0-9a-f]{16}_[A-Za-z0-9_-]{43}$/);
  const stored = await store.getJoinToken(record.id);
  // The secret is everything after the id: base64url may itself contain '_' (split('_')[2] could be one letter).
  const secret = token.slice('bkj_'.length + 16 + 1);
  t.equal(secret.length, 43);
  t.notOk(JSON.stringify(stored).includes(secret), 'the secret is not stored');
  t.equal(stored?.description, 'rack 4');

  await t.rejects(redeemJoinToken(store, token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A'), 'agt_x', now), { code: 'BK_ERR_TOKEN_INVALID' }, 'wrong secret');
  const used = await redeemJoinToken(store, token, 'agt_1', now);
  t.equal(used.id, record.id);
  t.equal((await store.getJoinToken(record.id))?.usedByAgent, 'agt_1');
  await t.rejects(redeemJoinToken(store, token, 'agt_2', now), { code: 'BK_ERR_TOKEN_USED' });

  const { token: t2 } = await createJoinToken(store, 1000, now);
  await t.rejects(redeemJoinToken(store, t2, 'agt_3', new Date(now.getTime() + 1000)), { code: 'BK_ERR_TOKEN_EXPIRED' });
  await t.rejects(redeemJoinToken(store, 'bkj_nope', 'agt_3', now), { code: 'BK_ERR_TOKEN_INVALID' });
  await t.rejects(createJoinToken(store, 0, now), { code: 'BK_ERR_CONFIG_INVALID' });

  // Two concurrent redemptions: exactly one wins.
  const { token: t3 } = await createJoinToken(store, 60_000, now);
  const results = await Promise.allSettled([redeemJoinToken(store, t3, 'agt_a', now), redeemJoinToken(store, t3, 'agt_b', now)]);
  t.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'one winner');
});
