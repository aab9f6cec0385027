// container-search.test.ts, every assertion, on a private PostgreSQL cluster.
import { runOnPostgres } from './fixtures/backend';

runOnPostgres(() => require('./container-search.test'));
