// Live usage from REAL cgroups of containers on a private engine: a
// CPU-burning busybox limited to 0.2 CPU is detected above 80 % of its
// quota within the rule's window; a container started without limits is
// reported as unlimited; limits set with docker run are read back.
import t from 'tap';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { useEngine, LABEL_ARGS, removeLabelledContainers } from '../../../../test/helpers/engine';
import { createDockerClient } from '../../src/docker/client';
import { CgroupReader } from '../../src/cgroup/cgroup-reader';
import { UsageSampler, type Breach, type UsageSample } from '../../src/cgroup/usage-sampler';
import type { SampledContainer } from '../../src/cgroup/usage-sampler-options';

t.test('CPU burner breaches its quota rule; unlimited container is unlimited', async (t) => {
  const engine = await useEngine(t);
  t.teardown(() => removeLabelledContainers(engine));
  const docker = createDockerClient({ dockerHost: engine.dockerHost });
  const uniq = `${process.pid}-${Math.random().toString(36).slice(2, 7)}`;
  const burner = await engine.dockerOk(['run', '-d', '--network', 'none', ...LABEL_ARGS, '--name', `burner-${uniq}`, '--cpus', '0.2', engine.image, 'sh', '-c', 'while :; do :; done']);
  const idle = await engine.dockerOk(['run', '-d', '--network', 'none', ...LABEL_ARGS, '--name', `unlimited-${uniq}`, engine.image, 'sleep', '300']);
  const limited = await engine.dockerOk(['run', '-d', '--network', 'none', ...LABEL_ARGS, '--name', `limited-${uniq}`, '--memory', '64m', '--pids-limit', '20', engine.image, 'sleep', '300']);
  const containers: SampledContainer[] = await Promise.all([burner, idle, limited].map(async (id) => {
    const i = await docker.getContainer(id).inspect();
    return { id: i.Id, name: i.Name, pid: i.State.Pid, state: i.State.Status, nanoCpus: i.HostConfig.NanoCpus };
  }));
  const info = (await docker.info()) as { CgroupDriver?: string };
  const reader = await CgroupReader.forHost({ driver: info.CgroupDriver === 'systemd' ? 'systemd' : 'cgroupfs' });
  t.teardown(() => reader.close());

  const forSeconds = 3;
  const sampler = new UsageSampler({
    reader, containers: () => containers, interval: 1000,
    rules: [{ id: 'runtime.cpu-over-quota', metric: 'cpu', abovePercent: 80, forSeconds }],
  });
  const breaches: Breach[] = [];
  const samples = new Map<string, UsageSample>();
  const errors: string[] = [];
  sampler.on('breach', (b) => breaches.push(b));
  sampler.on('usage', (s) => samples.set(s.containerId, s));
  sampler.on('sampleError', (id, e) => errors.push(`${id}: ${e.message}`));
  const started = Date.now();
  sampler.start();
  t.teardown(() => sampler.stop());
  const windowMs = (forSeconds + 10) * 1000;
  while (breaches.length === 0 && Date.now() - started < windowMs) await new Promise((r) => setTimeout(r, 200));
  await sampler.stop();
  t.same(errors, []);
  t.equal(breaches.length, 1, `breached within ${windowMs / 1000} s (took ${((Date.now() - started) / 1000).toFixed(1)} s)`);
  const b = breaches[0]!;
  t.equal(b.containerId, containers[0]!.id);
  t.equal(b.name, `burner-${uniq}`);
  t.ok(b.value > 80 && b.value < 130, `CPU at ${b.value} % of a 0.2 CPU quota`);
  t.ok(b.at - b.sinceMs >= forSeconds * 1000 - 250, 'held for the rule\'s duration');
  t.equal(b.sample.cpuLimitCores, 0.2, 'quota read from the cgroup');

  const un = samples.get(containers[1]!.id)!;
  t.same(un.unlimited, { cpu: true, memory: true, pids: true }, 'started without limits → unlimited');
  t.same([un.cpuPercentOfQuota, un.memoryPercentOfLimit, un.pidsPercentOfLimit, un.cpuLimitCores, un.memoryLimitBytes, un.pidsLimit], [null, null, null, 0, 0, 0]);
  t.ok(un.pids >= 1, 'its sleep process is counted');
  t.ok(un.memoryBytes > 0);
  const lim = samples.get(containers[2]!.id)!;
  t.equal(lim.memoryLimitBytes, 64 * 1024 * 1024);
  t.equal(lim.pidsLimit, 20);
  t.same(lim.unlimited, { cpu: true, memory: false, pids: false });
  t.ok(lim.memoryPercentOfLimit! >= 0 && lim.memoryPercentOfLimit! < 50);
  t.equal(sampler.window(containers[0]!.id).length >= forSeconds, true, 'the burner has a window of samples');
});

