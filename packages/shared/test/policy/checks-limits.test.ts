import t from 'tap';
import { runCases } from './run-cases';
import { host } from './helpers';
import { effectiveLogConfig, effectiveUlimits, fromHumanSize, ramInBytes } from '../../src/policy/checks/limits';
import { facts } from './helpers';
import type { DaemonDefaults__Output, HostFacts__Output } from '../../src/proto/index';

function daemon(over: Partial<DaemonDefaults__Output> = {}): HostFacts__Output {
  return {
    ...host(),
    daemonDefaults: {
      logDriver: 'json-file', logOpts: {}, ulimits: [], configKnown: true, unknownReason: '',
      storageDriver: 'overlay2', storageBackingFs: 'extfs', storageNote: 'overlay2 caps the writable layer only on xfs mounted with pquota; the backing filesystem here is extfs',
      storageSizeSupported: false,
      ...over,
    },
  };
}
const UNKNOWN = daemon({ configKnown: false, unknownReason: 'the dockerd behind /var/run/docker.sock was not found in /proc' });

/** A create request's log config (dockerd's defaults not merged in). */
const req = (type: string, config: Record<string, string> = {}) => ({ logConfig: { type, config }, daemonDefaultsMerged: false });
/** An inspect's log config (merged). */
const stored = (type: string, config: Record<string, string> = {}) => ({ logConfig: { type, config }, daemonDefaultsMerged: true });

t.test('sizes as dockerd reads them', async (t) => {
  t.equal(fromHumanSize('10m'), 10_000_000, 'max-size: decimal');
  t.equal(fromHumanSize('10MiB'), 10_000_000, 'max-size: "i" changes nothing (FromHumanSize)');
  t.equal(fromHumanSize('1.5k'), 1500);
  t.equal(fromHumanSize('123'), 123);
  t.equal(fromHumanSize('-1'), undefined, '-1 is no size: dockerd refuses it at start');
  t.equal(fromHumanSize(' 10m'), undefined);
  t.equal(fromHumanSize('1.2.3m'), undefined);
  t.equal(ramInBytes('10G'), 10 * 1024 ** 3, 'storage size: binary');
  t.equal(ramInBytes('512m'), 512 * 1024 ** 2);
});

