// action-limits.test.ts, every assertion, on a private PostgreSQL cluster (api_keys.actions_json, migration 0017).
import { runOnPostgres } from '../store/fixtures/backend';

runOnPostgres(() => require('./action-limits.test'));
