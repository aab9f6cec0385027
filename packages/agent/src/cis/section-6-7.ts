// CIS Docker Benchmark 1.6.0, sections 6 (Docker security operations) and
// 7 (Docker swarm configuration). Swarm checks PASS with "Swarm mode not
// enabled" on a host that is not in a swarm, as docker-bench reports them.
import { tcpListenersOf } from '../lockdown/proc';
import { listDetails } from './check-helpers';
import type { CisCheck, CisContext, CisOutcome } from './cis-types';

const NOT_SWARM: CisOutcome = { result: 'PASS', details: 'Swarm mode not enabled' };

function swarmActive(ctx: CisContext): boolean {
  return ctx.info.Swarm?.LocalNodeState === 'active';
}

function manual(id: string, desc: string, remediation: string, impact = 'None.'): CisCheck {
  return { id, desc, scored: false, remediation, impact, run: (ctx) => (swarmActive(ctx) ? { result: 'NOTE' } : NOT_SWARM) };
}

export const SECTION_6: { id: string; desc: string; checks: CisCheck[] } = {
  id: '6',
  desc: 'Docker Security Operations',
  checks: [
    {
      id: '6.1',
      desc: 'Ensure that image sprawl is avoided (Manual)',
      scored: false,
      remediation: 'You should keep only the images that you actually need and establish a workflow to remove old or stale images from the host. Additionally, you should use features such as pull-by-digest to get specific images from the registry.',
      impact: 'docker system prune -a removes all exited containers as well as all images and volumes that are not referenced by running containers, including for UCP and DTR.',
      run(ctx) {
        const unused = ctx.images.filter((i) => !ctx.imagesInUse.has(i.id)).map((i) => i.name);
        return {
          result: 'INFO',
          details: `There are currently: ${ctx.images.length} images, ${unused.length} of them not used by any container`,
          ...(unused.length > 0 ? { items: unused } : {}),
        };
      },
    },
    {
      id: '6.2',
      desc: 'Ensure that container sprawl is avoided (Manual)',
      scored: false,
      remediation: 'You should periodically check your container inventory on each host and clean up containers which are not in active use with the command: docker container prune',
      impact: 'You should retain containers that are actively in use, and delete ones which are no longer needed.',
      run: (ctx) => ({ result: 'INFO', details: `There are currently a total of ${ctx.containerCount} containers, with ${ctx.running.length} of them currently running` }),
    },
  ],
};

export const SECTION_7: { id: string; desc: string; checks: CisCheck[] } = {
  id: '7',
  desc: 'Docker Swarm Configuration',
  checks: [
    {
      id: '7.1',
      desc: 'Ensure that the minimum number of manager nodes have been created in a swarm (Automated)',
      scored: true,
      remediation: 'If an excessive number of managers is configured, the excess nodes can be demoted to workers using command: docker node demote <ID>',
      impact: 'None.',
      run(ctx) {
        if (!swarmActive(ctx)) return NOT_SWARM;
        const managers = ctx.info.Swarm?.Managers ?? 0;
        // An odd count of at most 7 keeps a quorum without needless managers.
        return managers % 2 === 1 && managers <= 7 ? { result: 'PASS', details: `Managers: ${managers}` } : { result: 'WARN', details: `Managers: ${managers}` };
      },
    },
    {
      id: '7.2',
      desc: 'Ensure that swarm services are bound to a specific host interface (Automated)',
      scored: true,
      remediation: 'Resolving this issues requires re-initialization of the swarm, specifying a specific interface for the --listen-addr parameter.',
      impact: 'None.',
      async run(ctx) {
        if (!swarmActive(ctx)) return NOT_SWARM;
        if (ctx.daemon.pid === undefined) return { result: 'INFO', details: 'dockerd process not found; listening sockets not checked' };
        const wild = (await tcpListenersOf(ctx.procRoot, ctx.daemon.pid)).filter((l) => l.port === 2377 && (l.address === '0.0.0.0' || l.address === '::'));
        return wild.length > 0 ? { result: 'WARN', details: 'Swarm management port 2377 listens on all interfaces' } : { result: 'PASS' };
      },
    },
    {
      id: '7.3',
      desc: 'Ensure that all Docker swarm overlay networks are encrypted (Automated)',
      scored: true,
      remediation: 'You should create overlay networks the with --opt encrypted flag.',
      impact: 'None.',
      async run(ctx) {
        if (!swarmActive(ctx)) return NOT_SWARM;
        if (!ctx.docker.listNetworks) return { result: 'INFO', details: 'Networks not listed' };
        const nets = await ctx.docker.listNetworks({ filters: { driver: ['overlay'] } });
        const items = nets.filter((n) => n.Driver === 'overlay' && !Object.keys(n.Options ?? {}).includes('encrypted')).map((n) => n.Name);
        return items.length === 0 ? { result: 'PASS' } : { result: 'WARN', details: listDetails('Unencrypted overlay networks', items), items };
      },
    },
    manual('7.4', "Ensure that Docker's secret management commands are used for managing secrets in a swarm cluster (Manual)",
      'You should follow the docker secret documentation and use it to manage secrets effectively.'),
    {
      id: '7.5',
      desc: 'Ensure that swarm manager is run in auto-lock mode (Automated)',
      scored: true,
      remediation: 'If you are initializing a swarm, use the command below. docker swarm init --autolock. If you want to set --autolock on an existing swarm manager node, use the following command. docker swarm update --autolock',
      impact: 'A swarm in auto-lock mode will not recover from a restart without manual intervention from an administrator to enter the unlock key. This may not always be desirable, and should be reviewed at a policy level.',
      run(ctx) {
        if (!swarmActive(ctx)) return NOT_SWARM;
        if (ctx.info.Swarm?.ControlAvailable !== true) return { result: 'INFO', details: 'This node is not a swarm manager' };
        return ctx.info.Swarm?.Cluster?.Spec?.EncryptionConfig?.AutoLockManagers === true ? { result: 'PASS' } : { result: 'WARN' };
      },
    },
    manual('7.6', 'Ensure that the swarm manager auto-lock key is rotated periodically (Manual)',
      'You should run the command to rotate the keys. docker swarm unlock-key --rotate'),
    {
      id: '7.7',
      desc: 'Ensure that node certificates are rotated as appropriate (Manual)',
      scored: false,
      remediation: 'You should run the command to set the desired expiry time on the node certificate. docker swarm update --cert-expiry 48h',
      impact: 'None.',
      run(ctx) {
        if (!swarmActive(ctx)) return NOT_SWARM;
        const ns = ctx.info.Swarm?.Cluster?.Spec?.CAConfig?.NodeCertExpiry;
        if (ns === undefined) return { result: 'NOTE' };
        return { result: 'INFO', details: `Node certificate expiry: ${Math.round(ns / 3.6e12)} hours` };
      },
    },
    manual('7.8', 'Ensure that CA certificates are rotated as appropriate (Manual)',
      'You should run the command to rotate a certificate. docker swarm ca --rotate'),
    manual('7.9', 'Ensure that management plane traffic is separated from data plane traffic (Manual)',
      'You should initialize the swarm with dedicated interfaces for management and data planes respectively. Example: docker swarm init --advertise-addr=192.168.0.1 --data-path-addr=17.1.0.3'),
  ],
};
