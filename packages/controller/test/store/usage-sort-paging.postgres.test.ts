// usage-sort-paging.test.ts, every assertion, on a private PostgreSQL cluster.
import { runOnPostgres } from './fixtures/backend';

runOnPostgres(() => require('./usage-sort-paging.test'));
