// Owns the schema's history. Migrations live in code (not files found at
// run time) so they ship inside the compiled package, and use only kysely's
// schema builder with portable types so the same list runs on SQLite and
// PostgreSQL. Never edit a migration that has shipped; append a new one.
import { Migrator, PostgresAdapter, sql, type Kysely, type Migration, type MigrationProvider } from 'kysely';
import { BulkheadError } from '@bulkhead/shared';

// Migrations are written against Kysely<any> on purpose: they describe the
// schema as it was at that step, not as schema.ts types it today.
/* eslint-disable @typescript-eslint/no-explicit-any */
type AnyDb = Kysely<any>;

export const MIGRATIONS: Readonly<Record<string, Migration>> = {
  '0001_initial': {
    async up(db: AnyDb): Promise<void> {
      await db.schema
        .createTable('join_tokens')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('secret_hash', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('used_at', 'bigint')
        .addColumn('used_by_agent', 'text')
        .addColumn('revoked_at', 'bigint')
        .addColumn('description', 'text', (c) => c.notNull().defaultTo(''))
        .execute();

      await db.schema
        .createTable('api_keys')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('secret_hash', 'text', (c) => c.notNull())
        .addColumn('role', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint')
        .addColumn('revoked_at', 'bigint')
        .execute();

      await db.schema
        .createTable('agents')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('hostname', 'text', (c) => c.notNull())
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('agent_version', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('host_json', 'text')
        .addColumn('cert_serial', 'text', (c) => c.notNull())
        .addColumn('cert_not_after', 'bigint', (c) => c.notNull())
        .addColumn('enrolled_at', 'bigint', (c) => c.notNull())
        .addColumn('last_seen_at', 'bigint')
        .addColumn('connected_at', 'bigint')
        .addColumn('revoked_at', 'bigint')
        .execute();
      await db.schema.createIndex('agents_status_last_seen').on('agents').columns(['status', 'last_seen_at']).execute();

      await db.schema
        .createTable('containers')
        .addColumn('agent_id', 'text', (c) => c.notNull().references('agents.id').onDelete('cascade'))
        .addColumn('id', 'text', (c) => c.notNull())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('image_ref', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('facts_json', 'text', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addColumn('removed', 'integer', (c) => c.notNull().defaultTo(0))
        .addPrimaryKeyConstraint('containers_pk', ['agent_id', 'id'])
        .execute();
      await db.schema.createIndex('containers_state').on('containers').columns(['state']).execute();
      await db.schema.createIndex('containers_image_ref').on('containers').columns(['image_ref']).execute();
      await db.schema.createIndex('containers_agent_name').on('containers').columns(['agent_id', 'name']).execute();

      await db.schema
        .createTable('container_labels')
        .addColumn('agent_id', 'text', (c) => c.notNull())
        .addColumn('container_id', 'text', (c) => c.notNull())
        .addColumn('key', 'text', (c) => c.notNull())
        .addColumn('value', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('container_labels_pk', ['agent_id', 'container_id', 'key'])
        .addForeignKeyConstraint('container_labels_container_fk', ['agent_id', 'container_id'], 'containers', ['agent_id', 'id'], (fk) =>
          fk.onDelete('cascade'),
        )
        .execute();
      await db.schema.createIndex('container_labels_key_value').on('container_labels').columns(['key', 'value']).execute();
    },
    async down(db: AnyDb): Promise<void> {
      for (const t of ['container_labels', 'containers', 'agents', 'api_keys', 'join_tokens']) {
        await db.schema.dropTable(t).ifExists().execute();
      }
    },
  },
  // Policy versions, what each agent applied, violations and scanner reports.
  '0002_policy': {
    async up(db: AnyDb): Promise<void> {
      await db.schema
        .createTable('policies')
        .addColumn('version', 'bigint', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull())
        .addColumn('yaml', 'text', (c) => c.notNull())
        .addColumn('json', 'text', (c) => c.notNull())
        .addColumn('sha256', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('created_by', 'text', (c) => c.notNull())
        .addColumn('comment', 'text', (c) => c.notNull().defaultTo(''))
        .execute();

      // No foreign key to agents: a status may arrive for an agent deleted meanwhile.
      await db.schema
        .createTable('agent_policy_status')
        .addColumn('agent_id', 'text', (c) => c.primaryKey())
        .addColumn('version', 'bigint', (c) => c.notNull())
        .addColumn('applied', 'integer', (c) => c.notNull())
        .addColumn('error', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('violations')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('agent_id', 'text', (c) => c.notNull())
        .addColumn('container_id', 'text', (c) => c.notNull())
        .addColumn('container_name', 'text', (c) => c.notNull())
        .addColumn('image_ref', 'text', (c) => c.notNull())
        .addColumn('project', 'text', (c) => c.notNull())
        .addColumn('rule_id', 'text', (c) => c.notNull())
        .addColumn('severity', 'text', (c) => c.notNull())
        .addColumn('mode', 'text', (c) => c.notNull())
        .addColumn('source', 'text', (c) => c.notNull())
        .addColumn('message', 'text', (c) => c.notNull())
        .addColumn('evidence_json', 'text', (c) => c.notNull())
        .addColumn('denied', 'integer', (c) => c.notNull())
        .addColumn('action_type', 'text', (c) => c.notNull())
        .addColumn('action_result', 'text', (c) => c.notNull())
        .addColumn('action_error', 'text', (c) => c.notNull())
        .addColumn('action_duration_ms', 'double precision', (c) => c.notNull())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('policy_version', 'bigint', (c) => c.notNull())
        .addColumn('exempted_by', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('violations_at').on('violations').columns(['at']).execute();
      await db.schema.createIndex('violations_agent_at').on('violations').columns(['agent_id', 'at']).execute();
      await db.schema.createIndex('violations_rule_at').on('violations').columns(['rule_id', 'at']).execute();
      await db.schema.createIndex('violations_container_at').on('violations').columns(['container_id', 'at']).execute();

      await db.schema
        .createTable('scans')
        .addColumn('digest', 'text', (c) => c.primaryKey())
        .addColumn('scanner', 'text', (c) => c.notNull())
        .addColumn('scanned_at', 'bigint', (c) => c.notNull())
        .addColumn('summary_json', 'text', (c) => c.notNull())
        .addColumn('uploaded_at', 'bigint', (c) => c.notNull())
        .execute();
    },
    async down(db: AnyDb): Promise<void> {
      for (const t of ['scans', 'violations', 'agent_policy_status', 'policies']) {
        await db.schema.dropTable(t).ifExists().execute();
      }
    },
  },
  // Alerts and the durable webhook outbox (src/alerts owns these tables).
  '0003_alerts': {
    async up(db: AnyDb): Promise<void> {
      await db.schema
        .createTable('alerts')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('type', 'text', (c) => c.notNull())
        .addColumn('severity', 'text', (c) => c.notNull())
        .addColumn('severity_rank', 'integer', (c) => c.notNull())
        .addColumn('time_at', 'bigint', (c) => c.notNull())
        .addColumn('last_seen_at', 'bigint', (c) => c.notNull())
        .addColumn('count', 'integer', (c) => c.notNull().defaultTo(1))
        .addColumn('group_key', 'text', (c) => c.notNull())
        .addColumn('agent_id', 'text')
        .addColumn('host', 'text')
        .addColumn('container_id', 'text')
        .addColumn('container_name', 'text')
        .addColumn('image', 'text')
        .addColumn('project', 'text')
        .addColumn('rule_id', 'text')
        .addColumn('action', 'text')
        .addColumn('result', 'text')
        .addColumn('message', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('alerts_group_time').on('alerts').columns(['group_key', 'time_at']).execute();
      await db.schema.createIndex('alerts_last_seen').on('alerts').columns(['last_seen_at']).execute();
      await db.schema.createIndex('alerts_agent_last_seen').on('alerts').columns(['agent_id', 'last_seen_at']).execute();

      await db.schema
        .createTable('webhook_endpoints')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('name', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('url', 'text', (c) => c.notNull())
        .addColumn('format', 'text', (c) => c.notNull())
        .addColumn('min_severity', 'text', (c) => c.notNull())
        .addColumn('types_json', 'text', (c) => c.notNull())
        .addColumn('projects_json', 'text', (c) => c.notNull())
        .addColumn('secret', 'text', (c) => c.notNull())
        .addColumn('previous_secret', 'text')
        .addColumn('previous_secret_expires_at', 'bigint')
        .addColumn('headers_json', 'text', (c) => c.notNull())
        .addColumn('enabled', 'integer', (c) => c.notNull())
        .addColumn('allow_unsafe_target', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('disabled_reason', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .execute();

      await db.schema
        .createTable('webhook_deliveries')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('alert_id', 'text', (c) => c.notNull().references('alerts.id').onDelete('cascade'))
        .addColumn('endpoint_id', 'text', (c) => c.notNull().references('webhook_endpoints.id').onDelete('cascade'))
        .addColumn('status', 'text', (c) => c.notNull())
        .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('retry_base', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('next_attempt_at', 'bigint', (c) => c.notNull())
        .addColumn('lease_until', 'bigint')
        .addColumn('claim_token', 'text')
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('updated_at', 'bigint', (c) => c.notNull())
        .addColumn('delivered_at', 'bigint')
        .addColumn('last_status_code', 'integer')
        .addColumn('last_error', 'text')
        .addColumn('dead_reason', 'text')
        .execute();
      // The workers' scan: pending rows by due time (delivered/dead rows are outside the prefix).
      await db.schema.createIndex('webhook_deliveries_due').on('webhook_deliveries').columns(['status', 'next_attempt_at']).execute();
      await db.schema.createIndex('webhook_deliveries_endpoint').on('webhook_deliveries').columns(['endpoint_id', 'created_at']).execute();
      await db.schema.createIndex('webhook_deliveries_alert').on('webhook_deliveries').columns(['alert_id']).execute();

      await db.schema
        .createTable('webhook_delivery_attempts')
        .addColumn('delivery_id', 'text', (c) => c.notNull().references('webhook_deliveries.id').onDelete('cascade'))
        .addColumn('attempt', 'integer', (c) => c.notNull())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('status_code', 'integer')
        .addColumn('latency_ms', 'integer', (c) => c.notNull())
        .addColumn('error', 'text')
        .addColumn('outcome', 'text', (c) => c.notNull())
        .addColumn('next_attempt_at', 'bigint')
        .addPrimaryKeyConstraint('webhook_delivery_attempts_pk', ['delivery_id', 'attempt'])
        .execute();
    },
    async down(db: AnyDb): Promise<void> {
      for (const t of ['webhook_delivery_attempts', 'webhook_deliveries', 'webhook_endpoints', 'alerts']) {
        await db.schema.dropTable(t).ifExists().execute();
      }
    },
  },
  // Identity and access + audit trail (src/auth and src/audit own these columns and tables).
  '0004_auth': {
    async up(db: AnyDb): Promise<void> {
      // SQLite adds one column per ALTER TABLE.
      await db.schema.alterTable('api_keys').addColumn('projects_json', 'text', (c) => c.notNull().defaultTo('[]')).execute();
      await db.schema.alterTable('api_keys').addColumn('last_used_at', 'bigint').execute();
      await db.schema.alterTable('api_keys').addColumn('created_by', 'text', (c) => c.notNull().defaultTo('')).execute();

      // A column (not a JSON lookup) so project-scoped listings filter in SQL and paging stays right.
      await db.schema.alterTable('containers').addColumn('project', 'text', (c) => c.notNull().defaultTo('')).execute();
      const rows: Array<{ agent_id: string; id: string; facts_json: string }> = await db.selectFrom('containers').select(['agent_id', 'id', 'facts_json']).execute();
      for (const r of rows) {
        // Same rule as containerProject() in src/auth/project-scope.ts, frozen here as of this migration.
        let project = '';
        try {
          const f = JSON.parse(r.facts_json) as { project?: unknown; labels?: Record<string, unknown> };
          const fromFacts = typeof f.project === 'string' ? f.project : '';
          const fromLabel = typeof f.labels?.['bulkhead.project'] === 'string' ? (f.labels['bulkhead.project'] as string) : '';
          project = fromFacts !== '' ? fromFacts : fromLabel;
        } catch {
          project = '';
        }
        if (project !== '') await db.updateTable('containers').set({ project }).where('agent_id', '=', r.agent_id).where('id', '=', r.id).execute();
      }
      await db.schema.createIndex('containers_project').on('containers').columns(['project']).execute();
      await db.schema.createIndex('violations_project_at').on('violations').columns(['project', 'at']).execute();
      await db.schema.createIndex('alerts_project_last_seen').on('alerts').columns(['project', 'last_seen_at']).execute();

      await db.schema
        .createTable('audit_log')
        .addColumn('seq', 'bigint', (c) => c.primaryKey())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('actor_kind', 'text', (c) => c.notNull())
        .addColumn('actor_id', 'text', (c) => c.notNull())
        .addColumn('actor_name', 'text', (c) => c.notNull())
        .addColumn('method', 'text', (c) => c.notNull())
        .addColumn('route', 'text', (c) => c.notNull())
        .addColumn('path', 'text', (c) => c.notNull())
        .addColumn('action', 'text', (c) => c.notNull())
        .addColumn('target_json', 'text', (c) => c.notNull())
        .addColumn('client_ip', 'text', (c) => c.notNull())
        .addColumn('status', 'integer', (c) => c.notNull())
        .addColumn('code', 'text', (c) => c.notNull())
        .addColumn('prev_hash', 'text', (c) => c.notNull())
        .addColumn('hash', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('audit_log_at').on('audit_log').columns(['at']).execute();
      await db.schema.createIndex('audit_log_actor').on('audit_log').columns(['actor_id', 'seq']).execute();
    },
    async down(db: AnyDb): Promise<void> {
      await db.schema.dropTable('audit_log').ifExists().execute();
      await db.schema.dropIndex('alerts_project_last_seen').ifExists().execute();
      await db.schema.dropIndex('violations_project_at').ifExists().execute();
      await db.schema.dropIndex('containers_project').ifExists().execute();
      await db.schema.alterTable('containers').dropColumn('project').execute();
      for (const c of ['created_by', 'last_used_at', 'projects_json']) await db.schema.alterTable('api_keys').dropColumn(c).execute();
    },
  },
  // Live container usage (src/store/kysely-usage-store.ts owns this table): the latest per container.
  '0005_usage': {
    async up(db: AnyDb): Promise<void> {
      // No foreign key to containers: usage may race the container's snapshot or removal; a snapshot clears the agent's rows.
      await db.schema
        .createTable('container_usage')
        .addColumn('agent_id', 'text', (c) => c.notNull())
        .addColumn('container_id', 'text', (c) => c.notNull())
        .addColumn('taken_at', 'bigint', (c) => c.notNull())
        .addColumn('received_at', 'bigint', (c) => c.notNull())
        .addColumn('cpu_percent', 'double precision', (c) => c.notNull())
        .addColumn('cpu_percent_of_quota', 'double precision')
        .addColumn('cpu_limit_cores', 'double precision', (c) => c.notNull())
        .addColumn('memory_bytes', 'bigint', (c) => c.notNull())
        .addColumn('memory_limit_bytes', 'bigint', (c) => c.notNull())
        .addColumn('pids', 'bigint', (c) => c.notNull())
        .addColumn('pids_limit', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('container_usage_pk', ['agent_id', 'container_id'])
        .execute();
    },
    async down(db: AnyDb): Promise<void> {
      await db.schema.dropTable('container_usage').ifExists().execute();
    },
  },
  // Host audit reports (src/host-audit owns this table): the latest per agent and a short history.
  '0006_audit': {
    async up(db: AnyDb): Promise<void> {
      // No foreign key to agents (as agent_policy_status): a report may race the agent's deletion.
      await db.schema
        .createTable('host_audits')
        .addColumn('agent_id', 'text', (c) => c.notNull())
        .addColumn('taken_at', 'bigint', (c) => c.notNull())
        .addColumn('received_at', 'bigint', (c) => c.notNull())
        .addColumn('score', 'double precision', (c) => c.notNull())
        .addColumn('summary_json', 'text', (c) => c.notNull())
        .addColumn('cis_json', 'text', (c) => c.notNull())
        .addColumn('lockdown_json', 'text', (c) => c.notNull())
        .addColumn('fixes_json', 'text', (c) => c.notNull())
        .addColumn('hygiene_json', 'text')
        // The primary key also serves "newest report of an agent" (agent_id, taken_at desc).
        .addPrimaryKeyConstraint('host_audits_pk', ['agent_id', 'taken_at'])
        .execute();
    },
    async down(db: AnyDb): Promise<void> {
      await db.schema.dropTable('host_audits').ifExists().execute();
    },
  },
  // Operators acknowledge violations (src/api/routes/violations.ts owns these columns).
  // Numbered after 0005_usage and 0006_audit: kysely runs migrations in name order.
  '0007_violation_ack': {
    async up(db: AnyDb): Promise<void> {
      // SQLite adds one column per ALTER TABLE; all null = not acknowledged.
      await db.schema.alterTable('violations').addColumn('ack_at', 'bigint').execute();
      await db.schema.alterTable('violations').addColumn('ack_by_key_id', 'text').execute();
      await db.schema.alterTable('violations').addColumn('ack_by_name', 'text').execute();
      await db.schema.alterTable('violations').addColumn('ack_comment', 'text').execute();
    },
    async down(db: AnyDb): Promise<void> {
      for (const c of ['ack_comment', 'ack_by_name', 'ack_by_key_id', 'ack_at']) await db.schema.alterTable('violations').dropColumn(c).execute();
    },
  },
  // The image prune record of a host audit (move 1; src/host-audit owns these columns):
  // the record as the agent sent it, and how many images it names, so reports that removed
  // something can outlive the short history (HOST_AUDIT_PRUNE_HISTORY).
  '0008_audit_prune': {
    async up(db: AnyDb): Promise<void> {
      await db.schema.alterTable('host_audits').addColumn('prune_json', 'text').execute();
      await db.schema.alterTable('host_audits').addColumn('pruned', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    },
    async down(db: AnyDb): Promise<void> {
      for (const c of ['pruned', 'prune_json']) await db.schema.alterTable('host_audits').dropColumn(c).execute();
    },
  },
  // The CA that issued each agent's current certificate and the CAs the agent trusts
  // (pki/ca-rotation.ts): a rotation activates once every agent trusts the new CA and
  // finishes once no agent still holds a certificate from the old one. The index serves
  // the revocation watch, which asks several times a second for agents revoked lately.
  '0009_cert_ca': {
    async up(db: AnyDb): Promise<void> {
      await db.schema.alterTable('agents').addColumn('cert_ca', 'text').execute();
      await db.schema.alterTable('agents').addColumn('trusted_cas', 'text').execute();
      await db.schema.createIndex('agents_revoked_at').on('agents').column('revoked_at').execute();
    },
    async down(db: AnyDb): Promise<void> {
      await db.schema.dropIndex('agents_revoked_at').execute();
      await db.schema.alterTable('agents').dropColumn('trusted_cas').execute();
      await db.schema.alterTable('agents').dropColumn('cert_ca').execute();
    },
  },
  // Renewal grace (pki/cert-renewal.ts): the serial a renewal replaced stays accepted until the
  // agent connects with the new certificate, so a renewal answer lost on the way strands no one.
  '0010_cert_grace': {
    async up(db: AnyDb): Promise<void> {
      await db.schema.alterTable('agents').addColumn('prev_cert_serial', 'text').execute();
    },
    async down(db: AnyDb): Promise<void> {
      await db.schema.alterTable('agents').dropColumn('prev_cert_serial').execute();
    },
  },
  // A violation whose alert is not committed yet (src/grpc/agent-link-service.ts): 1 from the
  // violation's insert until the transaction that writes its alert; null otherwise (and for
  // rows from before this column). A controller killed in between raises it at its next start.
  '0011_violation_alert_pending': {
    async up(db: AnyDb): Promise<void> {
      await db.schema.alterTable('violations').addColumn('alert_pending', 'integer').execute();
      await db.schema.createIndex('violations_alert_pending').on('violations').column('alert_pending').execute();
    },
    async down(db: AnyDb): Promise<void> {
      await db.schema.dropIndex('violations_alert_pending').ifExists().execute();
      await db.schema.alterTable('violations').dropColumn('alert_pending').execute();
    },
  },
  // Live usage beyond the cgroup (src/store/kysely-usage-store.ts): writable layer and log
  // sizes, block IO, the network namespace's counters and sockets. Null = not measured
  // (the agent's source is off, an older agent, or not measurable for that container).
  '0012_usage_resources': {
    async up(db: AnyDb): Promise<void> {
      // SQLite adds one column per ALTER TABLE.
      await db.schema.alterTable('container_usage').addColumn('writable_bytes', 'bigint').execute();
      await db.schema.alterTable('container_usage').addColumn('log_bytes', 'bigint').execute();
      await db.schema.alterTable('container_usage').addColumn('blkio_read_bytes', 'bigint').execute();
      await db.schema.alterTable('container_usage').addColumn('blkio_write_bytes', 'bigint').execute();
      await db.schema.alterTable('container_usage').addColumn('blkio_read_ops', 'bigint').execute();
      await db.schema.alterTable('container_usage').addColumn('blkio_write_ops', 'bigint').execute();
      await db.schema.alterTable('container_usage').addColumn('net_rx_bytes', 'bigint').execute();
      await db.schema.alterTable('container_usage').addColumn('net_tx_bytes', 'bigint').execute();
      await db.schema.alterTable('container_usage').addColumn('net_rx_packets', 'bigint').execute();
      await db.schema.alterTable('container_usage').addColumn('net_tx_packets', 'bigint').execute();
      await db.schema.alterTable('container_usage').addColumn('net_rx_dropped', 'bigint').execute();
      await db.schema.alterTable('container_usage').addColumn('net_tx_dropped', 'bigint').execute();
      await db.schema.alterTable('container_usage').addColumn('net_rx_bytes_per_sec', 'double precision').execute();
      await db.schema.alterTable('container_usage').addColumn('net_tx_bytes_per_sec', 'double precision').execute();
      await db.schema.alterTable('container_usage').addColumn('tcp_connections', 'bigint').execute();
      await db.schema.alterTable('container_usage').addColumn('sockets', 'bigint').execute();
    },
    async down(db: AnyDb): Promise<void> {
      for (const c of ['sockets', 'tcp_connections', 'net_tx_bytes_per_sec', 'net_rx_bytes_per_sec', 'net_tx_dropped', 'net_rx_dropped', 'net_tx_packets', 'net_rx_packets', 'net_tx_bytes', 'net_rx_bytes', 'blkio_write_ops', 'blkio_read_ops', 'blkio_write_bytes', 'blkio_read_bytes', 'log_bytes', 'writable_bytes']) {
        await db.schema.alterTable('container_usage').dropColumn(c).execute();
      }
    },
  },
  // Tags that move (src/images): per repository, tag and digest (the manifest digest, or the
  // image id for an image without a repo digest) when the fleet first and last ran it, and
  // which containers on which hosts ran it. A new digest row for a tag that already has
  // another is a move: its `alert_pending` stays 1 until the `image_tag_moved` alert is
  // committed (0 after), so a controller stopped in between raises it at its next start.
  '0013_image_tags': {
    async up(db: AnyDb): Promise<void> {
      await db.schema
        .createTable('image_tags')
        .addColumn('repository', 'text', (c) => c.notNull())
        .addColumn('tag', 'text', (c) => c.notNull())
        .addColumn('digest', 'text', (c) => c.notNull())
        .addColumn('image_id', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('first_seen_at', 'bigint', (c) => c.notNull())
        .addColumn('last_seen_at', 'bigint', (c) => c.notNull())
        .addColumn('first_agent_id', 'text', (c) => c.notNull())
        .addColumn('alert_pending', 'integer')
        .addPrimaryKeyConstraint('image_tags_pk', ['repository', 'tag', 'digest'])
        .execute();
      await db.schema.createIndex('image_tags_pending').on('image_tags').column('alert_pending').execute();
      // No foreign key to agents or containers: a sighting outlives the container (history).
      await db.schema
        .createTable('image_tag_sightings')
        .addColumn('agent_id', 'text', (c) => c.notNull())
        .addColumn('container_id', 'text', (c) => c.notNull())
        .addColumn('container_name', 'text', (c) => c.notNull())
        .addColumn('repository', 'text', (c) => c.notNull())
        .addColumn('tag', 'text', (c) => c.notNull())
        .addColumn('digest', 'text', (c) => c.notNull())
        .addColumn('first_seen_at', 'bigint', (c) => c.notNull())
        .addColumn('last_seen_at', 'bigint', (c) => c.notNull())
        // A container's image never changes: one row per container.
        .addPrimaryKeyConstraint('image_tag_sightings_pk', ['agent_id', 'container_id'])
        .execute();
      await db.schema.createIndex('image_tag_sightings_tag').on('image_tag_sightings').columns(['repository', 'tag', 'digest']).execute();
      await db.schema.createIndex('image_tag_sightings_last').on('image_tag_sightings').column('last_seen_at').execute();
    },
    async down(db: AnyDb): Promise<void> {
      await db.schema.dropTable('image_tag_sightings').ifExists().execute();
      await db.schema.dropTable('image_tags').ifExists().execute();
    },
  },
  // Controller replicas on one database (src/replicas): which replica holds each agent's
  // stream, as a lease the holder renews while the stream lives (a replica that dies stops
  // renewing and its leases expire), and when each fleet-wide periodic job last ran, so a
  // job runs once per fleet and not once per replica. Times are the writing replica's clock.
  '0014_replica_leases': {
    async up(db: AnyDb): Promise<void> {
      await db.schema
        .createTable('agent_leases')
        .addColumn('agent_id', 'text', (c) => c.primaryKey())
        .addColumn('owner', 'text', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('agent_leases_owner').on('agent_leases').column('owner').execute();
      await db.schema
        .createTable('fleet_jobs')
        .addColumn('name', 'text', (c) => c.primaryKey())
        .addColumn('owner', 'text', (c) => c.notNull())
        .addColumn('last_run_at', 'bigint', (c) => c.notNull())
        .execute();
    },
    async down(db: AnyDb): Promise<void> {
      await db.schema.dropTable('fleet_jobs').ifExists().execute();
      await db.schema.dropTable('agent_leases').ifExists().execute();
    },
  },
  // Controller replicas: a command sent to the replica holding an agent's stream is a row
  // whose state the database decides once: 'sent' becomes 'accepted' (the holder runs it) or
  // 'abandoned' (the caller gave up waiting: it is not run), by one conditional update each,
  // so the caller's "not carried out" and the holder's run never both happen.
  '0015_remote_commands': {
    async up(db: AnyDb): Promise<void> {
      await db.schema
        .createTable('remote_commands')
        .addColumn('id', 'text', (c) => c.primaryKey())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('remote_commands_created').on('remote_commands').column('created_at').execute();
    },
    async down(db: AnyDb): Promise<void> {
      await db.schema.dropTable('remote_commands').ifExists().execute();
    },
  },
  // Browser sessions (src/auth/sessions.ts): a session id exchanged for an API key at
  // POST /v1/session; only sha256(id) is stored. The key is looked up on every use, so
  // revoking or expiring it ends its sessions. And the fleet's event stream (src/events):
  // one row per event, `seq` allocated in commit order (see kysely-event-store.ts), read
  // by id by every replica's GET /v1/events.
  '0016_sessions_events': {
    async up(db: AnyDb): Promise<void> {
      await db.schema
        .createTable('sessions')
        .addColumn('id_hash', 'text', (c) => c.primaryKey())
        .addColumn('key_id', 'text', (c) => c.notNull())
        .addColumn('created_at', 'bigint', (c) => c.notNull())
        .addColumn('last_used_at', 'bigint', (c) => c.notNull())
        .addColumn('expires_at', 'bigint', (c) => c.notNull())
        .addColumn('revoked_at', 'bigint')
        .addColumn('client_ip', 'text', (c) => c.notNull().defaultTo(''))
        .execute();
      await db.schema.createIndex('sessions_key').on('sessions').column('key_id').execute();
      await db.schema.createIndex('sessions_expires').on('sessions').column('expires_at').execute();
      await db.schema
        .createTable('fleet_events')
        .addColumn('seq', 'bigint', (c) => c.primaryKey())
        .addColumn('at', 'bigint', (c) => c.notNull())
        .addColumn('type', 'text', (c) => c.notNull())
        // '' = belongs to no project: seen by credentials not limited to projects only.
        .addColumn('project', 'text', (c) => c.notNull().defaultTo(''))
        // 1 = seen by every credential (agent online/offline). Its own column, never a project
        // value: a project name (even '*', which a workload label may carry) admits only that project.
        .addColumn('every_scope', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('agent_id', 'text')
        .addColumn('data_json', 'text', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('fleet_events_at').on('fleet_events').column('at').execute();
    },
    async down(db: AnyDb): Promise<void> {
      await db.schema.dropTable('fleet_events').ifExists().execute();
      await db.schema.dropTable('sessions').ifExists().execute();
    },
  },
  // Tag pins of image-tag-pinned rules that have a scope: per rule (id and a key of its scope,
  // tags and repositories), the first digest each tag was seen running as on a container in
  // that scope. The primary key keeps the first: later digests are not stored. Rules without a
  // scope keep using image_tags (the fleet's first digest), so nothing existing moves here.
  '0017_image_tag_scope_pins': {
    async up(db: AnyDb): Promise<void> {
      await db.schema
        .createTable('image_tag_scope_pins')
        .addColumn('rule_id', 'text', (c) => c.notNull())
        .addColumn('scope_key', 'text', (c) => c.notNull())
        .addColumn('repository', 'text', (c) => c.notNull())
        .addColumn('tag', 'text', (c) => c.notNull())
        .addColumn('digest', 'text', (c) => c.notNull())
        .addColumn('image_id', 'text', (c) => c.notNull().defaultTo(''))
        .addColumn('first_seen_at', 'bigint', (c) => c.notNull())
        .addColumn('agent_id', 'text', (c) => c.notNull())
        .addColumn('container_id', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('image_tag_scope_pins_pk', ['rule_id', 'scope_key', 'repository', 'tag'])
        .execute();
      await db.schema.createIndex('image_tag_scope_pins_seen').on('image_tag_scope_pins').column('first_seen_at').execute();
    },
    async down(db: AnyDb): Promise<void> {
      await db.schema.dropTable('image_tag_scope_pins').ifExists().execute();
    },
  },
  // API keys limited to some route actions (e.g. a CI key that may only upload scan reports).
  // Existing keys get "[]": not limited, as before.
  '0018_api_key_actions': {
    async up(db: AnyDb): Promise<void> {
      await db.schema.alterTable('api_keys').addColumn('actions_json', 'text', (c) => c.notNull().defaultTo('[]')).execute();
    },
    async down(db: AnyDb): Promise<void> {
      await db.schema.alterTable('api_keys').dropColumn('actions_json').execute();
    },
  },
  // Lists at fleet size (issue 16): every list the API pages is read by walking an index in
  // the list's own order from the cursor (keyset paging), so a page costs what it returns,
  // not what matches. The container indexes are covering for the filters that are columns
  // (removed, state, project, image_ref): the filter is tested in the index and only the
  // page's rows are read from the table. The low-selectivity single-column indexes they
  // replace made the planner read every match and sort (nearly every container is
  // `running`). Violations and agents get their full sort key, id included, so ties need no
  // sort either.
  '0019_list_paging': {
    async up(db: AnyDb): Promise<void> {
      await db.schema.createIndex('containers_list').on('containers').columns(['agent_id', 'name', 'id', 'removed', 'state', 'project', 'image_ref']).execute();
      await db.schema.createIndex('containers_state_list').on('containers').columns(['state', 'agent_id', 'name', 'id', 'removed', 'project', 'image_ref']).execute();
      await db.schema.dropIndex('containers_state').execute();
      await db.schema.dropIndex('containers_image_ref').execute();
      await db.schema.dropIndex('containers_agent_name').execute();
      await db.schema.createIndex('violations_at_id').on('violations').columns(['at', 'id']).execute();
      await db.schema.createIndex('violations_agent_at_id').on('violations').columns(['agent_id', 'at', 'id']).execute();
      await db.schema.dropIndex('violations_at').execute();
      await db.schema.dropIndex('violations_agent_at').execute();
      await db.schema.createIndex('agents_hostname_id').on('agents').columns(['hostname', 'id']).execute();
    },
    async down(db: AnyDb): Promise<void> {
      await db.schema.dropIndex('agents_hostname_id').execute();
      await db.schema.createIndex('violations_agent_at').on('violations').columns(['agent_id', 'at']).execute();
      await db.schema.createIndex('violations_at').on('violations').columns(['at']).execute();
      await db.schema.dropIndex('violations_agent_at_id').execute();
      await db.schema.dropIndex('violations_at_id').execute();
      await db.schema.createIndex('containers_agent_name').on('containers').columns(['agent_id', 'name']).execute();
      await db.schema.createIndex('containers_image_ref').on('containers').columns(['image_ref']).execute();
      await db.schema.createIndex('containers_state').on('containers').columns(['state']).execute();
      await db.schema.dropIndex('containers_state_list').execute();
      await db.schema.dropIndex('containers_list').execute();
    },
  },
  // A full snapshot only when the agent's inventory differs from what the controller holds
  // (issue 16): the hash of the stored inventory as the agent reported it; null = unknown.
  '0020_agent_state_hash': {
    async up(db: AnyDb): Promise<void> {
      await db.schema.alterTable('agents').addColumn('state_hash', 'text').execute();
    },
    async down(db: AnyDb): Promise<void> {
      await db.schema.alterTable('agents').dropColumn('state_hash').execute();
    },
  },
  // Image signature verdicts agents report (src/signatures), for the policy dry-run of every
  // replica: one row per verdict key (sha256 of rule parameters + repo digest), the newest
  // decided winning; pruned by when it was last reported. No foreign key to agents: a
  // revoked agent's rows are deleted by the revocation, a deleted agent's age out.
  '0021_signature_verdicts': {
    async up(db: AnyDb): Promise<void> {
      await db.schema
        .createTable('signature_verdicts')
        .addColumn('key_sha256', 'text', (c) => c.primaryKey())
        .addColumn('agent_id', 'text', (c) => c.notNull())
        .addColumn('verdict_json', 'text', (c) => c.notNull())
        .addColumn('checked_at', 'bigint', (c) => c.notNull())
        .addColumn('reported_at', 'bigint', (c) => c.notNull())
        .execute();
      await db.schema.createIndex('signature_verdicts_reported').on('signature_verdicts').column('reported_at').execute();
      await db.schema.createIndex('signature_verdicts_agent').on('signature_verdicts').column('agent_id').execute();
    },
    async down(db: AnyDb): Promise<void> {
      await db.schema.dropTable('signature_verdicts').ifExists().execute();
    },
  },
  // Recent usage history (src/store/kysely-usage-store.ts, usage-history.ts): one row per
  // sampled container holding a bounded ring of downsampled points (at most one per interval,
  // 60 kept) as fixed-width text the upsert appends to in SQL. One row per container, not per
  // point: the history costs no extra rows to prune and at most one row write per container
  // per interval, in the transaction that already stores the usage report. Its own table, not
  // columns of container_usage, so the scans of the latest readings (sort by CPU/memory, the
  // busiest containers) do not read the rings. Rows go with the container's usage (gone,
  // snapshot of a stopped container); points older than the window are dropped on read.
  '0022_usage_history': {
    async up(db: AnyDb): Promise<void> {
      await db.schema
        .createTable('container_usage_history')
        .addColumn('agent_id', 'text', (c) => c.notNull())
        .addColumn('container_id', 'text', (c) => c.notNull())
        .addColumn('last_at', 'bigint', (c) => c.notNull())
        .addColumn('points', 'text', (c) => c.notNull())
        .addPrimaryKeyConstraint('container_usage_history_pk', ['agent_id', 'container_id'])
        .execute();
    },
    async down(db: AnyDb): Promise<void> {
      await db.schema.dropTable('container_usage_history').ifExists().execute();
    },
  },
  // The container list's sort orders and project filter walk an index too (keyset paging at
  // 10,000 containers and more): name, image and project each get an index in the list's order
  // (the sort value, then agent id, name, id), covering for the filters that are columns, so a
  // sorted or project-filtered page stops after `limit` matches instead of reading and sorting
  // every match; the single-column project index it replaces made the planner read the whole
  // project and sort it. The usage sorts (busiest first) walk the latest usage by its value.
  // State has containers_state_list already (0019).
  '0023_list_sort_indexes': {
    async up(db: AnyDb): Promise<void> {
      await db.schema.createIndex('containers_name_list').on('containers').columns(['name', 'agent_id', 'id', 'removed', 'state', 'project', 'image_ref']).execute();
      await db.schema.createIndex('containers_image_list').on('containers').columns(['image_ref', 'agent_id', 'name', 'id', 'removed', 'state', 'project']).execute();
      await db.schema.createIndex('containers_project_list').on('containers').columns(['project', 'agent_id', 'name', 'id', 'removed', 'state', 'image_ref']).execute();
      await db.schema.dropIndex('containers_project').ifExists().execute();
      await db.schema.createIndex('container_usage_cpu').on('container_usage').columns(['cpu_percent', 'agent_id', 'container_id']).execute();
      await db.schema.createIndex('container_usage_memory').on('container_usage').columns(['memory_bytes', 'agent_id', 'container_id']).execute();
    },
    async down(db: AnyDb): Promise<void> {
      await db.schema.dropIndex('container_usage_memory').execute();
      await db.schema.dropIndex('container_usage_cpu').execute();
      await db.schema.createIndex('containers_project').on('containers').columns(['project']).execute();
      await db.schema.dropIndex('containers_project_list').execute();
      await db.schema.dropIndex('containers_image_list').execute();
      await db.schema.dropIndex('containers_name_list').execute();
    },
  },
  // The overview's counts at fleet size (issue 16): GET /v1/summary counted the live
  // containers by state with a GROUP BY over every container (200,000 index entries: 100+ ms
  // at 2,000 agents × 100). container_counts holds the live (removed = 0) containers per
  // agent, project and state, kept by triggers on containers in the writing transaction, so
  // every write path (snapshot, delta, removal, purge, an agent's deletion by cascade) keeps
  // it without the store having to remember to; the summary sums a few rows per agent. Keyed
  // per agent so that writes of different agents (different replicas on PostgreSQL) never
  // touch the same row. Rows whose count fell to 0 stay (a handful per agent; the reader
  // leaves them out). On PostgreSQL the triggers are per statement over transition tables
  // (one upsert per statement, not per row: a snapshot writes 100+ rows twice); on SQLite,
  // which has only row triggers, per row in-process. The open-violations count gets a
  // partial index on what it counts (not acknowledged, not exempted).
  '0024_summary_counts': {
    async up(db: AnyDb): Promise<void> {
      await db.schema
        .createTable('container_counts')
        .addColumn('agent_id', 'text', (c) => c.notNull())
        .addColumn('project', 'text', (c) => c.notNull())
        .addColumn('state', 'text', (c) => c.notNull())
        .addColumn('n', 'bigint', (c) => c.notNull())
        .addPrimaryKeyConstraint('container_counts_pk', ['agent_id', 'project', 'state'])
        .execute();
      if (db.getExecutor().adapter instanceof PostgresAdapter) {
        // The delta of a statement's rows, added to the counts: one upsert per statement.
        const apply = (rows: string) =>
          `insert into container_counts as cc (agent_id, project, state, n) select agent_id, project, state, sum(d) from (${rows}) t group by agent_id, project, state having sum(d) <> 0 on conflict (agent_id, project, state) do update set n = cc.n + excluded.n;`;
        const live = (table: string, d: number) => `select agent_id, project, state, ${d}::bigint as d from ${table} where removed = 0`;
        await sql.raw(`create function container_counts_insert() returns trigger language plpgsql as $$ begin ${apply(live('new_rows', 1))} return null; end $$`).execute(db);
        await sql.raw(`create function container_counts_delete() returns trigger language plpgsql as $$ begin ${apply(live('old_rows', -1))} return null; end $$`).execute(db);
        await sql.raw(`create function container_counts_update() returns trigger language plpgsql as $$ begin ${apply(`${live('old_rows', -1)} union all ${live('new_rows', 1)}`)} return null; end $$`).execute(db);
        await sql.raw('create trigger container_counts_insert after insert on containers referencing new table as new_rows for each statement execute function container_counts_insert()').execute(db);
        await sql.raw('create trigger container_counts_delete after delete on containers referencing old table as old_rows for each statement execute function container_counts_delete()').execute(db);
        await sql.raw('create trigger container_counts_update after update on containers referencing old table as old_rows new table as new_rows for each statement execute function container_counts_update()').execute(db);
      } else {
        const add = (r: string) =>
          `insert into container_counts (agent_id, project, state, n) select ${r}.agent_id, ${r}.project, ${r}.state, 1 where ${r}.removed = 0 on conflict (agent_id, project, state) do update set n = n + 1;`;
        const sub = (r: string) => `update container_counts set n = n - 1 where ${r}.removed = 0 and agent_id = ${r}.agent_id and project = ${r}.project and state = ${r}.state;`;
        await sql.raw(`create trigger container_counts_insert after insert on containers begin ${add('new')} end`).execute(db);
        await sql.raw(`create trigger container_counts_delete after delete on containers begin ${sub('old')} end`).execute(db);
        await sql.raw(`create trigger container_counts_update after update on containers begin ${sub('old')} ${add('new')} end`).execute(db);
      }
      await sql`insert into container_counts (agent_id, project, state, n) select agent_id, project, state, count(*) from containers where removed = 0 group by agent_id, project, state`.execute(db);
      await sql`create index violations_open on violations (severity, project) where ack_at is null and exempted_by = ''`.execute(db);
    },
    async down(db: AnyDb): Promise<void> {
      await db.schema.dropIndex('violations_open').ifExists().execute();
      for (const t of ['insert', 'delete', 'update']) {
        if (db.getExecutor().adapter instanceof PostgresAdapter) {
          await sql.raw(`drop trigger if exists container_counts_${t} on containers`).execute(db);
          await sql.raw(`drop function if exists container_counts_${t}()`).execute(db);
        } else {
          await sql.raw(`drop trigger if exists container_counts_${t}`).execute(db);
        }
      }
      await db.schema.dropTable('container_counts').ifExists().execute();
    },
  },
  // Free-text search (`GET /v1/containers?q=`) without a walk of every container: the filter
  // `lower(name) like '%q%' or lower(image_ref) like '%q%' or id like 'q%'` cannot use a B-tree,
  // so a q matching a hundred containers read all 200,000 (180-560 ms). The filter itself is
  // unchanged; these only find its candidates.
  // - SQLite: an FTS5 table with the trigram tokenizer (substring search for 3+ characters),
  //   contentless (the text stays in containers; a candidate is re-tested with the filter),
  //   keyed through container_search_keys rather than containers' rowid, which VACUUM may
  //   renumber (containers has no INTEGER PRIMARY KEY). Only the id's first 12 characters are
  //   indexed: a prefix of 3+ characters contains the first 3-12 of them (the whole id would be
  //   62 trigrams a row). Kept by row triggers in the writing transaction, like container_counts.
  // - PostgreSQL: pg_trgm GIN indexes on the very expressions the filter tests (lower(name),
  //   lower(image_ref)), and a text_pattern_ops B-tree on id for the prefix; the planner uses
  //   them for the unchanged query. See ensurePgSearchIndexes for a server without pg_trgm.
  '0025_container_search': {
    async up(db: AnyDb): Promise<void> {
      if (db.getExecutor().adapter instanceof PostgresAdapter) {
        await ensurePgSearchIndexes(db);
        return;
      }
      await sql`create table container_search_keys (n integer primary key, agent_id text not null, id text not null, unique (agent_id, id))`.execute(db);
      await sql.raw(`create virtual table container_search using fts5(name, image_ref, id_head, content='', contentless_delete=1, tokenize='trigram')`).execute(db);
      const key = (r: string) => `(select n from container_search_keys where agent_id = ${r}.agent_id and id = ${r}.id)`;
      const add = (r: string) =>
        `insert into container_search_keys (agent_id, id) values (${r}.agent_id, ${r}.id); ` +
        `insert into container_search (rowid, name, image_ref, id_head) values (${key(r)}, ${r}.name, ${r}.image_ref, substr(${r}.id, 1, ${SEARCH_ID_HEAD}));`;
      const drop = (r: string) => `delete from container_search where rowid = ${key(r)}; delete from container_search_keys where agent_id = ${r}.agent_id and id = ${r}.id;`;
      await sql.raw(`create trigger container_search_insert after insert on containers begin ${add('new')} end`).execute(db);
      await sql.raw(`create trigger container_search_delete after delete on containers begin ${drop('old')} end`).execute(db);
      // Most updates (a snapshot's upsert of an unchanged container) change none of the text.
      await sql.raw(
        `create trigger container_search_update after update of agent_id, id, name, image_ref on containers ` +
          `when old.agent_id is not new.agent_id or old.id is not new.id or old.name is not new.name or old.image_ref is not new.image_ref ` +
          `begin ${drop('old')} ${add('new')} end`,
      ).execute(db);
      await sql`insert into container_search_keys (agent_id, id) select agent_id, id from containers order by agent_id, id`.execute(db);
      await sql.raw(`insert into container_search (rowid, name, image_ref, id_head) select k.n, c.name, c.image_ref, substr(c.id, 1, ${SEARCH_ID_HEAD}) from containers c join container_search_keys k on k.agent_id = c.agent_id and k.id = c.id`).execute(db);
    },
    async down(db: AnyDb): Promise<void> {
      if (db.getExecutor().adapter instanceof PostgresAdapter) {
        for (const i of PG_SEARCH_INDEXES) await sql.raw(`drop index if exists ${i}`).execute(db);
        // pg_trgm stays: another schema may use it, and dropping an extension needs its owner.
        return;
      }
      for (const t of ['insert', 'delete', 'update']) await sql.raw(`drop trigger if exists container_search_${t}`).execute(db);
      await sql`drop table if exists container_search`.execute(db);
      await sql`drop table if exists container_search_keys`.execute(db);
    },
  },
};

/** SQLite: how many of a container id's first characters container_search indexes. */
export const SEARCH_ID_HEAD = 12;

/** PostgreSQL: the indexes 0025_container_search adds (each checked at start, see ensurePgSearchIndexes). */
export const PG_SEARCH_INDEXES = ['containers_search_name', 'containers_search_image', 'containers_search_id'] as const;

/**
 * PostgreSQL: creates pg_trgm (a trusted extension since PostgreSQL 13: a database owner may)
 * and the free-text search indexes, each only if missing. Returns what is missing afterwards
 * and why, without failing: where the extension cannot be created (a managed server that does
 * not offer it, a role without CREATE on the database) the controller still starts and
 * `q=` gives the same results by the scan it always used — refusing to start would take a
 * security controller (enforcement reports, alerts) down over a search's speed. The caller
 * (the store at each start) logs one warning naming the fix; once the extension exists, the
 * next start creates the indexes. In a savepoint when inside a transaction (the migration's):
 * a failed CREATE EXTENSION must not abort it.
 */
export async function ensurePgSearchIndexes(db: AnyDb, opts: { inTransaction?: boolean } = {}): Promise<{ missing: string[]; reason?: string }> {
  const present = async () =>
    new Set((await sql<{ name: string }>`select indexname as name from pg_indexes where schemaname = current_schema() and tablename = 'containers'`.execute(db)).rows.map((r) => r.name));
  let have = await present();
  if (PG_SEARCH_INDEXES.every((i) => have.has(i))) return { missing: [] };
  const inTx = opts.inTransaction ?? true;
  let reason: string | undefined;
  try {
    if (inTx) await sql`savepoint bulkhead_search`.execute(db);
    await sql`create extension if not exists pg_trgm`.execute(db);
    // text_pattern_ops: the prefix LIKE uses it whatever the database's collation.
    await sql.raw('create index if not exists containers_search_id on containers (id text_pattern_ops)').execute(db);
    await sql.raw('create index if not exists containers_search_name on containers using gin (lower(name) gin_trgm_ops)').execute(db);
    await sql.raw('create index if not exists containers_search_image on containers using gin (lower(image_ref) gin_trgm_ops)').execute(db);
    if (inTx) await sql`release savepoint bulkhead_search`.execute(db);
  } catch (e) {
    reason = errorMessage(e);
    if (inTx) await sql`rollback to savepoint bulkhead_search`.execute(db);
  }
  have = await present();
  return { missing: PG_SEARCH_INDEXES.filter((i) => !have.has(i)), reason };
}

const provider: MigrationProvider = { getMigrations: () => Promise.resolve({ ...MIGRATIONS }) };

/** Brings the database to the latest schema. Idempotent; safe to call on every start. */
export async function migrateToLatest(db: AnyDb): Promise<void> {
  const migrator = new Migrator({
    db,
    provider,
    migrationTableName: 'bulkhead_migration',
    migrationLockTableName: 'bulkhead_migration_lock',
  });
  const { error, results } = await migrator.migrateToLatest();
  if (error !== undefined) {
    const failed = results?.find((r) => r.status === 'Error')?.migrationName;
    const which = failed !== undefined ? `database migration ${failed}` : 'database migration';
    throw new BulkheadError('BK_ERR_INTERNAL', `${which} failed: ${errorMessage(error)}`, { cause: error });
  }
}

function errorMessage(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}
