// list-paging-migration.test.ts, every assertion, on a private PostgreSQL cluster.
import { runOnPostgres } from './fixtures/backend';

runOnPostgres(() => require('./list-paging-migration.test'));
