import t from 'tap';
import { parseDuration } from '../src/config/duration';

t.test('parses durations', async (t) => {
  const cases: [string | number, number][] = [['500ms', 500], ['30s', 30_000], ['15m', 900_000], ['2h', 7_200_000], ['7d', 604_800_000], ['1.5s', 1500], [250, 250]];
  for (const [input, ms] of cases) t.equal(parseDuration(input), ms, String(input));
});

t.test('rejects bad durations with the field name', async (t) => {
  for (const bad of ['', '15', 'm', '-1s', '1y', 'abc']) t.throws(() => parseDuration(bad, 'ttl'), { code: 'BK_ERR_CONFIG_INVALID', message: /ttl/ });
  t.throws(() => parseDuration(-5), { code: 'BK_ERR_CONFIG_INVALID' });
  t.throws(() => parseDuration(Number.NaN), { code: 'BK_ERR_CONFIG_INVALID' });
});
