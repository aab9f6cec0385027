// CIS Docker Benchmark 1.6.0, section 5: container runtime (running
// containers, like docker-bench's `docker ps`).
//
// Every check that overlaps a policy rule is decided by the ONE evaluator
// (cis-policy.ts maps CIS ids to catalogue checks); the rest read inspect
// fields the facts do not carry. Fixed false results of docker-bench:
// - 5.6: sensitive subpaths and parent directories (evaluator).
// - 5.12: a CPU quota (--cpus) is a stronger restriction than shares; only a
//   container with neither is flagged.
// - 5.15: no restart policy is fine; "always"/"unless-stopped" and
//   on-failure without a small retry cap are flagged (docker-bench flagged
//   every container whose MaximumRetryCount was not exactly 5).
// - 5.26: with daemon-wide no-new-privileges, containers have it without a
//   security option saying so; only an explicit opt-out is flagged.
// - 5.2/5.3: "if applicable": on a host without AppArmor (or SELinux) the
//   check reports INFO instead of flagging every container.
// - 5.7: processes are listed with the engine's `top` (ps on the host), not
//   by `docker exec` into every container.
// - 5.18: a device cgroup rule (--device-cgroup-rule "b *:* rwm") exposes
//   host devices as much as --device does (with mknod, the host's disks);
//   both count, and device paths are judged as dockerd opens them.
// - 5.3: SELinux labelling switched off as dockerd reads it: label=disable,
//   label:disable and a bare "disable".
import { boolSetting } from '../lockdown/daemon-config';
import { containerName } from './audit-policy';
import { fromPolicy, listDetails, NO_CONTAINERS, perContainer } from './check-helpers';
import type { AuditedContainer } from './container-inventory';
import type { CisCheck, CisContext, CisOutcome } from './cis-types';

type PortMap = Record<string, Array<{ HostIp?: string; HostPort?: string }> | null> | null | undefined;

function publishedPorts(c: AuditedContainer): Array<{ hostIp: string; hostPort: number; containerPort: string }> {
  const ports = (c.inspect.NetworkSettings?.Ports ?? c.inspect.HostConfig?.PortBindings) as PortMap;
  const out: Array<{ hostIp: string; hostPort: number; containerPort: string }> = [];
  for (const [containerPort, binds] of Object.entries(ports ?? {})) {
    for (const b of binds ?? []) {
      const hostPort = Number(b.HostPort);
      if (Number.isFinite(hostPort) && hostPort > 0) out.push({ hostIp: b.HostIp ?? '', hostPort, containerPort });
    }
  }
  return out;
}

function hostHas(ctx: CisContext, name: string): boolean {
  return (ctx.info.SecurityOptions ?? []).some((o) => o.includes(`name=${name}`));
}

function explicitlyDisablesNnp(securityOpt: readonly string[]): boolean {
  return securityOpt.some((o) => /^no-new-privileges[=:](false|0)$/i.test(o.trim()));
}

/** Process command lines of a container from the engine's `top`, or undefined when not available. */
async function processes(ctx: CisContext, c: AuditedContainer): Promise<string[] | undefined> {
  const handle = ctx.docker.getContainer(c.facts.id);
  if (!handle.top) return undefined;
  try {
    const top = (await handle.top()) as { Titles?: string[]; Processes?: string[][] };
    const col = (top.Titles ?? []).findIndex((t) => t === 'CMD' || t === 'COMMAND');
    return (top.Processes ?? []).map((p) => (col >= 0 ? p[col] ?? '' : p.join(' ')));
  } catch {
    return undefined;
  }
}

function note(id: string, desc: string, remediation: string, impact = 'None.'): CisCheck {
  return { id, desc, scored: false, remediation, impact, run: (ctx) => (ctx.running.length === 0 ? NO_CONTAINERS : { result: 'NOTE' }) };
}