t.test('block IO from the real cgroup: a direct-IO writer and reader is measured, only when asked', async (t) => {
  const engine = await useEngine(t);
  t.teardown(() => removeLabelledContainers(engine));
  const docker = createDockerClient({ dockerHost: engine.dockerHost });
  const MiB = 1024 * 1024;
  // O_DIRECT so the IO is issued by the container's own process: on cgroup v1, page-cache
  // writeback runs in the root cgroup and would not be charged to the container.
  const info0 = (await docker.info()) as { DockerRootDir?: string };
  const disk = info0.DockerRootDir !== undefined ? wholeDiskOf(info0.DockerRootDir) : undefined;
  // Since Linux 6.10 (blk-throttle set up on a disk only once a limit is configured on it) the
  // cgroup v1 counters stay at 0 on a disk nobody throttles; a limit far above what dd can do
  // turns them on without slowing it (cgroup v2's io.stat counts regardless).
  const throttle = disk !== undefined ? ['--device-read-bps', `${disk}:1tb`] : [];
  const io = await engine.dockerOk(['run', '-d', '--network', 'none', ...throttle, ...LABEL_ARGS, engine.image, 'sh', '-c',
    'dd if=/dev/zero of=/f bs=1M count=16 oflag=direct && dd if=/f of=/dev/null bs=1M iflag=direct && echo done && sleep 120']);
  const idle = await engine.dockerOk(['run', '-d', '--network', 'none', ...LABEL_ARGS, engine.image, 'sleep', '120']);
  const info = (await docker.info()) as { CgroupDriver?: string };
  const reader = await CgroupReader.forHost({ driver: info.CgroupDriver === 'systemd' ? 'systemd' : 'cgroupfs' });
  t.teardown(() => reader.close());
  t.equal((await reader.read(io)).blkio, undefined, 'not read unless asked');
  const end = Date.now() + 20_000;
  let u = await reader.read(io, undefined, { blkio: true });
  while ((u.blkio?.readBytes ?? 0) < 16 * MiB && Date.now() < end) {
    await new Promise((r) => setTimeout(r, 250));
    u = await reader.read(io, undefined, { blkio: true });
  }
  const b = u.blkio!;
  t.ok(b, `cgroup v${reader.version}: block IO read`);
  t.ok(b.writeBytes >= 16 * MiB && b.writeBytes < 20 * MiB, `16 MiB written: ${(b.writeBytes / MiB).toFixed(1)} MiB in ${b.writeOps} ops`);
  t.ok(b.readBytes >= 16 * MiB && b.readBytes < 20 * MiB, `16 MiB read: ${(b.readBytes / MiB).toFixed(1)} MiB in ${b.readOps} ops`);
  t.ok(b.writeOps >= 16 && b.readOps >= 16, 'at least one op per 1 MiB block');
  const i = (await reader.read(idle, undefined, { blkio: true })).blkio;
  t.ok(i && i.writeBytes < MiB, `the idle container wrote next to nothing (${i?.writeBytes} bytes)`);
});

/** The whole disk (e.g. /dev/vda) holding `path`, from its device number through sysfs; undefined when it is not a block device. */
function wholeDiskOf(path: string): string | undefined {
  const dev = statSync(path).dev;
  const sys = `/sys/dev/block/${Math.floor(dev / 256) & 0xfff}:${(dev & 0xff) | ((dev >> 12) & 0xfff00)}`;
  if (!existsSync(sys)) return undefined;
  const dir = existsSync(`${sys}/partition`) ? `${sys}/..` : sys;
  const name = /^DEVNAME=(.+)$/m.exec(readFileSync(`${dir}/uevent`, 'utf8'))?.[1];
  return name !== undefined && existsSync(`/dev/${name}`) ? `/dev/${name}` : undefined;
}
