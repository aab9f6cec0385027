// @bulkhead/agent: the host daemon.
export { Agent, reportedInventory } from './agent';
export { resolveAgentOptions, DEFAULT_AUTHZ_SOCKET } from './agent-options';
export type { AgentOptions, AgentOptionsInput } from './agent-options';
export { enroll, fetchPinnedCa } from './enroll/enroll';
export type { EnrollOptions } from './enroll/enroll';
export { ControllerLink } from './link/controller-link';
export type { ControllerLinkOptions, LinkInventory, LinkState } from './link/controller-link';
export { loadCredentials, saveCredentials, isEnrolled, statePaths } from './state/agent-state';
export type { AgentCredentials, AgentIdentity } from './state/agent-state';
export { main as agentCliMain } from './cli/main';
// Manual commands and metrics.
export { CommandRunner, COMMAND_ACTIONS } from './commands/command-runner';
export type { CommandRunnerOptions, CommandDocker } from './commands/command-runner';
export { QuarantineMemory } from './commands/quarantine-memory';
export { AgentMetrics } from './metrics/agent-metrics';
// Live usage.
export { UsageMonitor } from './cgroup/usage-monitor';
export type { UsageMonitorOptions } from './cgroup/usage-monitor';