t.test('log-rotation', async (t) => {
  const check = { type: 'log-rotation' };
  runCases(t, [
    { name: 'facts without a log config (older agent)', check, broken: false },
    // inspect: dockerd merged its defaults already
    { name: 'stored json-file without max-size', check, facts: stored('json-file'), host: daemon(), broken: true, detail: /no log rotation: json-file without max-size \(as dockerd stored it/ },
    { name: 'stored json-file with max-size', check, facts: stored('json-file', { 'max-size': '10m', 'max-file': '2' }), host: daemon(), broken: false },
    { name: 'stored json-file, defaults unknown: the stored config decides', check, facts: stored('json-file'), host: UNKNOWN, broken: true, detail: /no log rotation/ },
    { name: 'stored local', check, facts: stored('local'), broken: false },
    { name: 'stored journald', check, facts: stored('journald'), broken: false },
    { name: 'stored none', check, facts: stored('none'), broken: false },
    { name: 'stored max-size -1: not a size', check, facts: stored('json-file', { 'max-size': '-1' }), broken: true, detail: /max-size="-1" is not a positive size/ },
    // create request: dockerd's defaults merged here
    { name: 'bare create, default json-file, no default opts', check, facts: req(''), host: daemon(), broken: true, detail: /^no log rotation: json-file without max-size \(daemon default log driver json-file, default log-opts: none\)$/ },
    { name: 'bare create, default max-size', check, facts: req(''), host: daemon({ logOpts: { 'max-size': '10m' } }), broken: false },
    { name: 'explicit default driver takes the default opts', check, facts: req('json-file', { 'max-file': '3' }), host: daemon({ logOpts: { 'max-size': '10m' } }), broken: false },
    { name: 'another driver is the default: its opts do not apply to json-file', check, facts: req('json-file'), host: daemon({ logDriver: 'local', logOpts: { 'max-size': '10m' } }), broken: true, detail: /json-file without max-size \(daemon default log driver local, default log-opts: max-size=10m\)/ },
    { name: 'bare create, default driver local', check, facts: req(''), host: daemon({ logDriver: 'local' }), broken: false },
    { name: 'bare create, default driver journald', check, facts: req(''), host: daemon({ logDriver: 'journald' }), broken: false },
    { name: 'create with its own max-size', check, facts: req('json-file', { 'max-size': '1m' }), host: daemon(), broken: false },
    { name: 'bare create, defaults unknown: cannot tell', check, facts: req(''), host: UNKNOWN, broken: true, detail: /cannot tell whether the logs rotate: the request sets no max-size for json-file and dockerd's default log-opts are unknown \(the dockerd behind/ },
    { name: 'bare create, no host facts: cannot tell', check, facts: req(''), broken: true, detail: /default log driver is unknown \(the agent has not learnt them/ },
    { name: 'create with its own max-size, defaults unknown: decided', check, facts: req('json-file', { 'max-size': '5m' }), host: UNKNOWN, broken: false },
    { name: 'create with local, defaults unknown: local rotates anyway', check, facts: req('local'), host: UNKNOWN, broken: false },
    { name: 'create with syslog, defaults unknown', check, facts: req('syslog'), host: UNKNOWN, broken: false },
    // maxSize
    { name: 'max-size above the maximum', check: { type: 'log-rotation', maxSize: '50m' }, facts: req('json-file', { 'max-size': '100m' }), host: daemon(), broken: true, detail: /json-file rotates at max-size=100m \(100 MB\), above the rule's 50 MB/ },
    { name: 'default max-size above the maximum says so', check: { type: 'log-rotation', maxSize: '50m' }, facts: req(''), host: daemon({ logOpts: { 'max-size': '1g' } }), broken: true, detail: /max-size=1g \(from dockerd's default log-opts\)/ },
    { name: 'local default 20m within 50m', check: { type: 'log-rotation', maxSize: '50m' }, facts: stored('local'), broken: false },
    { name: 'local default 20m above 10m', check: { type: 'log-rotation', maxSize: '10m' }, facts: stored('local'), broken: true, detail: /local rotates at max-size=20m \(local's default\)/ },
  ]);
  t.throws(() => runCases(t, [{ name: 'bad maxSize', check: { type: 'log-rotation', maxSize: 'lots' }, broken: false }]), 'maxSize must be a size');
});

t.test('effectiveLogConfig merges as mergeAndVerifyLogConfig', async (t) => {
  const h = daemon({ logDriver: 'json-file', logOpts: { 'max-size': '10m', 'max-file': '2', 'cache-disabled': 'true' } });
  t.same(effectiveLogConfig(facts(req('', { 'max-file': '5' })), h), { known: true, driver: 'json-file', opts: { 'max-file': '5', 'max-size': '10m', 'cache-disabled': 'true' }, fromDefaults: 'max-size=10m, cache-disabled=true' });
  t.same(effectiveLogConfig(facts(req('syslog')), h), { known: true, driver: 'syslog', opts: { 'cache-disabled': 'true' }, fromDefaults: 'cache-disabled=true' }, 'cache-* defaults join any driver');
  t.same(effectiveLogConfig(facts(stored('json-file', { a: 'b' })), undefined), { known: true, driver: 'json-file', opts: { a: 'b' }, fromDefaults: '' });
  t.equal(effectiveLogConfig(facts(), h), undefined);
});

t.test('ulimits', async (t) => {
  const check = { type: 'ulimits', max: { nofile: 65536 } };
  const own = (soft: number, hard: number, name = 'nofile') => ({ ulimits: { values: [{ name, soft, hard }] } });
  runCases(t, [
    { name: 'within the maximum', check, facts: { ...own(1024, 4096), daemonDefaultsMerged: false }, host: daemon(), broken: false },
    { name: 'hard above', check, facts: { ...own(1024, 1_048_576), daemonDefaultsMerged: false }, host: daemon(), broken: true, detail: /nofile ulimit soft 1024 \/ hard 1048576 is above the maximum 65536/ },
    { name: 'unlimited', check, facts: { ...own(-1, -1), daemonDefaultsMerged: true }, broken: true, detail: /soft unlimited \/ hard unlimited/ },
    { name: 'none set, no default', check, facts: { daemonDefaultsMerged: false }, host: daemon(), broken: true, detail: /no nofile ulimit: the container sets none and dockerd has no --default-ulimit for it/ },
    { name: 'none set, not required', check: { ...check, requireSet: false }, facts: { daemonDefaultsMerged: false }, host: daemon(), broken: false },
    { name: 'daemon default within', check, facts: { daemonDefaultsMerged: false }, host: daemon({ ulimits: [{ name: 'nofile', soft: 1024, hard: 2048 }] }), broken: false },
    { name: 'daemon default above', check, facts: { daemonDefaultsMerged: false }, host: daemon({ ulimits: [{ name: 'nofile', soft: 1024, hard: 1_048_576 }] }), broken: true, detail: /hard 1048576 \(dockerd's --default-ulimit\) is above/ },
    { name: 'container overrides an excessive default', check, facts: { ...own(100, 200), daemonDefaultsMerged: false }, host: daemon({ ulimits: [{ name: 'nofile', soft: 1, hard: 1_048_576 }] }), broken: false },
    // dockerd matches defaults by exact name and runc upper-cases: "NOFILE" then the default "nofile"; the last one wins.
    { name: 'upper-case name does not hide the default', check, facts: { ...own(100, 200, 'NOFILE'), daemonDefaultsMerged: false }, host: daemon({ ulimits: [{ name: 'nofile', soft: 1, hard: 1_048_576 }] }), broken: true, detail: /dockerd's --default-ulimit/ },
    { name: 'inspect: merged already, no host needed', check, facts: { ...own(1024, 2048), daemonDefaultsMerged: true }, broken: false },
    { name: 'inspect without ulimits', check, facts: { daemonDefaultsMerged: true }, broken: true, detail: /no nofile ulimit/ },
    { name: 'create, defaults unknown: cannot tell', check, facts: { daemonDefaultsMerged: false }, host: UNKNOWN, broken: true, detail: /cannot tell the nofile ulimit: the request sets none and dockerd's default ulimits are unknown/ },
    { name: 'create with its own, defaults unknown: decided', check, facts: { ...own(10, 20), daemonDefaultsMerged: false }, host: UNKNOWN, broken: false },
    { name: 'other names', check: { type: 'ulimits', max: { nproc: 100 } }, facts: { ...own(50, 500, 'nproc'), daemonDefaultsMerged: true }, broken: true, detail: /nproc ulimit soft 50 \/ hard 500/ },
  ]);
  t.same(effectiveUlimits(facts({ daemonDefaultsMerged: false, ...own(1, 2, 'NOFILE') }), daemon({ ulimits: [{ name: 'nofile', soft: 3, hard: 4 }] })).list.map((u) => u.name), ['NOFILE', 'nofile']);
});

t.test('blkio-limits', async (t) => {
  const th = (kind: string, path: string, rate: number) => ({ kind, path, rate });
  const with_ = (...values: ReturnType<typeof th>[]) => ({ blkioThrottles: { values } });
  runCases(t, [
    { name: 'none (default: write-bps)', check: { type: 'blkio-limits' }, broken: true, detail: /^no write-bps throttle \(--device-write-bps\)$/ },
    { name: 'write-bps set', check: { type: 'blkio-limits' }, facts: with_(th('write-bps', '/dev/sda', 1e6)), broken: false },
    { name: 'rate 0 is no throttle', check: { type: 'blkio-limits' }, facts: with_(th('write-bps', '/dev/sda', 0)), broken: true },
    { name: 'several required', check: { type: 'blkio-limits', require: ['read-bps', 'write-iops'] }, facts: with_(th('read-bps', '/dev/sda', 1)), broken: true, evidence: 1, detail: /no write-iops throttle \(--device-write-iops\)/ },
    { name: 'per device', check: { type: 'blkio-limits', devices: ['/dev/sda', '/dev/sdb'] }, facts: with_(th('write-bps', '/dev/sda', 1)), broken: true, detail: /no write-bps throttle \(--device-write-bps\) on \/dev\/sdb/ },
  ]);
});

t.test('storage-size', async (t) => {
  const check = { type: 'storage-size' };
  const xfs = daemon({ storageBackingFs: 'xfs', storageSizeSupported: true, storageNote: 'overlay2 on xfs with project quota' });
  runCases(t, [
    { name: 'supported, none set', check, host: xfs, broken: true, detail: /no writable-layer size limit \(--storage-opt size=\), which storage driver overlay2 supports here: overlay2 on xfs with project quota/ },
    { name: 'supported, set', check, facts: { storageOpt: { values: { size: '10G' } } }, host: xfs, broken: false },
    { name: 'above max', check: { type: 'storage-size', maxSize: '5G' }, facts: { storageOpt: { values: { size: '10G' } } }, host: xfs, broken: true, detail: /capped at 10 GiB, above the rule's 5 GiB/ },
    { name: 'unsupported passes by default', check, host: daemon(), broken: false },
    { name: 'unsupported is a violation when asked', check: { type: 'storage-size', unsupportedIsViolation: true }, host: daemon(), broken: true, detail: /not supported by storage driver overlay2: overlay2 caps the writable layer only on xfs mounted with pquota; the backing filesystem here is extfs/ },
    { name: 'unknown support', check, host: daemon({ storageSizeSupported: undefined, storageNote: 'overlay2 on xfs: whether it is mounted with pquota could not be read' }), broken: true, detail: /cannot tell whether storage driver overlay2 supports/ },
  ]);
});
