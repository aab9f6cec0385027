// The contract between the agent's per-container resource readers beyond the
// cgroup (disk: writable layer and logs; network: namespace counters and
// connections) and the usage sampler that reports them. Each reader is cheap
// per call, never enters a container's namespace, and never throws for a
// container that has gone away (it answers null fields instead).

/** What a reader needs to know about one running container (from the watcher's inspect). */
export interface ResourceTarget {
  id: string;
  /** Init pid (inspect State.Pid); 0 when not running. */
  pid: number;
  /** Storage driver (inspect GraphDriver.Name), e.g. "overlay2". */
  graphDriver?: string;
  /** The writable layer's directory on the host (inspect GraphDriver.Data.UpperDir for overlay2). */
  upperDir?: string;
  /** The log file on the host (inspect LogPath; empty for drivers that keep no local file). */
  logPath?: string;
  /** Log driver (inspect HostConfig.LogConfig.Type), e.g. "json-file", "local". */
  logDriver?: string;
}

/** Disk held by one container on the host. null = not measurable (driver without an upper dir, no log file, gone). */
export interface DiskUsage {
  /** Bytes in the writable layer (apparent size of the files, st_blocks*512 summed). */
  writableBytes: number | null;
  /** Bytes of its log files (the current file plus rotated ones). */
  logBytes: number | null;
  /**
   * Set when the writable layer could not be fully counted (directories deeper than the
   * reader's maxDepth, or a directory that could not be opened): writableBytes is then
   * what was reached, a lower bound. Absent when the count is complete.
   */
  writableIncomplete?: boolean;
}

/**
 * Network counters of a container's network namespace (cumulative, summed over
 * ALL its interfaces, loopback included: in a namespace of its own, `lo` carries
 * only this container's traffic, and a --network none container has nothing
 * else), and its sockets now. The loopback share is in loopbackRxBytes/TxBytes.
 */
export interface NetUsage {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
  rxDropped: number;
  txDropped: number;
  /**
   * TCP sockets in ESTABLISHED/SYN_* states etc. (every state but LISTEN and TIME_WAIT/CLOSE), IPv4 + IPv6.
   * ProcNetUsageReader's default (per-namespace sockstat counters, O(1)) counts LISTEN sockets too;
   * its exact 'scan' mode does not (see resources/net-usage.ts for why the default is the counters).
   */
  tcpConnections: number;
  /** All TCP + UDP sockets of the namespace, any state. */
  sockets: number;
  /** Of rxBytes/txBytes, what went over `lo` (each byte over lo is counted sent and received). */
  loopbackRxBytes?: number;
  loopbackTxBytes?: number;
  /** A socket file was larger than the reader's cap: tcpConnections and sockets are lower bounds. */
  socketsTruncated?: boolean;
  /**
   * net/dev was larger than the reader's cap (ProcNetUsageReader maxDevFileBytes, default
   * 64 KiB ≈ 500 interfaces): the byte/packet/drop counters cover only the interfaces read
   * (lower bounds). Absent when everything was read.
   */
  devTruncated?: boolean;
}

/** Reads disk usage incrementally: cost per tick stays flat as the fleet grows. */
export interface DiskUsageSource {
  /** Latest known usage of each target (may be from an earlier scan for big trees). */
  read(targets: readonly ResourceTarget[], now: number): Promise<Map<string, DiskUsage>>;
  /** Drop state for a container that has gone (and cancel a walk of its layer in progress, closing its handles). */
  forget(id: string): void;
  close?(): void;
}

export interface NetUsageSource {
  /**
   * null when the container shares the host's network namespace (--network host) or is gone,
   * and when its `pid` no longer names the process first read under that container id
   * (ProcNetUsageReader: another start time in /proc/<pid>/stat, i.e. the pid was reused),
   * until the target's pid changes or forget(id).
   */
  read(target: ResourceTarget): Promise<NetUsage | null>;
  forget?(id: string): void;
}