export const SECTION_5: { id: string; desc: string; checks: CisCheck[] } = {
  id: '5',
  desc: 'Container Runtime',
  checks: [
    {
      id: '5.1',
      desc: 'Ensure swarm mode is not Enabled, if not needed (Automated)',
      scored: true,
      remediation: 'If swarm mode has been enabled on a system in error, you should run the command: docker swarm leave',
      impact: 'Disabling swarm mode will impact the operation of Docker Enterprise components if these are in use.',
      run: (ctx) => (ctx.info.Swarm?.LocalNodeState === 'active' ? { result: 'WARN', details: 'Swarm mode is active' } : { result: 'PASS' }),
    },
    {
      id: '5.2',
      desc: 'Ensure that, if applicable, an AppArmor Profile is enabled (Automated)',
      scored: true,
      remediation: 'If AppArmor is applicable for your Linux OS, you should enable it. Alternatively, Docker\'s default AppArmor policy can be used. Start your Docker container using the customized AppArmor profile: docker run --interactive --tty --security-opt="apparmor:PROFILENAME" ubuntu /bin/bash',
      impact: 'The container will have the security controls defined in the AppArmor profile. It should be noted that if the AppArmor profile is misconfigured, this may cause issues with the operation of the container.',
      run(ctx) {
        if (ctx.running.length === 0) return NO_CONTAINERS;
        // apparmor=unconfined asked for explicitly (the evaluator) is a finding anywhere;
        // an empty profile only where the daemon has AppArmor to apply.
        const unconfined = new Set((ctx.policy.get('5.2') ?? []).map((h) => h.container.id));
        const apparmorOn = hostHas(ctx, 'apparmor');
        if (!apparmorOn && unconfined.size === 0) return { result: 'INFO', details: 'AppArmor is not enabled on this host (not applicable)' };
        return perContainer(ctx, 'No AppArmorProfile Found', (c) => {
          const p = c.inspect.AppArmorProfile ?? '';
          return unconfined.has(c.facts.id) || (apparmorOn && (p === '' || p === 'unconfined'));
        });
      },
    },
    {
      id: '5.3',
      desc: 'Ensure that, if applicable, SELinux security options are set (Automated)',
      scored: true,
      remediation: 'Set the SELinux State. Set the SELinux Policy. Create or import a SELinux policy template for Docker containers. Start Docker in daemon mode with SELinux enabled. Start your Docker container using the security options. For example, docker run --interactive --tty --security-opt label=level:TopSecret centos /bin/bash',
      impact: 'Any restrictions defined in the SELinux policy will be applied to your containers. It should be noted that if your SELinux policy is misconfigured, this may have an impact on the correct operation of the affected containers.',
      run(ctx) {
        if (ctx.running.length === 0) return NO_CONTAINERS;
        const disabled = fromPolicy(ctx, '5.3', 'SELinux labelling disabled');
        if (disabled.result === 'WARN') return disabled;
        if (!hostHas(ctx, 'selinux')) return { result: 'INFO', details: 'SELinux is not enabled in the Docker daemon (not applicable)' };
        return { result: 'PASS' };
      },
    },
    {
      id: '5.4',
      desc: 'Ensure that Linux kernel capabilities are restricted within containers (Automated)',
      scored: true,
      remediation: 'You could remove all the currently configured capabilities and then restore only the ones you specifically use: docker run --cap-drop=all --cap-add={"Capability 1","Capability 2"} <Run arguments> <Container Image Name or ID> <Command>',
      impact: 'Restrictions on processes within a container are based on which Linux capabilities are in force. Removal of the NET_RAW capability prevents the container from creating raw sockets which is good security practice under most circumstances, but may affect some networking utilities.',
      run(ctx) {
        if (ctx.running.length === 0) return NO_CONTAINERS;
        const hits = ctx.policy.get('5.4') ?? [];
        return perContainer(ctx, 'Capabilities added', (c) => {
          const h = hits.find((x) => x.container.id === c.facts.id);
          return h ? `${containerName(c.facts)}:${h.evidence.map((e) => e.location.replace(/^capAdd\[(.*)\]$/, '$1').toUpperCase().replace(/^CAP_/, '')).join(',')}` : undefined;
        });
      },
    },
    {
      id: '5.5',
      desc: 'Ensure that privileged containers are not used (Automated)',
      scored: true,
      remediation: 'You should not run containers with the --privileged flag.',
      impact: 'If you start a container without the --privileged flag, it will not have excessive default capabilities.',
      run: (ctx) => fromPolicy(ctx, '5.5', 'Containers running in privileged mode'),
    },
    {
      id: '5.6',
      desc: 'Ensure sensitive host system directories are not mounted on containers (Automated)',
      scored: true,
      remediation: 'You should not mount directories which are security sensitive on the host within containers, especially in read-write mode.',
      impact: 'None.',
      run(ctx) {
        if (ctx.running.length === 0) return NO_CONTAINERS;
        const hits = ctx.policy.get('5.6') ?? [];
        return perContainer(ctx, 'Containers with sensitive directories mounted', (c) => {
          const h = hits.find((x) => x.container.id === c.facts.id);
          return h ? h.evidence.map((e) => `${containerName(c.facts)}:${e.location.replace(/^mounts\[(.*)\]$/, '$1')}`).join(' ') : undefined;
        });
      },
    },
    {
      id: '5.7',
      desc: 'Ensure sshd is not run within containers (Automated)',
      scored: true,
      remediation: 'Uninstall the SSH daemon from the container and use docker exec to enter a container on the remote host.',
      impact: 'None.',
      async run(ctx) {
        if (ctx.running.length === 0) return NO_CONTAINERS;
        const items: string[] = [];
        const unknown: string[] = [];
        for (const c of ctx.running) {
          const cmds = await processes(ctx, c);
          if (!cmds) {
            unknown.push(containerName(c.facts));
            continue;
          }
          if (cmds.some((cmd) => /(^|\/)sshd(\s|:|$)/.test(cmd.trim().split(/\s+/)[0] ?? '') || /^sshd:/.test(cmd.trim()))) items.push(containerName(c.facts));
        }
        if (items.length > 0) return { result: 'WARN', details: listDetails('Containers running sshd', items), items };
        if (unknown.length === ctx.running.length) return { result: 'INFO', details: listDetails('Could not list processes', unknown), items: unknown };
        return { result: 'PASS' };
      },
    },
    {
      id: '5.8',
      desc: 'Ensure privileged ports are not mapped within containers (Automated)',
      scored: true,
      remediation: 'You should not map container ports to privileged host ports when starting a container. You should also, ensure that there is no such container to host privileged port mapping declarations in the Dockerfile.',
      impact: 'None.',
      run: (ctx) =>
        perContainer(ctx, 'Containers using privileged ports', (c) => {
          const p = publishedPorts(c).filter((x) => x.hostPort < 1024);
          return p.length > 0 ? p.map((x) => `${containerName(c.facts)}:${x.hostPort}`).join(' ') : undefined;
        }),
    },
    {
      id: '5.9',
      desc: 'Ensure that only needed ports are open on the container (Manual)',
      scored: false,
      remediation: 'You should fix the Dockerfile of the container image to expose only needed ports by your containerized application. You should also completely ignore the list of ports defined in the Dockerfile by NOT using -P (UPPERCASE) or the --publish-all flag when starting the container. Use the -p (lowercase) or --publish flag to explicitly define the ports that you need for a particular container instance.',
      impact: 'None.',
      run: (ctx) =>
        perContainer(ctx, 'Port in use', (c) => {
          const p = publishedPorts(c);
          return p.length > 0 ? p.map((x) => `${containerName(c.facts)}:${x.hostPort}`).join(' ') : undefined;
        }, 'INFO'),
    },
    {
      id: '5.10',
      desc: "Ensure that the host's network namespace is not shared (Automated)",
      scored: true,
      remediation: 'You should not pass the --net=host option when starting any container.',
      impact: 'None.',
      run: (ctx) => fromPolicy(ctx, '5.10', "Containers running with networking mode 'host'"),
    },
    {
      id: '5.11',
      desc: 'Ensure that the memory usage for containers is limited (Automated)',
      scored: true,
      remediation: 'You should run the container with only as much memory as it requires by using the --memory argument.',
      impact: 'If correct memory limits are not set on each container, one process can expand its usage and cause other containers to run out of resources.',
      run: (ctx) => fromPolicy(ctx, '5.11', 'Container running without memory restrictions'),
    },
    {
      id: '5.12',
      desc: 'Ensure that CPU priority is set appropriately on containers (Automated)',
      scored: true,
      remediation: 'You should manage the CPU runtime between your containers dependent on their priority within your organization. To do so start the container using the --cpu-shares argument.',
      impact: 'If you do not correctly assign CPU thresholds, the container process may run out of resources and become unresponsive. If CPU resources on the host are not constrainted, CPU shares do not place any restrictions on individual resources.',
      run: (ctx) =>
        fromPolicy(ctx, '5.12', 'Containers running without CPU restrictions', {
          ignore: (c) => (c.inspect.HostConfig?.CpuShares ?? 0) > 0,
        }),
    },
    {
      id: '5.13',
      desc: "Ensure that the container's root filesystem is mounted as read only (Automated)",
      scored: true,
      remediation: 'You should add a --read-only flag at a container\'s runtime to enforce the container\'s root filesystem being mounted as read only.',
      impact: 'Enabling --read-only at container runtime may break some common use cases for containers.',
      run: (ctx) => fromPolicy(ctx, '5.13', 'Containers running with root FS mounted R/W'),
    },
    {
      id: '5.14',
      desc: 'Ensure that incoming container traffic is bound to a specific host interface (Automated)',
      scored: true,
      remediation: 'You should bind the container port to a specific host interface on the desired host port. Example: docker run --detach --publish 10.2.3.4:49153:80 nginx',
      impact: 'None.',
      run: (ctx) =>
        perContainer(ctx, 'Port being bound to wildcard IP', (c) => {
          const p = publishedPorts(c).filter((x) => x.hostIp === '' || x.hostIp === '0.0.0.0' || x.hostIp === '::');
          return p.length > 0 ? p.map((x) => `${containerName(c.facts)}:${x.hostIp || '0.0.0.0'}:${x.hostPort}`).join(' ') : undefined;
        }),
    },
    {
      id: '5.15',
      desc: "Ensure that the 'on-failure' container restart policy is set to '5' (Automated)",
      scored: true,
      remediation: 'If you wish a container to be automatically restarted, a sample command is docker run --detach --restart=on-failure:5 nginx',
      impact: 'If this option is set, a container will only attempt to restart itself 5 times.',
      run: (ctx) =>
        perContainer(ctx, 'MaximumRetryCount is not set to 5', (c) => {
          const rp = c.inspect.HostConfig?.RestartPolicy;
          const name = rp?.Name ?? '';
          if (name === 'always' || name === 'unless-stopped') return `${containerName(c.facts)}:${name}`;
          if (name === 'on-failure' && ((rp?.MaximumRetryCount ?? 0) === 0 || (rp?.MaximumRetryCount ?? 0) > 5)) return `${containerName(c.facts)}:on-failure:${rp?.MaximumRetryCount ?? 0}`;
          return undefined;
        }),
    },
    {
      id: '5.16',
      desc: "Ensure that the host's process namespace is not shared (Automated)",
      scored: true,
      remediation: 'You should not start a container with the --pid=host argument.',
      impact: 'Container processes cannot see processes on the host system.',
      run: (ctx) => fromPolicy(ctx, '5.16', 'Host PID namespace being shared with'),
    },
    {
      id: '5.17',
      desc: "Ensure that the host's IPC namespace is not shared (Automated)",
      scored: true,
      remediation: 'You should not start a container with the --ipc=host argument.',
      impact: 'Shared memory segments are used in order to accelerate interprocess communications, commonly in high-performance applications. If this type of application is containerized into multiple containers, you might need to share the IPC namespace of the containers in order to achieve high performance. Under these circumstances, you should still only share container specific IPC namespaces and not the host IPC namespace.',
      run: (ctx) => fromPolicy(ctx, '5.17', 'Containers sharing host IPC namespace'),
    },
    {
      id: '5.18',
      desc: 'Ensure that host devices are not directly exposed to containers (Manual)',
      scored: false,
      remediation: 'You should not directly expose host devices to containers. If you do need to expose host devices to containers, you should use granular permissions as appropriate to your organization.',
      impact: 'You would not be able to use host devices directly within containers.',
      run: (ctx) => fromPolicy(ctx, '5.18', 'Containers with host devices or device cgroup rules', { warn: 'INFO' }),
    },
    {
      id: '5.19',
      desc: 'Ensure that the default ulimit is overwritten at runtime if needed (Manual)',
      scored: false,
      remediation: 'You should only override the default ulimit settings if needed in a specific case.',
      impact: 'If ulimits are not set correctly, overutilization by individual containers could make the host system unusable.',
      run: (ctx) => perContainer(ctx, 'Containers with no default ulimit override', (c) => (c.inspect.HostConfig?.Ulimits ?? []).length === 0, 'INFO'),
    },
    {
      id: '5.20',
      desc: 'Ensure mount propagation mode is not set to shared (Automated)',
      scored: true,
      remediation: 'Do not mount volumes in shared mode propagation.',
      impact: 'None.',
      run: (ctx) =>
        perContainer(ctx, 'Containers with shared mount propagation', (c) => {
          const m = c.facts.mounts.filter((x) => x.propagation === 'shared' || x.propagation === 'rshared');
          return m.length > 0 ? m.map((x) => `${containerName(c.facts)}:${x.destination}`).join(' ') : undefined;
        }),
    },
    {
      id: '5.21',
      desc: "Ensure that the host's UTS namespace is not shared (Automated)",
      scored: true,
      remediation: 'You should not start a container with the --uts=host argument.',
      impact: 'None.',
      run: (ctx) => fromPolicy(ctx, '5.21', 'Containers sharing host UTS namespace'),
    },
    {
      id: '5.22',
      desc: 'Ensure the default seccomp profile is not Disabled (Automated)',
      scored: true,
      remediation: 'By default, seccomp profiles are enabled. You do not need to do anything unless you want to modify and use a modified seccomp profile.',
      impact: 'With Docker 1.10 and greater, the default seccomp profile blocks syscalls, regardless of --cap-add passed to the container.',
      run: (ctx) => fromPolicy(ctx, '5.22', 'Containers running without Seccomp profile'),
    },
    note('5.23', 'Ensure that docker exec commands are not used with the privileged option (Automated)',
      'You should not use the --privileged option in docker exec commands.',
      'If you need enhanced capabilities within a container, then run it with all the permissions it requires. These should be specified individually.'),
    note('5.24', 'Ensure that docker exec commands are not used with the user=root option (Manual)',
      'You should not use the --user=root option in docker exec commands.'),
    {
      id: '5.25',
      desc: 'Ensure that cgroup usage is confirmed (Automated)',
      scored: true,
      remediation: 'You should not use the --cgroup-parent option within the docker run command unless strictly required.',
      impact: 'None.',
      run: (ctx) =>
        perContainer(ctx, 'Containers using a non-default cgroup parent', (c) => {
          const p = c.inspect.HostConfig?.CgroupParent ?? '';
          return p !== '' ? `${containerName(c.facts)}:${p}` : undefined;
        }),
    },
    {
      id: '5.26',
      desc: 'Ensure that the container is restricted from acquiring additional privileges (Automated)',
      scored: true,
      remediation: 'You should start your container with the options: docker run --rm -it --security-opt=no-new-privileges ubuntu bash',
      impact: 'The no_new_priv option prevents LSMs like SELinux from allowing processes to acquire new privileges.',
      run(ctx) {
        const daemonWide = boolSetting(ctx.daemon, 'no-new-privileges')?.value === true;
        return fromPolicy(ctx, '5.26', 'Containers without restricted privileges', {
          ignore: (c) => daemonWide && !explicitlyDisablesNnp(c.facts.securityOpt),
        });
      },
    },
    {
      id: '5.27',
      desc: 'Ensure that container health is checked at runtime (Automated)',
      scored: true,
      remediation: 'You should run the container using the --health-cmd parameter.',
      impact: 'None.',
      run: (ctx) => perContainer(ctx, 'Containers without health check', (c) => !(c.inspect.State as { Health?: { Status?: string } }).Health?.Status),
    },
    {
      id: '5.28',
      desc: 'Ensure that Docker commands always make use of the latest version of their image (Manual)',
      scored: false,
      remediation: 'You should use proper version pinning mechanisms (the "latest" tag which is assigned by default is still vulnerable to caching attacks) to avoid extracting cached older versions. Version pinning mechanisms should be used for base images, packages, and entire images. You can customize version pinning rules according to your requirements.',
      impact: 'None.',
      run: (ctx): CisOutcome => (ctx.running.length === 0 ? NO_CONTAINERS : { result: 'INFO' }),
    },
    {
      id: '5.29',
      desc: 'Ensure that the PIDs cgroup limit is used (Automated)',
      scored: true,
      remediation: 'Use --pids-limit flag with an appropriate value when launching the container.',
      impact: 'Set the PIDs limit value as appropriate. Incorrect values might leave containers unusable.',
      run: (ctx) => fromPolicy(ctx, '5.29', 'Containers without PIDs cgroup limit'),
    },
    {
      id: '5.30',
      desc: "Ensure that Docker's default bridge 'docker0' is not used (Manual)",
      scored: false,
      remediation: 'You should follow the Docker documentation and set up a user-defined network. All the containers should be run in this network.',
      impact: 'User-defined networks need to be configured and managed in line with organizational security policy.',
      run: (ctx) => fromPolicy(ctx, '5.30', 'Containers using docker0 network'),
    },
    {
      id: '5.31',
      desc: "Ensure that the host's user namespaces are not shared (Automated)",
      scored: true,
      remediation: 'You should not share user namespaces between host and containers.',
      impact: 'None.',
      run: (ctx) => fromPolicy(ctx, '5.31', 'Namespace shared'),
    },
    {
      id: '5.32',
      desc: 'Ensure that the Docker socket is not mounted inside any containers (Automated)',
      scored: true,
      remediation: 'You should ensure that no containers mount docker.sock as a volume.',
      impact: 'None.',
      run: (ctx) => fromPolicy(ctx, ['5.32', '5.32.host'], 'Docker socket shared'),
    },
  ],
};
